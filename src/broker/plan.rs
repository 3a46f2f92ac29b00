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
use crate::config::{Config, InputConfig, OutputConfig, OutputKind};
use crate::error::{Error, Result};
use crate::fifodir::{FifoDir, FifoId};
use crate::output::{Kind, SinkFile};

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

        let plan = Plan {
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
                OutputKind::Sink { .. } => None,
            });
        kept_inputs
            .chain(kept_subscribers)
            .filter(|(name, mode)| group_changed || old.get(name.as_str()) != Some(mode))
            .map(|(name, mode)| (name.clone(), mode))
            .collect()
    }
}

/// Mode of every FIFO `config` has, by name.
fn fifo_modes(config: &Config) -> HashMap<&str, u32> {
    let inputs = config.inputs.iter().map(|i| (&*i.name, i.mode));
    let subscribers = config.outputs.iter().filter_map(|o| match o.kind {
        OutputKind::Subscriber { mode } => Some((&*o.name, mode)),
        OutputKind::Sink { .. } => None,
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
    if parent.starts_with(log_dir) {
        return crate::fifodir::create_dir(parent);
    }
    Err(crate::preflight::missing_sink_dir(parent, path))
}
