//! fifo-broker owns a directory of named pipes and fans every line written
//! into its input FIFOs out to subscriber FIFOs and log files.
//!
//! # Layout
//!
//! - [`cli`] — the command line, parsed into a [`cli::Command`].
//! - [`config`] — the TOML file, checked into a [`config::Config`] with every
//!   error located as `FILE:LINE:COL`.
//! - [`format`] — output line templates (`{line}`, `{input}`, `{time}`).
//! - [`fifodir`] — the FIFO directory; every file operation is relative to its
//!   fd and never follows a symlink or touches a non-FIFO.
//! - [`input`] — input read ends and line framing.
//! - [`outbox`] — the bounded per-output queue and the `when_full` policy.
//! - [`output`] — subscribers (lazy attach, detach on `EPOLLERR`) and sinks.
//! - [`sink`] — sink files, rotation and reopen.
//! - `forward` — the protocol pieces of network forwards (syslog, NATS,
//!   journal): URL parsing, encoders and reply parsers, free of I/O.
//! - [`broker`] — the single-threaded `mio` loop, routing, startup and stop.
//! - [`stats`] — counters and the warning rate limiter.
//! - [`notify`] — sd_notify.
//! - [`logging`] — `env_logger` setup, journald priority prefixes.
//! - [`error`] — the error type and its exit codes.
//!
//! # Data path
//!
//! An input becomes readable → [`broker`] reads up to a pipe's worth into
//! one shared buffer → [`input::Framer`] finds the complete lines (a slice of
//! that buffer, no copy) → each output routed from the input gets the slice
//! (or the batch rendered once per distinct format) → [`output::Output::offer`]
//! writes it straight to the kernel if nothing is queued and queues only what
//! the kernel did not take.

pub mod broker;
pub mod cli;
pub mod config;
pub mod error;
pub mod fifodir;
pub mod format;
// The event loop does not drive forwards yet; until it does, their protocol
// pieces are exercised only by their unit tests.
#[allow(dead_code)]
pub(crate) mod forward;
pub mod input;
pub mod logging;
pub mod notify;
pub mod outbox;
pub mod output;
pub mod sink;
pub mod stats;

pub use error::{Error, Result};

use std::ffi::OsString;

/// Everything `main` does: parse the command line, then run, check, or print.
pub fn run(args: impl IntoIterator<Item = OsString>) -> Result<()> {
    match cli::parse(args)? {
        cli::Command::Help => print!("{}", cli::USAGE),
        cli::Command::Version => println!("fifo-broker {}", env!("CARGO_PKG_VERSION")),
        cli::Command::Check { config } => {
            let config = config::load(&config, &config::Env::from_process())?;
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", config.describe());
        }
        cli::Command::Run { config } => {
            let config = config::load(&config, &config::Env::from_process())?;
            for warning in &config.warnings {
                log::warn!("{warning}");
            }
            broker::Broker::start(config)?.run()?;
        }
    }
    Ok(())
}
