//! Making the running broker match a config: at startup (applied to an empty
//! broker) and on SIGHUP (applied to the running one).
//!
//! Two phases. *Prepare* does everything that can fail: it checks every name
//! that needs a new FIFO, opens new or moved sink files and creates the new
//! FIFOs; on any error it removes what it created and returns, leaving the
//! running state untouched. *Commit* cannot fail: it drains and removes inputs
//! that are gone, rebuilds the input and output tables in the new order
//! (keeping the open fds, queues, partial lines and counters of everything
//! whose name stays), applies changed modes, groups, routes, formats and
//! policies in place, reopens kept sink files (logrotate), and re-registers
//! every fd under its new token. An unchanged FIFO is never closed, so no
//! writer or reader attached to it notices a reload.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use rustix::fs::OFlags;

use super::{input_token, output_token, read_size, register, reregister, Broker};
use crate::config::{Config, OutputKind};
use crate::error::{Error, Result};
use crate::fifodir::FifoId;
use crate::format::Format;
use crate::input::{Framer, Input};
use crate::outbox::Outbox;
use crate::output::{set_pipe_size, Output, Target};
use crate::sink::SinkFile;
use crate::stats::{InputStats, OutputStats, RateLimit};

/// What the prepare phase made, for the commit phase to use.
#[derive(Default)]
struct Prepared {
    /// New FIFOs by name: subscribers have no fd, inputs their read end.
    fifos: HashMap<String, (FifoId, Option<OwnedFd>)>,
    /// Newly opened sink files, by index in the new config's outputs.
    sinks: HashMap<usize, SinkFile>,
}

impl Broker {
    /// Makes the running state match `config`; on error nothing changed.
    pub(super) fn apply(&mut self, config: Config) -> Result<()> {
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
        let prepared = self.prepare(&config)?;
        self.commit(config, prepared);
        Ok(())
    }

    fn prepare(&self, config: &Config) -> Result<Prepared> {
        let old_inputs: HashMap<&str, &Input> =
            self.inputs.iter().map(|i| (i.name.as_str(), i)).collect();
        let old_outputs: HashMap<(&str, bool), &Output> = self
            .outputs
            .iter()
            .map(|o| ((o.name.as_str(), o.is_sink()), o))
            .collect();

        // FIFOs to create: new names, and names whose FIFO was deleted or
        // replaced behind the daemon's back.
        let mut wanted: Vec<(&str, u32, bool)> = Vec::new();
        for input in &config.inputs {
            let kept = old_inputs.get(input.name.as_str());
            if !kept.is_some_and(|old| self.dir.is_ours(&old.name, old.fifo)) {
                wanted.push((&input.name, input.mode, true));
            }
        }
        for output in &config.outputs {
            if let OutputKind::Subscriber { mode } = output.kind {
                let kept = old_outputs.get(&(output.name.as_str(), false));
                let fifo = kept.and_then(|old| old.fifo());
                if !fifo.is_some_and(|id| self.dir.is_ours(&output.name, id)) {
                    wanted.push((&output.name, mode, false));
                }
            }
        }
        for (name, _, _) in &wanted {
            self.dir.check_free(name)?;
        }

        let mut prepared = Prepared::default();
        for (o, output) in config.outputs.iter().enumerate() {
            if let OutputKind::Sink {
                path,
                max_bytes,
                keep,
            } = &output.kind
            {
                let old_path = old_outputs
                    .get(&(output.name.as_str(), true))
                    .and_then(|o| o.sink_path());
                if old_path != Some(path.as_path()) {
                    let file = SinkFile::open(path, *max_bytes, *keep).map_err(|e| {
                        Error::refuse(path, format!("cannot open sink {}: {e}", output.name))
                    })?;
                    prepared.sinks.insert(o, file);
                }
            }
        }

        for (name, mode, is_input) in wanted {
            let made = self
                .dir
                .create_fifo(name, mode, config.group)
                .and_then(|fifo| {
                    let fd = if is_input {
                        let fd = self
                            .dir
                            .open_fifo(name, fifo, OFlags::RDONLY)
                            .map_err(|e| Error::path(self.dir.join(name), e));
                        if fd.is_err() {
                            let _ = self.dir.remove_if_ours(name, fifo);
                        }
                        Some(fd?)
                    } else {
                        None
                    };
                    Ok((fifo, fd))
                });
            match made {
                Ok(made) => {
                    prepared.fifos.insert(name.to_string(), made);
                }
                Err(err) => {
                    for (name, (fifo, _)) in &prepared.fifos {
                        let _ = self.dir.remove_if_ours(name, *fifo);
                    }
                    return Err(err);
                }
            }
        }
        Ok(prepared)
    }

    fn commit(&mut self, config: Config, mut prepared: Prepared) {
        // Group for FIFOs that are kept: a removed `group` gives them back
        // the daemon's own.
        let group = config.group.or_else(|| {
            self.config
                .group
                .map(|_| rustix::process::getegid().as_raw())
        });
        let group_changed = config.group != self.config.group;

        let stalled_names: Vec<String> = (self.stalled.iter().chain(&self.busy))
            .map(|&i| self.inputs[i].name.clone())
            .collect();

        // Inputs that are gone: no new writers, deliver what they hold.
        let keep_inputs = index_by_name(config.inputs.iter().map(|c| c.name.as_str()));
        for i in 0..self.inputs.len() {
            if !keep_inputs.contains_key(self.inputs[i].name.as_str()) {
                let input = &mut self.inputs[i];
                input.retired = true;
                let _ = self.dir.remove_if_ours(&input.name, input.fifo);
                self.read_input(i, usize::MAX);
                self.deliver_tail(i);
            }
        }

        let mut old_inputs: HashMap<String, Input> = std::mem::take(&mut self.inputs)
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        let mut old_outputs: HashMap<(String, bool), Output> = std::mem::take(&mut self.outputs)
            .into_iter()
            .map(|o| ((o.name.clone(), o.is_sink()), o))
            .collect();

        let mut formats: Vec<Format> = Vec::new();
        let mut outputs = Vec::with_capacity(config.outputs.len());
        for (o, oc) in config.outputs.iter().enumerate() {
            let format = match formats.iter().position(|f| *f == oc.format) {
                Some(f) => f,
                None => {
                    formats.push(oc.format.clone());
                    formats.len() - 1
                }
            };
            let is_sink = matches!(oc.kind, OutputKind::Sink { .. });
            let old = old_outputs.remove(&(oc.name.clone(), is_sink));
            let target = match (&oc.kind, old) {
                (OutputKind::Subscriber { mode }, old) => {
                    let fresh = prepared.fifos.remove(&oc.name).map(|(fifo, _)| fifo);
                    match (old, fresh) {
                        (Some(mut out), None) => {
                            if out.subscriber_mode() != Some(*mode) || group_changed {
                                self.set_mode(&oc.name, *mode, group);
                            }
                            out.set_subscriber_mode(*mode);
                            Some(out)
                        }
                        (Some(mut out), Some(fifo)) => {
                            out.detach(&ctx!(self));
                            out.target = Target::Subscriber {
                                fifo,
                                mode: *mode,
                                writer: None,
                            };
                            Some(out)
                        }
                        (None, Some(fifo)) => Some(new_output(
                            &oc.name,
                            Target::Subscriber {
                                fifo,
                                mode: *mode,
                                writer: None,
                            },
                        )),
                        (None, None) => None,
                    }
                }
                (
                    OutputKind::Sink {
                        max_bytes, keep, ..
                    },
                    old,
                ) => match (old, prepared.sinks.remove(&o)) {
                    (Some(mut out), fresh) => {
                        out.replace_or_reopen_sink(fresh);
                        out.set_rotation(*max_bytes, *keep);
                        Some(out)
                    }
                    (None, Some(file)) => Some(new_output(&oc.name, Target::sink(file))),
                    (None, None) => None,
                },
            };
            let Some(mut output) = target else {
                // Prepare made every FIFO and file the commit needs.
                log::error!("{} {}: was not prepared; skipped", oc.kind_name(), oc.name);
                continue;
            };
            output.format = format;
            output.outbox.reconfigure(oc.buffer_bytes, oc.when_full);
            output.token = output_token(outputs.len());
            output.retoken(self.poll.registry());
            outputs.push(output);
        }

        for ((name, _), mut gone) in old_outputs {
            match &gone.target {
                Target::Subscriber { fifo, .. } => {
                    let fifo = *fifo;
                    gone.detach(&ctx!(self));
                    if let Err(e) = self.dir.remove_if_ours(&name, fifo) {
                        log::error!("cannot remove {}: {e}", self.dir.join(&name).display());
                    }
                }
                Target::Sink { .. } => {
                    gone.flush(&ctx!(self));
                    gone.sync();
                }
            }
        }

        let mut routes: Vec<Vec<usize>> = vec![Vec::new(); config.inputs.len()];
        for (o, oc) in config.outputs.iter().enumerate() {
            for &i in &oc.from {
                routes[i].push(o);
            }
        }
        let registry = self.poll.registry();
        let mut inputs = Vec::with_capacity(config.inputs.len());
        let mut swapped: Vec<(usize, OwnedFd)> = Vec::new();
        for (i, ic) in config.inputs.iter().enumerate() {
            let old = old_inputs.remove(&ic.name);
            let fresh = prepared.fifos.remove(&ic.name);
            let token = input_token(i);
            let mut input = match (old, fresh) {
                (Some(mut input), None) => {
                    if input.mode != ic.mode || group_changed {
                        self.set_mode(&ic.name, ic.mode, group);
                    }
                    reregister(registry, &input.fd, token);
                    input.mode = ic.mode;
                    input
                }
                (Some(mut input), Some((fifo, Some(fd)))) => {
                    // Recreated behind an fd still open on the old inode:
                    // read what is left in it first, then swap.
                    reregister(registry, &input.fd, token);
                    input.fifo = fifo;
                    input.mode = ic.mode;
                    swapped.push((i, fd));
                    input
                }
                (None, Some((fifo, Some(fd)))) => {
                    register(registry, &fd, token);
                    Input {
                        name: ic.name.clone(),
                        mode: ic.mode,
                        fifo,
                        fd,
                        carry: Vec::new(),
                        framer: Framer::default(),
                        routes: Vec::new(),
                        stats: InputStats::default(),
                        truncate_warning: RateLimit::default(),
                        error_warning: RateLimit::default(),
                        stalled: false,
                        busy: false,
                        retired: false,
                    }
                }
                _ => {
                    log::error!("input {}: was not prepared; skipped", ic.name);
                    continue;
                }
            };
            if let Some(bytes) = config.pipe_bytes {
                set_pipe_size(&input.fd, bytes, &input.name);
            }
            input.routes = std::mem::take(&mut routes[i]);
            input.stalled = false;
            input.busy = false;
            inputs.push(input);
        }
        for (_, gone) in old_inputs {
            let _ = registry.deregister(&mut SourceFd(&gone.fd.as_raw_fd()));
        }

        self.inputs = inputs;
        self.sinks = (0..outputs.len())
            .filter(|&o| outputs[o].is_sink())
            .collect();
        self.outputs = outputs;
        self.rendered = vec![Vec::new(); formats.len()];
        self.formats = formats;
        self.config = config;
        self.read_size = read_size(self.config.pipe_bytes);
        self.read_buf
            .resize(self.read_size + self.config.max_line_bytes, 0);
        self.stalled.clear();

        for (i, fd) in swapped {
            self.inputs[i].retired = true;
            self.read_input(i, usize::MAX);
            self.deliver_tail(i);
            let input = &mut self.inputs[i];
            input.retired = false;
            let old = std::mem::replace(&mut input.fd, fd);
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&old.as_raw_fd()));
            register(self.poll.registry(), &input.fd, input_token(i));
        }
        // Inputs held back by a full output under the old routes are read
        // again next turn; the others get events as usual.
        let index = index_by_name(self.inputs.iter().map(|i| i.name.as_str()));
        let busy = stalled_names
            .iter()
            .filter_map(|name| index.get(name.as_str()).copied());
        self.busy = busy.collect();
        for &i in &self.busy {
            self.inputs[i].busy = true;
        }
    }

    /// Applies a mode and group to a kept FIFO; failures are logged.
    fn set_mode(&self, name: &str, mode: u32, group: Option<u32>) {
        if let Err(e) = self.dir.set_owner_and_mode(name, mode, group) {
            log::error!("{e}");
        }
    }
}

/// Position of each name in `names`.
fn index_by_name<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    names.enumerate().map(|(i, name)| (name, i)).collect()
}

fn new_output(name: &str, target: Target) -> Output {
    Output {
        name: name.to_string(),
        format: 0,
        outbox: Outbox::new(0, crate::config::WhenFull::DropNewest),
        target,
        stats: OutputStats::default(),
        warning: RateLimit::default(),
        token: mio::Token(0),
    }
}
