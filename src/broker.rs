//! The event loop: one `mio` poll over every input read end, every attached
//! subscriber write end and the signal pipe; routing of framed lines to
//! outputs; signals, reload and stop.
//!
//! Tokens: input `i` is `Token(2 * i)`, output `o` is `Token(2 * o + 1)`,
//! signals are [`SIGNALS`]. The loop sleeps in `poll` with no timeout unless
//! a sink waits to retry, an input has more to read than one turn allows, a
//! stop is draining, systemd wants watchdog pings, or a `STATUS=` refresh is
//! due after activity; an idle daemon makes no system calls at all.
//!
//! Flow control: an input is read only while none of the `block` outputs it
//! feeds is full ([`Outbox::is_full`](crate::outbox::Outbox::is_full));
//! otherwise it is marked stalled, and stalled inputs are retried at the end
//! of every turn. Writers then block on the full input pipe: nothing is lost.
//!
//! Startup and reload are the same operation ([`apply`]): startup applies the
//! config to an empty broker.
//!
//! This module must never block and never panic on I/O: every fd is
//! non-blocking, every error is counted and logged (rate-limited).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::fs::OFlags;
use rustix::io::Errno;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::{Config, Env};
use crate::error::{Error, Result};
use crate::fifodir::FifoDir;
use crate::format::{timestamp, Format};
use crate::input::Input;
use crate::notify;
use crate::output::{Ctx, Output, Target};
use crate::stats::suppressed_note;

/// Token of the signal pipe.
const SIGNALS: Token = Token(usize::MAX);
/// Reads one input may do per turn before others get theirs.
const READS_PER_TURN: usize = 16;
/// The kernel's default pipe capacity.
const DEFAULT_PIPE: usize = 64 * 1024;
/// Smallest read.
const MIN_READ: usize = 16 * 1024;
/// How long after activity the `STATUS=` line is refreshed.
const STATUS_DELAY: Duration = Duration::from_secs(1);

/// The [`Ctx`] outputs need, borrowed field by field so the outputs
/// themselves stay mutably borrowable.
macro_rules! ctx {
    ($broker:expr) => {
        $crate::output::Ctx {
            dir: &$broker.dir,
            registry: $broker.poll.registry(),
            pipe_bytes: $broker.config.pipe_bytes,
        }
    };
}
// Declared after the macro so that it can use it.
mod apply;

fn input_token(i: usize) -> Token {
    Token(2 * i)
}

fn output_token(o: usize) -> Token {
    Token(2 * o + 1)
}

/// The running daemon.
pub struct Broker {
    /// The config in force.
    config: Config,
    /// The FIFO directory, locked.
    dir: FifoDir,
    /// The poller.
    poll: Poll,
    /// SIGTERM, SIGINT, SIGHUP and SIGUSR1, delivered through the poller.
    signals: Signals,
    /// Input FIFOs, indexed as in the config.
    inputs: Vec<Input>,
    /// Subscribers and sinks, indexed as in the config.
    outputs: Vec<Output>,
    /// Indices of the outputs that are sinks (the only ones that retry on a
    /// timer), so per-turn work does not walk every subscriber.
    sinks: Vec<usize>,
    /// Distinct output formats; outputs refer to them by index.
    formats: Vec<Format>,
    /// Per format, the current batch rendered through it (reused buffers).
    rendered: Vec<Vec<u8>>,
    /// The one read buffer: a carried-over tail, then up to `read_size` new bytes.
    read_buf: Vec<u8>,
    /// How much one `read()` asks for.
    read_size: usize,
    /// Where lines that need truncating are assembled.
    scratch: Vec<u8>,
    /// Inputs waiting for a full `block` output to drain.
    stalled: Vec<usize>,
    /// Inputs that used their reads for a turn and may have more.
    busy: Vec<usize>,
    /// Set once a stop began: when to give up draining.
    stop_deadline: Option<Instant>,
    /// Half of systemd's `WATCHDOG_USEC`, if it asked for pings.
    watchdog: Option<Duration>,
    /// When the next `WATCHDOG=1` is due.
    next_watchdog: Instant,
    /// When to send an updated `STATUS=` (set after activity, so an idle
    /// daemon has no timer).
    status_due: Option<Instant>,
    /// Why the last reload failed, until one succeeds.
    reload_error: Option<String>,
}

impl Broker {
    /// Creates the directory and every FIFO and sink, opens them, and
    /// returns a broker ready to [`run`](Broker::run).
    pub fn start(config: Config) -> Result<Broker> {
        let io = |context| move |source| Error::Io { context, source };
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
            .map_err(io("installing signal handlers"))?;
        // Modes are applied exactly: everything created passes its mode.
        rustix::process::umask(rustix::fs::Mode::empty());
        raise_fd_limit();
        let dir = FifoDir::open(&config.dir)?;
        let poll = Poll::new().map_err(io("creating the poller"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(io("watching signals"))?;
        let empty = Config {
            inputs: Vec::new(),
            outputs: Vec::new(),
            ..config.clone()
        };
        let mut broker = Broker {
            config: empty,
            dir,
            poll,
            signals,
            inputs: Vec::new(),
            outputs: Vec::new(),
            sinks: Vec::new(),
            formats: Vec::new(),
            rendered: Vec::new(),
            read_buf: Vec::new(),
            read_size: MIN_READ,
            scratch: Vec::new(),
            stalled: Vec::new(),
            busy: Vec::new(),
            stop_deadline: None,
            watchdog: sd_notify::watchdog_enabled().map(|usec| usec / 2),
            next_watchdog: Instant::now(),
            status_due: None,
            reload_error: None,
        };
        broker.apply(config)?;
        Ok(broker)
    }

    /// Runs until SIGTERM or SIGINT, then drains and cleans up.
    pub fn run(mut self) -> Result<()> {
        log::info!(
            "ready: {} inputs, {} outputs in {}",
            self.inputs.len(),
            self.outputs.len(),
            self.dir.path().display()
        );
        notify::send(&[NotifyState::Ready, NotifyState::Status(&self.status())]);
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(Error::Io {
                        context: "waiting for events",
                        source: e,
                    });
                }
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.handle_signals(),
                    Token(t) if t % 2 == 0 => {
                        if t / 2 < self.inputs.len() {
                            self.read_input(t / 2, READS_PER_TURN);
                        }
                    }
                    Token(t) => {
                        let o = t / 2;
                        if o < self.outputs.len() {
                            let ctx = ctx!(self);
                            if event.is_error() || event.is_write_closed() {
                                self.outputs[o].detach(&ctx);
                            } else {
                                self.outputs[o].flush(&ctx);
                            }
                        }
                    }
                }
            }
            self.end_turn(!events.is_empty());
            if self.stop_complete() {
                break;
            }
        }
        self.finish();
        Ok(())
    }

    /// How long `poll` may sleep: forever unless something is pending.
    fn timeout(&self) -> Option<Duration> {
        if !self.busy.is_empty() {
            return Some(Duration::ZERO);
        }
        let wake = self
            .sinks
            .iter()
            .filter_map(|&o| self.outputs[o].retry_at())
            .chain(self.stop_deadline)
            .chain(self.status_due)
            .chain(self.watchdog.map(|_| self.next_watchdog))
            .min();
        wake.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Work that is not tied to one event: due sink retries, inputs that had
    /// more to read, inputs whose full outputs may have drained, watchdog
    /// pings and status refreshes.
    fn end_turn(&mut self, active: bool) {
        let now = Instant::now();
        for &o in &self.sinks {
            if self.outputs[o].retry_at().is_some_and(|at| at <= now) {
                let ctx = ctx!(self);
                self.outputs[o].flush(&ctx);
            }
        }
        for i in std::mem::take(&mut self.busy) {
            self.inputs[i].busy = false;
            self.read_input(i, READS_PER_TURN);
        }
        if !self.stalled.is_empty() {
            for i in std::mem::take(&mut self.stalled) {
                self.inputs[i].stalled = false;
                self.read_input(i, READS_PER_TURN);
            }
        }
        if let Some(interval) = self.watchdog {
            if now >= self.next_watchdog {
                notify::send(&[NotifyState::Watchdog]);
                self.next_watchdog = now + interval;
            }
        }
        match self.status_due {
            Some(due) if now >= due => {
                notify::send(&[NotifyState::Status(&self.status())]);
                self.status_due = None;
            }
            None if active && notify::enabled() => self.status_due = Some(now + STATUS_DELAY),
            _ => {}
        }
    }

    /// Reads input `i` until the pipe is empty, a `block` output it feeds is
    /// full, or `budget` reads are done (then it goes on the busy list).
    fn read_input(&mut self, i: usize, budget: usize) {
        let Broker {
            inputs,
            outputs,
            formats,
            rendered,
            read_buf,
            read_size,
            scratch,
            ..
        } = self;
        let ctx = ctx!(self);
        let max = self.config.max_line_bytes;
        let input = &mut inputs[i];
        if input.stalled {
            return;
        }
        for _ in 0..budget {
            if input.routes.iter().any(|&o| outputs[o].outbox.is_full()) {
                input.stalled = true;
                self.stalled.push(i);
                return;
            }
            let carried = input.carry.len();
            if read_buf.len() < carried + *read_size {
                // A reload lowered max_line_bytes under a line in progress.
                read_buf.resize(carried + *read_size, 0);
            }
            read_buf[..carried].copy_from_slice(&input.carry);
            let n = match rustix::io::read(&input.fd, &mut read_buf[carried..carried + *read_size])
            {
                Ok(0) => {
                    let reopen = self.stop_deadline.is_none() && !input.retired;
                    end_of_writers(input, outputs, formats, rendered, &ctx, reopen, i);
                    return;
                }
                Ok(n) => n,
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    input.stats.errors += 1;
                    if let Some(held) = input.error_warning.allow() {
                        log::error!("input {}: read: {e}{}", input.name, suppressed_note(held));
                    }
                    return;
                }
            };
            input.carry.clear();
            input.stats.bytes_in += n as u64;
            let framed = input.framer.frame(&read_buf[..carried + n], max, scratch);
            if framed.truncated > 0 {
                input.stats.truncated += framed.truncated;
                if let Some(held) = input.truncate_warning.allow() {
                    log::warn!(
                        "input {}: line longer than max_line_bytes ({max}) truncated \
                         ({} so far){}",
                        input.name,
                        input.stats.truncated,
                        suppressed_note(held)
                    );
                }
            }
            input.stats.lines_in += framed.count;
            route(
                outputs,
                formats,
                rendered,
                &ctx,
                &input.name,
                &input.routes,
                framed.lines,
                framed.count,
            );
            input.carry.extend_from_slice(framed.tail);
        }
        if !input.busy {
            input.busy = true;
            self.busy.push(i);
        }
    }

    /// Delivers input `i`'s unterminated tail as a line (its writers are
    /// gone, or it is being removed).
    fn deliver_tail(&mut self, i: usize) {
        let ctx = ctx!(self);
        deliver_tail(
            &mut self.inputs[i],
            &mut self.outputs,
            &self.formats,
            &mut self.rendered,
            &ctx,
        );
    }

    fn handle_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGTERM | SIGINT => self.begin_stop(signal),
                SIGHUP => self.reload(),
                SIGUSR1 => self.log_counters(),
                _ => {}
            }
        }
    }

    /// SIGHUP: re-read the config and apply it; if it is invalid or cannot be
    /// applied, keep running the old one and say why in `STATUS=`.
    fn reload(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        let file = self.config.file.clone();
        log::info!("SIGHUP: reloading {}", file.display());
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        notify::send(&states);
        let result = crate::config::load(&file, &Env::from_process())
            .map_err(Error::from)
            .and_then(|config| {
                for warning in &config.warnings {
                    log::warn!("{warning}");
                }
                self.apply(config)
            });
        match result {
            Ok(()) => {
                self.reload_error = None;
                log::info!(
                    "reloaded: {} inputs, {} outputs",
                    self.inputs.len(),
                    self.outputs.len()
                );
            }
            Err(err) => {
                log::error!("reload failed, still running the previous config: {err}");
                self.reload_error = Some(err.to_string());
                // logrotate sends HUP whatever state the config file is in:
                // the sink files are reopened all the same.
                for output in &mut self.outputs {
                    output.replace_or_reopen_sink(None);
                }
            }
        }
        notify::send(&[NotifyState::Ready, NotifyState::Status(&self.status())]);
    }

    /// SIGTERM/SIGINT: unlink the inputs so no new writer can open them, then
    /// keep running until what was written is delivered or the shutdown
    /// timeout passes. A second signal stops at once.
    fn begin_stop(&mut self, signal: i32) {
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        if self.stop_deadline.is_some() {
            log::warn!("{name} again: stopping without waiting for delivery");
            self.stop_deadline = Some(Instant::now());
            return;
        }
        log::info!("{name}: stopping; delivering what was already written");
        notify::send(&[NotifyState::Stopping]);
        self.stop_deadline = Some(Instant::now() + self.config.shutdown_timeout);
        for input in &self.inputs {
            if let Err(e) = self.dir.remove_if_ours(&input.name, input.fifo) {
                log::error!(
                    "cannot remove {}: {e}",
                    self.dir.join(&input.name).display()
                );
            }
        }
        for i in 0..self.inputs.len() {
            self.read_input(i, READS_PER_TURN);
        }
    }

    /// True once a stop has delivered everything, or ran out of time.
    fn stop_complete(&self) -> bool {
        let Some(deadline) = self.stop_deadline else {
            return false;
        };
        if Instant::now() >= deadline {
            return true;
        }
        self.busy.is_empty()
            && self.stalled.is_empty()
            && self.outputs.iter().all(|o| o.outbox.is_empty())
    }

    /// The last of a stop: unterminated tails become lines, queues get a
    /// final flush, sinks are fsynced, the FIFOs that are still ours removed.
    fn finish(&mut self) {
        for i in 0..self.inputs.len() {
            self.deliver_tail(i);
        }
        let ctx = ctx!(self);
        let mut lost = 0;
        for output in &mut self.outputs {
            output.flush(&ctx);
            lost += output.discard_queue();
            output.sync();
        }
        if lost > 0 {
            log::warn!("shutdown timeout passed: {lost} queued lines were not delivered");
        }
        for input in &self.inputs {
            let _ = self.dir.remove_if_ours(&input.name, input.fifo);
        }
        for output in &self.outputs {
            if let Some(fifo) = output.fifo() {
                if let Err(e) = self.dir.remove_if_ours(&output.name, fifo) {
                    log::error!(
                        "cannot remove {}: {e}",
                        self.dir.join(&output.name).display()
                    );
                }
            }
        }
        self.log_counters();
        log::info!("stopped");
    }

    /// SIGUSR1 and shutdown: one line of counters per input and output.
    fn log_counters(&self) {
        for input in &self.inputs {
            log::info!("counters: input {} {}", input.name, input.stats);
        }
        for output in &self.outputs {
            match output.target {
                Target::Subscriber { .. } => log::info!(
                    "counters: subscriber {} attached={} {}",
                    output.name,
                    if output.is_attached() { "yes" } else { "no" },
                    output.stats
                ),
                Target::Sink { .. } => {
                    log::info!("counters: sink {} {}", output.name, output.stats)
                }
            }
        }
    }

    /// One line for systemd's `STATUS=`.
    fn status(&self) -> String {
        let subscribers = self.outputs.iter().filter(|o| !o.is_sink());
        let (total, attached) = subscribers.fold((0, 0), |(t, a), o| {
            (t + 1, a + usize::from(o.is_attached()))
        });
        let lines_in: u64 = self.inputs.iter().map(|i| i.stats.lines_in).sum();
        let lines_out: u64 = self.outputs.iter().map(|o| o.stats.lines_out).sum();
        let dropped: u64 = self.outputs.iter().map(|o| o.stats.dropped).sum();
        let discarded: u64 = self.outputs.iter().map(|o| o.stats.discarded).sum();
        let mut status = format!(
            "{} inputs, {attached}/{total} subscribers attached, {} sinks; lines in {lines_in}, \
             out {lines_out}, dropped {dropped}, discarded {discarded}",
            self.inputs.len(),
            self.outputs.len() - total
        );
        if let Some(err) = &self.reload_error {
            status.push_str("; reload failed: ");
            status.push_str(err);
        }
        status
    }
}

/// Hands one batch of complete lines from `input` to every output it feeds,
/// rendering each distinct format once.
#[allow(clippy::too_many_arguments)]
fn route(
    outputs: &mut [Output],
    formats: &[Format],
    rendered: &mut [Vec<u8>],
    ctx: &Ctx<'_>,
    input: &str,
    routes: &[usize],
    lines: &[u8],
    count: u64,
) {
    if count == 0 {
        return;
    }
    for buf in rendered.iter_mut() {
        buf.clear();
    }
    let mut time: Option<String> = None;
    for &o in routes {
        let output = &mut outputs[o];
        let format = &formats[output.format];
        let data: &[u8] = if format.is_verbatim() {
            lines
        } else {
            let buf = &mut rendered[output.format];
            if buf.is_empty() {
                let now = if format.uses_time() {
                    time.get_or_insert_with(|| timestamp(SystemTime::now()))
                        .as_str()
                } else {
                    ""
                };
                format.render(lines, input, now, buf);
            }
            buf
        };
        output.offer(data, count, ctx);
    }
}

/// Delivers an unterminated tail as one line and forgets truncation state.
fn deliver_tail(
    input: &mut Input,
    outputs: &mut [Output],
    formats: &[Format],
    rendered: &mut [Vec<u8>],
    ctx: &Ctx<'_>,
) {
    if !input.carry.is_empty() && !input.framer.is_skipping() {
        input.carry.push(b'\n');
        input.stats.lines_in += 1;
        route(
            outputs,
            formats,
            rendered,
            ctx,
            &input.name,
            &input.routes,
            &input.carry,
            1,
        );
    }
    input.carry.clear();
    input.framer.reset();
}

/// The last writer of an input closed: deliver an unterminated tail as a
/// line, then swap in a fresh read end so the hang-up is not reported again.
fn end_of_writers(
    input: &mut Input,
    outputs: &mut [Output],
    formats: &[Format],
    rendered: &mut [Vec<u8>],
    ctx: &Ctx<'_>,
    reopen: bool,
    i: usize,
) {
    deliver_tail(input, outputs, formats, rendered, ctx);
    if !reopen {
        return;
    }
    match ctx.dir.open_fifo(&input.name, input.fifo, OFlags::RDONLY) {
        Ok(fresh) => {
            let old: OwnedFd = std::mem::replace(&mut input.fd, fresh);
            let _ = ctx.registry.deregister(&mut SourceFd(&old.as_raw_fd()));
            drop(old);
            register(ctx.registry, &input.fd, input_token(i));
        }
        Err(e) => {
            input.stats.errors += 1;
            if let Some(held) = input.error_warning.allow() {
                log::warn!(
                    "input {}: cannot reopen {} after its last writer left: {e}; \
                     send SIGHUP to recreate it{}",
                    input.name,
                    ctx.dir.join(&input.name).display(),
                    suppressed_note(held)
                );
            }
        }
    }
}

/// Watches an input's read end under `token`; a failure is logged (the
/// input then waits for the next reload or reopen).
fn register(registry: &mio::Registry, fd: &OwnedFd, token: Token) {
    if let Err(e) = registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE) {
        log::error!("cannot watch an input FIFO: {e}");
    }
}

/// Moves an input's read end to a new token (after a reload renumbered).
fn reregister(registry: &mio::Registry, fd: &OwnedFd, token: Token) {
    if let Err(e) = registry.reregister(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE) {
        log::error!("cannot watch an input FIFO: {e}");
    }
}

/// How much one read asks for: half of what an input pipe holds. A batch
/// that size usually fits into the free space of subscriber pipes of the same
/// size even while their readers lag a little, so it goes out in one write
/// each; a whole pipe's worth would meet a pipe that is not quite empty, be
/// written in part and have its rest copied into the outbox. Measured beside
/// multitee (docs/PERFORMANCE.md): half beat both a whole and a quarter pipe.
fn read_size(pipe_bytes: Option<usize>) -> usize {
    (pipe_bytes.unwrap_or(DEFAULT_PIPE) / 2).clamp(MIN_READ, 8 << 20)
}

/// Thousands of FIFOs need thousands of fds: lift the soft limit to the hard.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::debug!("cannot raise the open-file limit: {e}");
        }
    }
}
