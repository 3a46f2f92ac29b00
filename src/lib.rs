//! fifo-broker owns a directory of named pipes and fans every line written
//! into its input FIFOs out to subscriber FIFOs and log files.
//!
//! # Layout
//!
//! - `cli` — the command line (`clap`), parsed into a `cli::Command`.
//! - `completions` — shell completion scripts (`clap_complete`).
//! - `config` — the TOML file in stages: `raw` serde structs, `validate`d
//!   into a `Config` with every error located as `FILE:LINE:COL`, and
//!   `describe`d for `--check`.
//! - `filter` — `match`/`exclude` regexes and the per-batch selection.
//! - `format` — output line templates (`{line}`, `{input}`, `{time}`,
//!   `{host}`, `{json}`).
//! - `preflight` — the file-system side of a config, checked without
//!   changing anything (`--check`; parts of it at startup and reload).
//! - `fifodir` — the FIFO directory; every file operation is relative to its
//!   fd and never follows a symlink or touches a non-FIFO.
//! - `forward` — the protocol pieces of network forwards (syslog, NATS,
//!   journal): URL parsing, encoders and reply parsers, free of I/O.
//! - `world` — the loop's resources (poller, directory), lent to the parts.
//! - `input` — an input's read ends, line framing and end of writers.
//! - `outbox` — the bounded per-output queue and the `when_full` policy.
//! - `output` — the output kinds (`subscriber`, `sink`), one enum variant
//!   and one file each, behind the delivery rule they share.
//! - `broker` — the single-threaded `mio` loop: `fanout` (routing),
//!   `schedule` (inputs to come back to), `supervisor` (sd_notify),
//!   `plan` and `commit` (startup and reload).
//! - `stats` — counters and the warning rate limiter.
//! - `control` — the control socket `<dir>/.control`, served by the loop.
//! - `status` — the `status` snapshot (JSON), its client, and its table
//!   and Prometheus renderings.
//! - `notify` — sd_notify that never blocks.
//! - `logging` — `env_logger` setup, journald priority prefixes.
//! - `error` — the error type and its exit codes.
//! - `fuzzing` — the fuzz targets' checks over the private pieces above
//!   (hidden; `fuzz/` drives them, `cargo test` replays their corpora).
//!
//! docs/architecture.md draws the data path and a reload.
//!
//! # Data path
//!
//! An input becomes readable → `Input::read` reads up to half a pipe into
//! the one shared buffer and frames the complete lines (a slice of that
//! buffer, no copy) → the fan-out hands the batch to each output routed from
//! the input (rendered once per distinct format) → `Output::offer` writes
//! it straight to the kernel if nothing is queued and queues only what the
//! kernel did not take.

mod broker;
mod cli;
mod completions;
mod config;
mod control;
mod error;
mod fifodir;
mod filter;
mod format;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod input;
pub mod logging;
mod notify;
mod outbox;
mod output;
mod preflight;
mod stats;
mod status;
mod world;

pub use error::{Error, Result};

use std::ffi::OsString;

/// Everything `main` does: parse the command line, then run, check, or print.
pub fn run(args: impl IntoIterator<Item = OsString>) -> Result<()> {
    match cli::parse(args)? {
        cli::Command::Print(text) => print!("{text}"),
        cli::Command::Completions(shell) => cli::completions(shell)?,
        cli::Command::Status(source, format) => status::run(&source, format)?,
        cli::Command::Check(source) => {
            let config = config::load(&source.config, &source.env)?;
            let fs_warnings = preflight::check(&config, &source.env)?;
            for warning in config.warnings.iter().chain(&fs_warnings) {
                eprintln!("warning: {warning}");
            }
            print!("{}", config.describe());
        }
        cli::Command::Run(source) => {
            let config = config::load(&source.config, &source.env)?;
            let pipe_warning = preflight::pipe_bytes_warning(&config, false);
            for warning in config.warnings.iter().chain(&pipe_warning) {
                log::warn!("{warning}");
            }
            broker::Broker::start(config)?.run()?;
        }
    }
    Ok(())
}
