//! The event loop: one `mio` poll over every input read end, every attached
//! subscriber write end and the signal pipe; routing of framed lines to
//! outputs; startup and stop.
//!
//! Tokens: input `i` is `Token(2 * i)`, output `o` is `Token(2 * o + 1)`,
//! signals are [`SIGNALS`]. The loop sleeps in `poll` with no timeout unless
//! a sink waits to retry, an input has more to read than one turn allows, or
//! a stop is draining; an idle daemon makes no system calls at all.
//!
//! Flow control: an input is read only while none of the `block` outputs it
//! feeds is full ([`Outbox::is_full`]); otherwise it is marked stalled, and
//! stalled inputs are retried at the end of every turn in which something
//! drained. Writers then block on the full input pipe: nothing is lost.
//!
//! This module must never block and never panic on I/O: every fd is
//! non-blocking, every error is counted and logged (rate-limited).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::fs::OFlags;
use rustix::io::Errno;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::{Config, OutputKind};
use crate::error::{Error, Result};
use crate::fifodir::{FifoDir, FifoId};
use crate::format::{timestamp, Format};
use crate::input::{Framer, Input};
use crate::outbox::Outbox;
use crate::output::{set_pipe_size, Ctx, Output, Target};
use crate::sink::SinkFile;
use crate::stats::{suppressed_note, InputStats, OutputStats, RateLimit};

/// Token of the signal pipe.
const SIGNALS: Token = Token(usize::MAX);
/// Reads one input may do per turn before others get theirs.
const READS_PER_TURN: usize = 16;
/// Smallest read: the default Linux pipe capacity.
const MIN_READ: usize = 64 * 1024;

/// The [`Ctx`] outputs need, borrowed field by field so the outputs
/// themselves stay mutably borrowable.
macro_rules! ctx {
    ($broker:expr) => {
        Ctx {
            dir: &$broker.dir,
            registry: $broker.poll.registry(),
            pipe_bytes: $broker.config.pipe_bytes,
        }
    };
}

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
}

impl Broker {
    /// Creates the directory and every FIFO and sink, opens them, and
    /// returns a broker ready to [`run`](Broker::run).
    pub fn start(config: Config) -> Result<Broker> {
        let signals =
            Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]).map_err(|source| Error::Io {
                context: "installing signal handlers",
                source,
            })?;
        // Modes are applied exactly: everything created below passes its
        // mode explicitly.
        rustix::process::umask(rustix::fs::Mode::empty());
        raise_fd_limit();

        let dir = FifoDir::open(&config.dir)?;
        let names = config.inputs.iter().map(|i| &i.name).chain(
            config
                .outputs
                .iter()
                .filter(|o| matches!(o.kind, OutputKind::Subscriber { .. }))
                .map(|o| &o.name),
        );
        for name in names {
            dir.check_free(name)?;
        }

        let mut formats: Vec<Format> = Vec::new();
        let mut outputs = Vec::with_capacity(config.outputs.len());
        let mut created: Vec<(String, FifoId)> = Vec::new();
        let result = (|| -> Result<Vec<Input>> {
            for (o, out) in config.outputs.iter().enumerate() {
                let target = match &out.kind {
                    OutputKind::Sink {
                        path,
                        max_bytes,
                        keep,
                    } => Target::Sink {
                        file: SinkFile::open(path, *max_bytes, *keep).map_err(|e| {
                            Error::refuse(path, format!("cannot open sink {}: {e}", out.name))
                        })?,
                        retry_at: None,
                        backoff: Duration::from_millis(100),
                    },
                    OutputKind::Subscriber { mode } => {
                        let fifo = dir.create_fifo(&out.name, *mode, config.group)?;
                        created.push((out.name.clone(), fifo));
                        Target::Subscriber {
                            fifo,
                            mode: *mode,
                            writer: None,
                        }
                    }
                };
                let format = match formats.iter().position(|f| *f == out.format) {
                    Some(i) => i,
                    None => {
                        formats.push(out.format.clone());
                        formats.len() - 1
                    }
                };
                outputs.push(Output {
                    name: out.name.clone(),
                    format,
                    outbox: Outbox::new(out.buffer_bytes, out.when_full),
                    target,
                    stats: OutputStats::default(),
                    warning: RateLimit::default(),
                    token: output_token(o),
                });
            }
            let mut inputs = Vec::with_capacity(config.inputs.len());
            for (i, input) in config.inputs.iter().enumerate() {
                let fifo = dir.create_fifo(&input.name, input.mode, config.group)?;
                created.push((input.name.clone(), fifo));
                let fd = dir
                    .open_fifo(&input.name, fifo, OFlags::RDONLY)
                    .map_err(|e| Error::path(dir.join(&input.name), e))?;
                if let Some(bytes) = config.pipe_bytes {
                    set_pipe_size(&fd, bytes, &input.name);
                }
                let routes = config
                    .outputs
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.from.contains(&i))
                    .map(|(o, _)| o)
                    .collect();
                inputs.push(Input {
                    name: input.name.clone(),
                    mode: input.mode,
                    fifo,
                    fd,
                    carry: Vec::new(),
                    framer: Framer::default(),
                    routes,
                    stats: InputStats::default(),
                    truncate_warning: RateLimit::default(),
                    error_warning: RateLimit::default(),
                    stalled: false,
                });
            }
            Ok(inputs)
        })();
        let inputs = match result {
            Ok(inputs) => inputs,
            Err(err) => {
                for (name, id) in &created {
                    let _ = dir.remove_if_ours(name, *id);
                }
                return Err(err);
            }
        };

        let poll = Poll::new().map_err(|source| Error::Io {
            context: "creating the poller",
            source,
        })?;
        let mut broker = Broker {
            read_size: read_size(&inputs, config.pipe_bytes),
            read_buf: Vec::new(),
            rendered: vec![Vec::new(); formats.len()],
            formats,
            config,
            dir,
            poll,
            signals,
            inputs,
            outputs,
            scratch: Vec::new(),
            stalled: Vec::new(),
            busy: Vec::new(),
            stop_deadline: None,
        };
        broker.read_buf = vec![0; broker.read_size + broker.config.max_line_bytes];
        broker.register_all()?;
        Ok(broker)
    }

    fn register_all(&mut self) -> Result<()> {
        let registry = self.poll.registry();
        let io = |source| Error::Io {
            context: "registering with the poller",
            source,
        };
        registry
            .register(&mut self.signals, SIGNALS, Interest::READABLE)
            .map_err(io)?;
        for (i, input) in self.inputs.iter().enumerate() {
            registry
                .register(
                    &mut SourceFd(&input.fd.as_raw_fd()),
                    input_token(i),
                    Interest::READABLE,
                )
                .map_err(io)?;
        }
        Ok(())
    }

    /// Runs until SIGTERM or SIGINT, then drains and cleans up.
    pub fn run(mut self) -> Result<()> {
        log::info!(
            "ready: {} inputs, {} outputs in {}",
            self.inputs.len(),
            self.outputs.len(),
            self.dir.path().display()
        );
        crate::notify::send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&self.status()),
        ]);
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
                            self.read_input(t / 2);
                        }
                    }
                    Token(t) => {
                        let o = t / 2;
                        if o < self.outputs.len() {
                            let ctx = ctx!(self);
                            if event.is_error() || event.is_write_closed() {
                                self.outputs[o].reader_gone(&ctx);
                            } else {
                                self.outputs[o].flush(&ctx);
                            }
                        }
                    }
                }
            }
            self.end_turn();
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
        let retry = self.outputs.iter().filter_map(Output::retry_at).min();
        let wake = match (retry, self.stop_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wake.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Work that is not tied to one event: due sink retries, inputs that had
    /// more to read, inputs whose full outputs may have drained.
    fn end_turn(&mut self) {
        let now = Instant::now();
        for o in 0..self.outputs.len() {
            if self.outputs[o].retry_at().is_some_and(|at| at <= now) {
                let ctx = ctx!(self);
                self.outputs[o].flush(&ctx);
            }
        }
        for i in std::mem::take(&mut self.busy) {
            self.read_input(i);
        }
        if !self.stalled.is_empty() {
            for i in std::mem::take(&mut self.stalled) {
                self.inputs[i].stalled = false;
                self.read_input(i);
            }
        }
    }

    /// Reads input `i` until the pipe is empty, a `block` output it feeds is
    /// full, or its reads for this turn are used up.
    fn read_input(&mut self, i: usize) {
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
        for _ in 0..READS_PER_TURN {
            if input.routes.iter().any(|&o| outputs[o].outbox.is_full()) {
                input.stalled = true;
                self.stalled.push(i);
                return;
            }
            let carried = input.carry.len();
            read_buf[..carried].copy_from_slice(&input.carry);
            let n = match rustix::io::read(&input.fd, &mut read_buf[carried..carried + *read_size])
            {
                Ok(0) => {
                    end_of_writers(
                        input,
                        outputs,
                        formats,
                        rendered,
                        &ctx,
                        self.stop_deadline.is_none(),
                        i,
                    );
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
        self.busy.push(i);
    }

    fn handle_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGTERM | SIGINT => self.begin_stop(signal),
                SIGHUP => self.reopen_sinks(),
                SIGUSR1 => self.log_counters(),
                _ => {}
            }
        }
    }

    /// SIGHUP: sink files are reopened at their paths (logrotate).
    fn reopen_sinks(&mut self) {
        log::info!("SIGHUP: reopening sink files");
        for output in &mut self.outputs {
            output.reopen();
        }
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
        crate::notify::send(&[sd_notify::NotifyState::Stopping]);
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
            self.read_input(i);
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
        let ctx = Ctx {
            dir: &self.dir,
            registry: self.poll.registry(),
            pipe_bytes: None,
        };
        for input in &mut self.inputs {
            if !input.carry.is_empty() && !input.framer.is_skipping() {
                input.carry.push(b'\n');
                input.stats.lines_in += 1;
                route(
                    &mut self.outputs,
                    &self.formats,
                    &mut self.rendered,
                    &ctx,
                    &input.name,
                    &input.routes,
                    &input.carry,
                    1,
                );
                input.carry.clear();
            }
        }
        let mut lost = 0;
        for output in &mut self.outputs {
            output.flush(&ctx);
            lost += output.outbox.discard();
            output.sync();
        }
        if lost > 0 {
            log::warn!("shutdown timeout passed: {lost} queued lines were not delivered");
        }
        for input in &self.inputs {
            let _ = self.dir.remove_if_ours(&input.name, input.fifo);
        }
        for output in &self.outputs {
            if let Target::Subscriber { fifo, .. } = &output.target {
                if let Err(e) = self.dir.remove_if_ours(&output.name, *fifo) {
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
        let subscribers = self
            .outputs
            .iter()
            .filter(|o| matches!(o.target, Target::Subscriber { .. }));
        let (total, attached) =
            subscribers.fold((0, 0), |(t, a), o| (t + 1, a + o.is_attached() as usize));
        let lines_in: u64 = self.inputs.iter().map(|i| i.stats.lines_in).sum();
        let lines_out: u64 = self.outputs.iter().map(|o| o.stats.lines_out).sum();
        let drops: u64 = self
            .outputs
            .iter()
            .map(|o| o.stats.dropped + o.stats.discarded)
            .sum();
        format!(
            "{} inputs, {attached}/{total} subscribers attached, {} sinks; \
             lines in {lines_in}, out {lines_out}, dropped/discarded {drops}",
            self.inputs.len(),
            self.outputs.len() - total
        )
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
    if !reopen {
        return;
    }
    match ctx.dir.open_fifo(&input.name, input.fifo, OFlags::RDONLY) {
        Ok(fresh) => {
            let old: OwnedFd = std::mem::replace(&mut input.fd, fresh);
            let _ = ctx.registry.deregister(&mut SourceFd(&old.as_raw_fd()));
            drop(old);
            if let Err(e) = ctx.registry.register(
                &mut SourceFd(&input.fd.as_raw_fd()),
                input_token(i),
                Interest::READABLE,
            ) {
                input.stats.errors += 1;
                log::error!("input {}: cannot watch the reopened FIFO: {e}", input.name);
            }
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

/// How much one read asks for: what the largest input pipe holds.
fn read_size(inputs: &[Input], pipe_bytes: Option<usize>) -> usize {
    let largest = inputs
        .iter()
        .filter_map(|i| rustix::pipe::fcntl_getpipe_size(&i.fd).ok())
        .max()
        .unwrap_or(0);
    largest
        .max(pipe_bytes.unwrap_or(0))
        .clamp(MIN_READ, 16 << 20)
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
