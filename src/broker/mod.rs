//! The event loop: one `mio` poll over every input read end, every attached
//! subscriber write end and the signal pipe; signals, reload and stop.
//!
//! The broker holds the world once ([`World`]: poller, FIFO directory) and
//! lends it to the parts that do the work: inputs read and frame
//! ([`Input::read`]), the [`fanout::FanOut`] routes batches to outputs,
//! the [`schedule::Schedule`] remembers which inputs to come back to, and the
//! [`supervisor::Supervisor`] talks to systemd.
//!
//! Tokens are stable keys: input `k` is `Token(2 * k)`, output `k` is
//! `Token(2 * k + 1)`, signals are [`SIGNALS`], and the control socket
//! owns the few tokens just below it ([`control::LISTENER`] and one per
//! client slot, see [`control::owns`]). The loop sleeps in `poll` with no
//! timeout unless a sink waits to retry, an input has more to read than one
//! turn allows, a stop is draining, systemd wants watchdog pings, a
//! `STATUS=` refresh is due after activity, or a control client is
//! connected; an idle daemon makes no system calls at all.
//!
//! Flow control: an input is read only while none of the `block` outputs it
//! feeds is full; otherwise it is stalled and retried at the end of every
//! turn. Writers then block on the full input pipe: nothing is lost.
//!
//! Startup and reload are the same operation: a [`plan`] made from the
//! config (everything that can fail), then [`commit`]ted (nothing fails).
//! Startup applies the config to an empty broker.
//!
//! This module must never block and never panic on I/O: every fd is
//! non-blocking, every error is counted and logged (rate-limited).

mod commit;
mod fanout;
mod metrics;
mod plan;
mod schedule;
mod snapshot;
mod supervisor;

use std::time::Instant;

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::{Config, Env};
use crate::control::{self, Control, Wants};
use crate::error::{Error, Result};
use crate::fifodir::FifoDir;
use crate::input::{AfterEof, Input, Read, ReadBuf};
use crate::world::World;
use fanout::FanOut;
use schedule::Schedule;
use supervisor::Supervisor;

/// Token of the signal pipe.
const SIGNALS: Token = Token(usize::MAX);
/// Reads one input may do per turn before others get theirs.
const READS_PER_TURN: usize = 16;
/// Bytes one input may read per turn before others get theirs: a flooded
/// input then delays a quiet one by one batch's routing at most (the quiet
/// one's event is handled first in the next turn; busy inputs go round).
const BYTES_PER_TURN: usize = 32 * 1024;

fn input_token(key: usize) -> Token {
    Token(2 * key)
}

fn output_token(key: usize) -> Token {
    Token(2 * key + 1)
}

/// The running daemon.
pub struct Broker {
    /// The config in force.
    config: Config,
    /// Poller, FIFO directory and pipe size, lent to inputs and outputs.
    world: World,
    /// SIGTERM, SIGINT, SIGHUP and SIGUSR1, delivered through the poller.
    signals: Signals,
    /// Input FIFOs, by key (retired ones until they are drained).
    inputs: Slab<Input>,
    /// Outputs, formats and routing.
    fanout: FanOut,
    /// The read buffer all inputs share.
    buf: ReadBuf,
    /// Inputs to come back to without an event.
    schedule: Schedule,
    /// sd_notify: readiness, status, watchdog.
    supervisor: Supervisor,
    /// Set once a stop began: when to give up draining.
    stop_deadline: Option<Instant>,
    /// The control socket (`status`); taken at the end of a stop.
    control: Option<Control>,
    /// When the daemon started, for `uptime_s`.
    started: Instant,
    /// `metrics_file`: Prometheus text for node_exporter.
    metrics: metrics::MetricsFile,
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
            world: World {
                poll,
                dir,
                pipe_bytes: config.pipe_bytes,
                pipes: std::rc::Rc::new(crate::world::PipeBudget::new(config.pipe_bytes)),
            },
            signals,
            inputs: Slab::new(),
            fanout: FanOut::default(),
            buf: ReadBuf::default(),
            schedule: Schedule::default(),
            supervisor: Supervisor::from_env(),
            stop_deadline: None,
            control: None,
            started: Instant::now(),
            metrics: metrics::MetricsFile::default(),
        };
        let control = Control::open(&broker.world.dir, broker.world.registry())?;
        if let Err(err) = broker.apply(config).map(drop) {
            control.close(&broker.world.dir, broker.world.registry());
            return Err(err);
        }
        broker.control = Some(control);
        Ok(broker)
    }

    /// Runs until SIGTERM or SIGINT, then drains and cleans up.
    pub fn run(mut self) -> Result<()> {
        log::info!(
            "ready: {} inputs, {} outputs in {}",
            self.inputs.len(),
            self.fanout.outputs().len(),
            self.world.dir.path().display()
        );
        self.supervisor.ready(&self.status());
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.world.poll.poll(&mut events, timeout) {
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
                    token if control::owns(token) => self.serve_control(token),
                    // A busy input gets its turn at the end, after the others:
                    // one flooded input reads once per turn, not twice.
                    Token(t) if t % 2 == 0 && self.schedule.is_busy(t / 2) => {}
                    Token(t) if t % 2 == 0 => self.read_input(t / 2, READS_PER_TURN),
                    Token(t) => {
                        let closed = event.is_error() || event.is_write_closed();
                        self.fanout.on_event(t / 2, closed, &self.world);
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

    /// Makes the running state match `config`; on error nothing changed.
    /// Returns what changed, one line each.
    fn apply(&mut self, config: Config) -> Result<Vec<String>> {
        let mut plan = self.plan(config)?;
        let changes = std::mem::take(&mut plan.changes);
        self.commit(plan);
        Ok(changes)
    }

    /// How long `poll` may sleep: forever unless something is pending.
    fn timeout(&self) -> Option<std::time::Duration> {
        if self.schedule.has_busy() {
            return Some(std::time::Duration::ZERO);
        }
        let wake = (self.fanout.next_retry().into_iter())
            .chain(self.stop_deadline)
            .chain(self.supervisor.wake_at())
            .chain(self.control.as_ref().and_then(Control::wake_at))
            .chain(self.metrics.wake_at())
            .min();
        wake.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Work that is not tied to one event: due retries, inputs that had
    /// more to read or whose full outputs may have drained, and the
    /// supervisor's pings and status.
    fn end_turn(&mut self, active: bool) {
        let now = Instant::now();
        // A retry that delivers what a full disk held back changes the
        // counters as much as an event does: STATUS= must follow.
        let active = self.fanout.retry_due(now, &self.world) || active;
        if let Some(control) = &mut self.control {
            control.expire(now, self.world.poll.registry());
        }
        for key in self.schedule.take() {
            self.read_input(key, READS_PER_TURN);
        }
        if self.supervisor.tick(now, active) {
            let status = self.status();
            self.supervisor.status(&status);
        }
        if self.metrics.tick(now, active) {
            let text = crate::status::prometheus::render(&self.snapshot());
            self.metrics.write(&text);
        }
    }

    /// Reads input `key` until its pipe is empty, a `block` output it feeds
    /// is full (then it is stalled), or `budget` reads or [`BYTES_PER_TURN`]
    /// are done (then it is busy).
    fn read_input(&mut self, key: usize, budget: usize) {
        if self.schedule.is_stalled(key) {
            return;
        }
        let Some(input) = self.inputs.get_mut(key) else {
            return;
        };
        let max = self.config.max_line_bytes;
        let mut bytes = 0;
        for _ in 0..budget {
            if bytes >= BYTES_PER_TURN {
                break;
            }
            if self.fanout.any_full(input.routes()) {
                self.schedule.stall(key);
                return;
            }
            let keeping_up = self.fanout.all_drained(input.routes());
            let pipes = Some(&*self.world.pipes).filter(|_| keeping_up);
            if let Some(src) = input.tee_source(&self.buf, max) {
                let teed = self.fanout.tee(input.routes(), src);
                input.teed(teed);
            }
            match input.read(&mut self.buf, max, pipes) {
                Read::Lines(batch) => {
                    bytes += batch.lines.len();
                    self.fanout
                        .route(&self.world, input.name(), input.routes(), &batch);
                }
                Read::WouldBlock | Read::Failed => return,
                Read::Eof => {
                    let reopen = self.stop_deadline.is_none();
                    let registry = self.world.poll.registry();
                    match input.end_of_writers(&self.world.dir, registry, reopen) {
                        AfterEof::ReadOn => {}
                        AfterEof::Wait => return,
                        AfterEof::Finished => {
                            let input = self.inputs.remove(key);
                            input.deregister(registry);
                            log::debug!("input {}: retired and drained", input.name());
                            return;
                        }
                    }
                }
            }
        }
        self.schedule.busy(key);
    }

    /// An event on the control socket: a client may want a snapshot.
    fn serve_control(&mut self, token: Token) {
        let registry = self.world.poll.registry();
        let Some(control) = &mut self.control else {
            return;
        };
        if let Wants::Snapshot(slot) = control.on_event(token, registry) {
            let reply = self.snapshot_json();
            if let Some(control) = &mut self.control {
                control.answer(slot, reply, self.world.poll.registry());
            }
        }
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
        self.supervisor.reloading();
        let result = crate::config::load(&file, &Env::from_process())
            .map_err(Error::from)
            .and_then(|config| {
                let pipe_warning = crate::preflight::pipe_bytes_warning(&config, false);
                for warning in config.warnings.iter().chain(&pipe_warning) {
                    log::warn!("{warning}");
                }
                self.apply(config)
            });
        let control = self.renew_control();
        match result {
            Ok(changes) => {
                for change in changes.iter().chain(&control) {
                    log::info!("reload: {change}");
                }
                if changes.is_empty() && control.is_none() {
                    log::info!("reload: no changes");
                }
                self.supervisor.set_reload_error(None);
                log::info!(
                    "reloaded: {} inputs, {} outputs",
                    self.config.inputs.len(),
                    self.config.outputs.len()
                );
            }
            Err(err) => {
                log::error!("reload failed, still running the previous config: {err}");
                self.supervisor.set_reload_error(Some(err.to_string()));
                // logrotate sends HUP whatever state the config file is in:
                // the sink files are reopened all the same.
                self.fanout.reopen();
            }
        }
        let status = self.status();
        self.supervisor.ready(&status);
    }

    /// On reload: a control socket deleted or replaced behind the daemon's
    /// back is bound again (what a reload does for FIFOs). Returns the line
    /// for the reload's log.
    fn renew_control(&mut self) -> Option<String> {
        let registry = self.world.poll.registry();
        if self.control.as_ref()?.is_intact(&self.world.dir) {
            return None;
        }
        let old = self.control.take()?;
        old.close(&self.world.dir, registry);
        match Control::open(&self.world.dir, registry) {
            Ok(control) => {
                self.control = Some(control);
                Some(format!(
                    "recreated {} (deleted or replaced behind the daemon's back)",
                    self.world.dir.join(control::SOCKET_NAME).display()
                ))
            }
            Err(e) => {
                log::error!("cannot recreate the control socket: {e}");
                None
            }
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
        self.supervisor.stopping();
        self.stop_deadline = Some(Instant::now() + self.config.shutdown_timeout);
        self.unlink_inputs(true);
        let keys: Vec<usize> = self.inputs.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.read_input(key, READS_PER_TURN);
        }
    }

    /// Removes every input FIFO that is still the daemon's.
    fn unlink_inputs(&self, report: bool) {
        for (_, input) in &self.inputs {
            if let Err(e) = self.world.dir.remove_if_ours(input.name(), input.fifo()) {
                if report {
                    let path = self.world.dir.join(input.name());
                    log::error!("cannot remove {}: {e}", path.display());
                }
            }
        }
    }

    /// True once a stop has delivered everything, or ran out of time.
    fn stop_complete(&self) -> bool {
        let Some(deadline) = self.stop_deadline else {
            return false;
        };
        Instant::now() >= deadline || (self.schedule.is_empty() && self.fanout.is_drained())
    }

    /// The last of a stop: unterminated tails become lines, queues get a
    /// final flush, sinks are fsynced, the FIFOs that are still ours removed.
    fn finish(&mut self) {
        // Maybe out of time with a `block` output whose reader is stuck,
        // holding its inputs back: what writers already wrote still goes to
        // every output that can take it (a stuck reader must not cost the
        // sinks their lines), and the stuck output drops its share.
        self.fanout.give_up_blocking();
        self.schedule.take();
        // A last read of what writers wrote; then the read ends close at
        // once, so a writer still there gets EPIPE now rather than have its
        // lines vanish with the pipe after the sinks' fsync.
        let keys: Vec<usize> = self.inputs.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.read_last(key);
        }
        let registry = self.world.poll.registry();
        for (_, input) in &mut self.inputs {
            while let Some(batch) = input.take_tail(&mut self.buf) {
                self.fanout
                    .route(&self.world, input.name(), input.routes(), &batch);
            }
            input.close(registry);
        }
        let mut lost = 0;
        for (_, output) in self.fanout.outputs_mut() {
            lost += output.finish(&self.world);
        }
        if lost > 0 {
            log::warn!("shutdown timeout passed: {lost} queued lines were not delivered");
        }
        self.unlink_inputs(false);
        if let Some(control) = self.control.take() {
            control.close(&self.world.dir, self.world.poll.registry());
        }
        self.metrics.remove();
        self.log_counters();
        self.supervisor.report();
        log::info!("stopped");
    }

    /// The stop's last reads of input `key`: until nothing more comes, or
    /// as much as its pipes hold (a writer that goes on cannot hold the
    /// stop).
    fn read_last(&mut self, key: usize) {
        let bytes_in = |broker: &Broker| broker.inputs.get(key).map(|i| i.stats().bytes_in);
        let (Some(start), Some(input)) = (bytes_in(self), self.inputs.get(key)) else {
            return;
        };
        let capacity = input.capacity() as u64;
        let mut before = start;
        self.read_input(key, READS_PER_TURN);
        while let Some(now) = bytes_in(self).filter(|&n| n != before && n - start < capacity) {
            before = now;
            self.read_input(key, READS_PER_TURN);
        }
    }

    /// SIGUSR1 and shutdown: one line of counters per input and output.
    fn log_counters(&self) {
        for (_, input) in &self.inputs {
            log::info!("counters: input {} {}", input.name(), input.stats());
        }
        for (_, output) in self.fanout.outputs() {
            log::info!("counters: {}", output.counter_line());
        }
    }

    /// One line for systemd's `STATUS=`.
    fn status(&self) -> String {
        use crate::output::{Kind, State};
        let outputs = || self.fanout.outputs().iter().map(|(_, o)| o);
        let subscribers = outputs().filter(|o| o.kind() == Kind::Subscriber);
        let (total, attached) = subscribers.fold((0, 0), |(t, a), o| {
            (t + 1, a + usize::from(o.state() == State::Attached))
        });
        let sinks = outputs().filter(|o| o.kind() == Kind::Sink).count();
        let forwards = outputs().filter(|o| o.kind() == Kind::Forward);
        let (fwd_total, fwd_up) = forwards.fold((0, 0), |(t, u), o| {
            (t + 1, u + usize::from(o.state() == State::Connected))
        });
        let forwards = match fwd_total {
            0 => String::new(),
            n => format!(", {fwd_up}/{n} forwards connected"),
        };
        let lines_in: u64 = self.inputs.iter().map(|(_, i)| i.stats().lines_in).sum();
        // Each output's counters once (its delivered lines count its queue).
        let stats: Vec<_> = outputs().map(crate::output::Output::stats).collect();
        let sum = |f: fn(&crate::stats::OutputStats) -> u64| -> u64 { stats.iter().map(f).sum() };
        let mut status = format!(
            "{} inputs, {attached}/{total} subscribers attached, {sinks} sinks{forwards}; \
             lines in {lines_in}, out {}, dropped {}, discarded {}, filtered {}",
            self.inputs.len(),
            sum(|s| s.lines_out),
            sum(|s| s.dropped),
            sum(|s| s.discarded),
            sum(|s| s.filtered),
        );
        if let Some(err) = self.supervisor.reload_error() {
            status.push_str("; reload failed: ");
            status.push_str(err);
        }
        status
    }
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
