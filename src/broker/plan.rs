//! The first half of startup and reload: a [`Plan`] that says, for every
//! input and output of the new config in order, whether the running one is
//! kept, renewed on a fresh FIFO or file, or new, and what goes away.
//!
//! Making the plan does everything that can fail: it checks that every name
//! needing a new FIFO is free, opens new or moved sink files and creates
//! the new FIFOs (inputs with their read end). On any error what it created
//! is removed again ([`Created`]) and the running state is untouched. What
//! it returns is all the [commit](super::commit) needs, so that cannot fail.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::OFlags;

use super::Broker;
use crate::config::{Config, ForwardConfig, InputConfig, OutputConfig, OutputKind};
use crate::error::{Error, Result};
use crate::fifodir::{FifoDir, FifoId};
use crate::output::{Forward, Kind, SinkFile};

/// What happens to one input or output of the new config.
pub(super) enum Step<F> {
    /// The running one (this key) stays as it is.
    Keep(usize),
    /// The running one (this key) moves to a fresh FIFO or file; its
    /// counters and, where they still apply, queued lines carry over.
    Renew(usize, F),
    /// A new one.
    New(F),
}

/// A freshly created input FIFO and its read end.
pub(super) struct NewInput {
    pub(super) fifo: FifoId,
    pub(super) fd: OwnedFd,
}

/// A freshly made target for an output.
pub(super) enum Fresh {
    /// A subscriber FIFO.
    Fifo(FifoId),
    /// An open sink file.
    File(SinkFile),
    /// A forward, not connected yet.
    Forward(Box<Forward>),
}

/// Everything a commit does, decided and prepared.
pub(super) struct Plan {
    /// The config to run.
    pub(super) config: Config,
    /// One step per input of `config`, in its order.
    pub(super) inputs: Vec<Step<NewInput>>,
    /// One step per output of `config`, in its order.
    pub(super) outputs: Vec<Step<Fresh>>,
    /// Keys of running inputs the config no longer has.
    pub(super) retire: Vec<usize>,
    /// Keys of running outputs the config no longer has.
    pub(super) remove: Vec<usize>,
    /// Kept FIFOs whose mode or group changes: name and new mode.
    pub(super) chmod: Vec<(String, u32)>,
    /// The group for kept FIFOs (a removed `group` gives back the daemon's).
    pub(super) group: Option<u32>,
    /// What changes, one line each, for the log of a reload.
    pub(super) changes: Vec<String>,
}

/// What the running state should do about one name of the new config.
#[derive(Clone, Copy)]
enum Want {
    Keep(usize),
    Renew(usize),
    New,
}

impl Want {
    fn needs_target(self) -> bool {
        !matches!(self, Want::Keep(_))
    }

    fn step<F>(self, fresh: impl FnOnce() -> Result<F>) -> Result<Step<F>> {
        Ok(match self {
            Want::Keep(key) => Step::Keep(key),
            Want::Renew(key) => Step::Renew(key, fresh()?),
            Want::New => Step::New(fresh()?),
        })
    }
}

/// FIFOs created while planning; removed again unless the plan is made.
struct Created<'a> {
    dir: &'a FifoDir,
    fifos: Vec<(String, FifoId)>,
}

impl Created<'_> {
    fn fifo(&mut self, name: &str, mode: u32, group: Option<u32>) -> Result<FifoId> {
        let fifo = self.dir.create_fifo(name, mode, group)?;
        self.fifos.push((name.to_string(), fifo));
        Ok(fifo)
    }

    /// The plan is made: what was created stays.
    fn keep(mut self) {
        self.fifos.clear();
    }
}

impl Drop for Created<'_> {
    fn drop(&mut self) {
        for (name, fifo) in &self.fifos {
            let _ = self.dir.remove_if_ours(name, *fifo);
        }
    }
}

impl Broker {
    /// Decides and prepares everything `config` needs; on error nothing
    /// changed.
    pub(super) fn plan(&self, config: Config) -> Result<Plan> {
        if config.dir != self.config.dir {
            return Err(Error::refuse(
                &config.dir,
                format!(
                    "broker.dir changed from {}; a running daemon cannot move its FIFOs \
                     (restart it to use the new directory)",
                    self.config.dir.display()
                ),
            ));
        }
        crate::preflight::sink_paths(&config)?;
        let input_wants: Vec<Want> = config.inputs.iter().map(|c| self.input_want(c)).collect();
        let output_wants: Vec<Want> = (config.outputs.iter())
            .map(|c| self.output_want(c))
            .collect();
        self.check_free(&config, &input_wants, &output_wants)?;

        let dir = &self.world.dir;
        let mut created = Created {
            dir,
            fifos: Vec::new(),
        };
        let outputs = (config.outputs.iter().zip(&output_wants))
            .map(|(c, want)| want.step(|| make_output(c, &config, &mut created)))
            .collect::<Result<Vec<_>>>()?;
        let inputs = (config.inputs.iter().zip(&input_wants))
            .map(|(c, want)| want.step(|| make_input(c, config.group, &mut created)))
            .collect::<Result<Vec<_>>>()?;
        created.keep();

        let changes = self.changes(&config, &input_wants, &output_wants);
        let plan = Plan {
            changes,
            retire: self.gone_inputs(&config),
            remove: self.gone_outputs(&config),
            chmod: self.mode_changes(&config, &input_wants, &output_wants),
            group: config
                .group
                .or_else(|| (self.config.group).map(|_| rustix::process::getegid().as_raw())),
            inputs,
            outputs,
            config,
        };
        Ok(plan)
    }

    /// The running input of that name, if any (retired ones excepted).
    fn live_input(&self, name: &str) -> Option<usize> {
        let mut live = self.inputs.iter().filter(|(_, i)| !i.is_retired());
        live.find(|(_, i)| i.name() == name).map(|(key, _)| key)
    }

    /// The running output of that name and kind, if any.
    fn live_output(&self, name: &str, kind: Kind) -> Option<usize> {
        let mut outputs = self.fanout.outputs().iter();
        outputs
            .find(|(_, o)| o.name() == name && o.kind() == kind)
            .map(|(key, _)| key)
    }

    fn input_want(&self, input: &InputConfig) -> Want {
        match self.live_input(&input.name) {
            Some(key) if self.world.dir.is_ours(&input.name, self.inputs[key].fifo()) => {
                Want::Keep(key)
            }
            Some(key) => Want::Renew(key),
            None => Want::New,
        }
    }

    fn output_want(&self, output: &OutputConfig) -> Want {
        let Some(key) = self.live_output(&output.name, Kind::from(&output.kind)) else {
            return Want::New;
        };
        let intact = self.fanout.outputs()[key].is_intact(&self.world.dir);
        let moved = match &output.kind {
            OutputKind::Sink { path, .. } => self.sink_path(&output.name) != Some(path),
            OutputKind::Subscriber { .. } => false,
            OutputKind::Forward(_) => self.old_kind(&output.name) != Some(&output.kind),
        };
        if intact && !moved {
            Want::Keep(key)
        } else {
            Want::Renew(key)
        }
    }

    /// Where the running sink of that name writes.
    fn sink_path(&self, name: &str) -> Option<&Path> {
        self.config.outputs.iter().find_map(|o| match &o.kind {
            OutputKind::Sink { path, .. } if o.name == name => Some(path.as_path()),
            _ => None,
        })
    }

    /// What kind and settings the running output of that name has, if any.
    fn old_kind(&self, name: &str) -> Option<&OutputKind> {
        let same = |o: &&OutputConfig| o.name == name;
        (self.config.outputs.iter().find(same)).map(|o| &o.kind)
    }

    /// Refuses the plan if a FIFO it must create has something else in the
    /// way (never touched).
    fn check_free(&self, config: &Config, inputs: &[Want], outputs: &[Want]) -> Result<()> {
        let input_names = (config.inputs.iter().zip(inputs))
            .filter(|(_, want)| want.needs_target())
            .map(|(c, _)| &c.name);
        let subscriber_names = (config.outputs.iter().zip(outputs))
            .filter(|(c, want)| want.needs_target() && Kind::from(&c.kind) == Kind::Subscriber)
            .map(|(c, _)| &c.name);
        for name in input_names.chain(subscriber_names) {
            self.world.dir.check_free(name)?;
        }
        Ok(())
    }

    fn gone_inputs(&self, config: &Config) -> Vec<usize> {
        let wanted: HashMap<&str, ()> = config.inputs.iter().map(|i| (&*i.name, ())).collect();
        (self.inputs.iter())
            .filter(|(_, i)| !i.is_retired() && !wanted.contains_key(i.name()))
            .map(|(key, _)| key)
            .collect()
    }

    fn gone_outputs(&self, config: &Config) -> Vec<usize> {
        let wanted: HashMap<(&str, Kind), ()> = (config.outputs.iter())
            .map(|o| ((&*o.name, Kind::from(&o.kind)), ()))
            .collect();
        (self.fanout.outputs().iter())
            .filter(|(_, o)| !wanted.contains_key(&(o.name(), o.kind())))
            .map(|(key, _)| key)
            .collect()
    }

    /// Kept FIFOs whose mode changed, or all kept FIFOs if the group did.
    fn mode_changes(
        &self,
        config: &Config,
        inputs: &[Want],
        outputs: &[Want],
    ) -> Vec<(String, u32)> {
        let group_changed = config.group != self.config.group;
        let old = fifo_modes(&self.config);
        let kept_inputs = (config.inputs.iter().zip(inputs))
            .filter(|(_, want)| matches!(want, Want::Keep(_)))
            .map(|(c, _)| (&c.name, c.mode));
        let kept_subscribers = (config.outputs.iter().zip(outputs))
            .filter(|(_, want)| matches!(want, Want::Keep(_)))
            .filter_map(|(c, _)| match c.kind {
                OutputKind::Subscriber { mode } => Some((&c.name, mode)),
                _ => None,
            });
        kept_inputs
            .chain(kept_subscribers)
            .filter(|(name, mode)| group_changed || old.get(name.as_str()) != Some(mode))
            .map(|(name, mode)| (name.clone(), mode))
            .collect()
    }
}

impl Broker {
    /// One line per change `config` makes to the running one, in words an
    /// administrator reads in the log after a reload.
    fn changes(&self, config: &Config, inputs: &[Want], outputs: &[Want]) -> Vec<String> {
        let old = &self.config;
        let mut lines = broker_changes(old, config);
        // By name (and kind): thousands of FIFOs must not cost a square.
        let old_inputs: HashMap<&str, &InputConfig> =
            old.inputs.iter().map(|i| (&*i.name, i)).collect();
        let old_outputs: HashMap<(&str, &str), &OutputConfig> = (old.outputs.iter())
            .map(|o| ((&*o.name, o.kind_name()), o))
            .collect();
        for (input, want) in config.inputs.iter().zip(inputs) {
            let before = old_inputs.get(&*input.name);
            match (want, before) {
                (Want::New, _) | (_, None) => lines.push(format!("added input {}", input.name)),
                (Want::Renew(_), _) => lines.push(format!(
                    "recreated input {} (its FIFO was deleted or replaced behind the daemon's back)",
                    input.name
                )),
                (Want::Keep(_), Some(b)) if b.mode != input.mode => lines.push(format!(
                    "{}: mode {:04o} -> {:04o}",
                    input.name, b.mode, input.mode
                )),
                (Want::Keep(_), Some(_)) => {}
            }
        }
        for (output, want) in config.outputs.iter().zip(outputs) {
            let kind = output.kind_name();
            let before = old_outputs.get(&(&*output.name, kind));
            match (want, before) {
                (Want::New, _) | (_, None) => lines.push(format!("added {kind} {}", output.name)),
                (Want::Renew(_), Some(b))
                    if matches!(output.kind, OutputKind::Subscriber { .. }) =>
                {
                    lines.push(format!(
                        "recreated subscriber {} (its FIFO was deleted or replaced behind the \
                         daemon's back)",
                        output.name
                    ));
                    output_changes(old, b, config, output, &mut lines);
                }
                (_, Some(b)) => output_changes(old, b, config, output, &mut lines),
            }
        }
        let new_inputs: HashMap<&str, ()> = config.inputs.iter().map(|i| (&*i.name, ())).collect();
        for gone in (old.inputs.iter()).filter(|i| !new_inputs.contains_key(&*i.name)) {
            lines.push(format!("removed input {}", gone.name));
        }
        let new_outputs: HashMap<(&str, &str), ()> = (config.outputs.iter())
            .map(|o| ((&*o.name, o.kind_name()), ()))
            .collect();
        let kept = |o: &&OutputConfig| new_outputs.contains_key(&(&*o.name, o.kind_name()));
        for gone in old.outputs.iter().filter(|o| !kept(o)) {
            lines.push(format!("removed {} {}", gone.kind_name(), gone.name));
        }
        lines
    }
}

/// Changes to the `[broker]` settings a reload applies.
fn broker_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    let group = |g: Option<u32>| g.map_or("(none)".to_string(), crate::config::group_name);
    if old.group != new.group {
        lines.push(format!(
            "group {} -> {}",
            group(old.group),
            group(new.group)
        ));
    }
    if old.max_line_bytes != new.max_line_bytes {
        lines.push(format!(
            "max_line_bytes {} -> {}",
            old.max_line_bytes, new.max_line_bytes
        ));
    }
    if old.pipe_bytes != new.pipe_bytes {
        let bytes = |b: Option<usize>| b.map_or("(kernel default)".to_string(), |b| b.to_string());
        lines.push(format!(
            "pipe_bytes {} -> {}",
            bytes(old.pipe_bytes),
            bytes(new.pipe_bytes)
        ));
    }
    if old.metrics_file != new.metrics_file {
        let file = |f: &Option<std::path::PathBuf>| {
            f.as_ref()
                .map_or("(none)".to_string(), |p| p.display().to_string())
        };
        lines.push(format!(
            "metrics_file {} -> {}",
            file(&old.metrics_file),
            file(&new.metrics_file)
        ));
    }
    if old.shutdown_timeout != new.shutdown_timeout {
        lines.push(format!(
            "shutdown_timeout {:?} -> {:?}",
            old.shutdown_timeout, new.shutdown_timeout
        ));
    }
    lines
}

/// Changes to one output that stays (`old` in config `was`, `new` in `is`).
fn output_changes(
    was: &Config,
    old: &OutputConfig,
    is: &Config,
    new: &OutputConfig,
    lines: &mut Vec<String>,
) {
    let name = &new.name;
    let routes = |c: &Config, o: &OutputConfig| -> Vec<String> {
        o.from.iter().map(|&i| c.inputs[i].name.clone()).collect()
    };
    match (&old.kind, &new.kind) {
        (OutputKind::Subscriber { mode: a }, OutputKind::Subscriber { mode: b }) if a != b => {
            lines.push(format!("{name}: mode {a:04o} -> {b:04o}"));
        }
        (
            OutputKind::Sink {
                path: a,
                max_bytes: ma,
                keep: ka,
            },
            OutputKind::Sink {
                path: b,
                max_bytes: mb,
                keep: kb,
            },
        ) => {
            if a != b {
                lines.push(format!("{name}: path {} -> {}", a.display(), b.display()));
            }
            if (ma, ka) != (mb, kb) {
                lines.push(format!(
                    "{name}: max_bytes {ma} keep {ka} -> max_bytes {mb} keep {kb}"
                ));
            }
        }
        (OutputKind::Forward(a), OutputKind::Forward(b)) => forward_changes(name, a, b, lines),
        _ => {}
    }
    let pattern = |p: &Option<crate::filter::Pattern>| p.as_ref().map(|p| p.source().to_owned());
    for (key, a, b) in [
        ("match", &old.filter.matching, &new.filter.matching),
        ("exclude", &old.filter.excluding, &new.filter.excluding),
    ] {
        let (a, b) = (pattern(a), pattern(b));
        if a != b {
            let shown = |p: Option<String>| p.map_or("none".to_owned(), |p| format!("{p:?}"));
            lines.push(format!("{name}: {key} {} -> {}", shown(a), shown(b)));
        }
    }
    let (ra, rb) = (routes(was, old), routes(is, new));
    if ra != rb {
        lines.push(format!(
            "{name}: from [{}] -> [{}]",
            ra.join(", "),
            rb.join(", ")
        ));
    }
    if old.format != new.format {
        lines.push(format!(
            "{name}: format {:?} -> {:?}",
            old.format.source(),
            new.format.source()
        ));
    }
    if (old.buffer_bytes, old.when_full) != (new.buffer_bytes, new.when_full) {
        lines.push(format!(
            "{name}: buffer_bytes {} when_full {} -> buffer_bytes {} when_full {}",
            old.buffer_bytes, old.when_full, new.buffer_bytes, new.when_full
        ));
    }
}

/// Changes to a forward's own settings: the url, else the names of the
/// settings that changed (their values may be secrets).
fn forward_changes(name: &str, a: &ForwardConfig, b: &ForwardConfig, lines: &mut Vec<String>) {
    if a.endpoint != b.endpoint {
        lines.push(format!("{name}: url {} -> {}", a.endpoint, b.endpoint));
    }
    let changed: Vec<&str> = [
        ("facility", a.facility != b.facility),
        ("severity", a.severity != b.severity),
        ("hostname", a.hostname != b.hostname),
        ("app_name", a.app_name != b.app_name),
        ("tls", a.tls != b.tls),
        ("subject", a.subject != b.subject),
        ("credentials", a.credentials != b.credentials),
        ("window", a.window != b.window),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect();
    if !changed.is_empty() {
        lines.push(format!("{name}: {} changed", changed.join(", ")));
    }
}

/// Mode of every FIFO `config` has, by name.
fn fifo_modes(config: &Config) -> HashMap<&str, u32> {
    let inputs = config.inputs.iter().map(|i| (&*i.name, i.mode));
    let subscribers = config.outputs.iter().filter_map(|o| match o.kind {
        OutputKind::Subscriber { mode } => Some((&*o.name, mode)),
        _ => None,
    });
    inputs.chain(subscribers).collect()
}

fn make_input(input: &InputConfig, group: Option<u32>, created: &mut Created) -> Result<NewInput> {
    let fifo = created.fifo(&input.name, input.mode, group)?;
    let fd = (created.dir)
        .open_fifo(&input.name, fifo, OFlags::RDONLY)
        .map_err(|e| Error::path(created.dir.join(&input.name), e))?;
    Ok(NewInput { fifo, fd })
}

fn make_output(output: &OutputConfig, config: &Config, created: &mut Created) -> Result<Fresh> {
    match &output.kind {
        OutputKind::Subscriber { mode } => Ok(Fresh::Fifo(created.fifo(
            &output.name,
            *mode,
            config.group,
        )?)),
        OutputKind::Forward(forward) => {
            let made = Forward::new(&output.name, forward).map_err(|reason| Error::Forward {
                name: output.name.clone(),
                reason,
            })?;
            Ok(Fresh::Forward(Box::new(made)))
        }
        OutputKind::Sink {
            path,
            max_bytes,
            keep,
        } => {
            sink_dir(path, &config.log_dir)?;
            let file = SinkFile::open(path, *max_bytes, *keep).map_err(|e| {
                Error::refuse(path, format!("cannot open sink {}: {e}", output.name))
            })?;
            Ok(Fresh::File(file))
        }
    }
}

/// Makes sure the directory of the sink at `path` exists: `log_dir` and
/// directories below it are the daemon's own and created if missing
/// (0755); any other directory must already exist, so a typo in an absolute
/// path never grows a tree of directories somewhere.
fn sink_dir(path: &Path, log_dir: &Path) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    if parent.exists() {
        return Ok(());
    }
    if crate::preflight::within(parent, log_dir) {
        return crate::fifodir::create_dir(parent);
    }
    Err(crate::preflight::missing_sink_dir(parent, path))
}
