//! `fifo-broker status`: the snapshot the daemon serves on its control
//! socket ([`Snapshot`], the JSON document documented in
//! docs/operations.md), the client that asks for it ([`client`]), and the
//! ways to print it ([`table`], [`prometheus`], and `--watch`).
//!
//! The snapshot's keys are a stable interface: scripts and dashboards read
//! them. Add keys, never rename or remove one. This module never touches the
//! event loop; the daemon side only fills a [`Snapshot`] and serializes it.

pub(crate) mod client;
pub(crate) mod prometheus;
pub(crate) mod table;
mod watch;

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::cli::{Source, StatusFormat};
use crate::error::{Error, Result};

/// Everything `status` shows: one JSON object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Snapshot {
    /// The daemon's process id.
    pub(crate) pid: u32,
    /// Its version.
    #[serde(default)]
    pub(crate) version: String,
    /// Whole seconds since it started.
    pub(crate) uptime_s: u64,
    /// The config file it runs.
    pub(crate) config: String,
    /// Its FIFO directory.
    #[serde(default)]
    pub(crate) dir: String,
    /// One entry per input, by name.
    pub(crate) inputs: Vec<InputRow>,
    /// One entry per output, by kind then name.
    pub(crate) outputs: Vec<OutputRow>,
    /// The control socket's own counters.
    #[serde(default)]
    pub(crate) control: ControlRow,
}

/// One input's counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct InputRow {
    /// Its name (the FIFO's file name).
    pub(crate) name: String,
    /// Complete lines read.
    pub(crate) lines_in: u64,
    /// Bytes read.
    pub(crate) bytes_in: u64,
    /// Lines cut to `max_line_bytes`.
    pub(crate) truncated: u64,
    /// Read and reopen errors.
    pub(crate) errors: u64,
}

/// One output's state and counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct OutputRow {
    /// Its name in the config.
    pub(crate) name: String,
    /// `subscriber`, `sink`, ...
    pub(crate) kind: String,
    /// `attached`, `no reader`, `ok`, `retrying`, `full`, ...
    pub(crate) state: String,
    /// Lines delivered (the kernel took them whole; for NATS, acknowledged):
    /// never goes down. Routed = lines_out + queue_lines + dropped +
    /// discarded + filtered at every moment.
    pub(crate) lines_out: u64,
    /// Bytes the kernel took.
    pub(crate) bytes_out: u64,
    /// Lines dropped by `when_full`.
    pub(crate) dropped: u64,
    /// Lines lost because no reader was attached.
    pub(crate) discarded: u64,
    /// Lines its `match`/`exclude` filters kept out.
    pub(crate) filtered: u64,
    /// Write, open and rotation errors.
    pub(crate) errors: u64,
    /// Bytes waiting in its queue.
    pub(crate) queue_bytes: u64,
    /// Lines accepted and not delivered yet (queued, or for a forward held
    /// by the protocol: NATS messages awaiting their PubAck).
    #[serde(default)]
    pub(crate) queue_lines: u64,
    /// The queue's capacity.
    pub(crate) buffer_bytes: u64,
}

/// What the control socket itself did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ControlRow {
    /// Requests answered.
    pub(crate) served: u64,
    /// Clients dropped: request too long or unknown, too slow, or an error.
    pub(crate) dropped: u64,
    /// Connections refused because too many clients were connected.
    pub(crate) refused: u64,
}

/// `fifo-broker status`: asks the daemon that runs `source`'s config and
/// prints its answer in `format`.
pub(crate) fn run(source: &Source, format: StatusFormat) -> Result<()> {
    // A config broken since the daemon loaded it must not hide the running
    // daemon: ask it in the directory the file still names (or the
    // default one), and say why.
    let dir = match crate::config::load(&source.config, &source.env) {
        Ok(config) => config.dir,
        Err(err) => {
            let dir = crate::config::dir_of(&source.config, &source.env)
                .unwrap_or_else(|| source.env.default_dir());
            eprintln!(
                "fifo-broker: warning: {err}\nfifo-broker: warning: asking the daemon in {}",
                dir.display()
            );
            dir
        }
    };
    let socket = dir.join(crate::control::SOCKET_NAME);
    if format == StatusFormat::Watch {
        return watch::run(&socket);
    }
    let json = client::fetch(&socket)?;
    let text = match format {
        // Printed as the daemon wrote it, once it is known to be whole (a
        // daemon that died mid-answer leaves half a document).
        StatusFormat::Json => match serde_json::from_slice::<serde_json::Value>(&json) {
            Ok(_) => String::from_utf8_lossy(&json).into_owned(),
            Err(e) => {
                return Err(Error::Unavailable {
                    socket,
                    reason: format!("the answer is not a status document: {e}"),
                })
            }
        },
        StatusFormat::Table | StatusFormat::Prometheus | StatusFormat::Watch => {
            let snapshot: Snapshot =
                serde_json::from_slice(&json).map_err(|e| Error::Unavailable {
                    socket: socket.clone(),
                    reason: format!("the answer is not a status document: {e}"),
                })?;
            if format == StatusFormat::Table {
                table::render(&snapshot, None)
            } else {
                prometheus::render(&snapshot)
            }
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `status | head` is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            context: "writing to standard output",
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Bytes in binary units, one decimal: `12.3 KiB`, `1 MiB`, `512 B`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() < 0.05 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds as `3d 4h`, `2h 5m`, `7m 3s`, `12s`.
pub(crate) fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(12_595), "12.3 KiB");
        assert_eq!(human_bytes(1 << 20), "1 MiB");
        assert_eq!(human_duration(12), "12s");
        assert_eq!(human_duration(423), "7m 3s");
        assert_eq!(human_duration(7500), "2h 5m");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600), "3d 4h");
    }
}
