//! The config file: TOML in, a validated [`Config`] out.
//!
//! This module owns the public types the rest of the daemon runs on and the
//! two entry points, [`load`] and [`parse`]. The work is done in stages, as
//! ripgrep keeps `LowArgs` and `HiArgs` apart:
//!
//! - [`raw`] — serde structs that mirror the file exactly
//!   (`deny_unknown_fields`, every value wrapped in `Spanned`);
//! - [`validate`] — checks, defaults and resolves them into a [`Config`]
//!   (paths absolute, globs expanded into input indices, formats parsed);
//! - [`env`] — the process environment that picks default directories;
//! - [`locate`] — byte offsets into `FILE:LINE:COL` errors;
//! - [`describe`] — what `--check` prints.
//!
//! Nothing in here touches the file system except reading the config file and
//! looking up a group name.

mod describe;
mod env;
mod locate;
mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::filter::Filter;
use crate::format::Format;
use crate::forward::syslog::{Facility, Severity};
use crate::forward::url::Endpoint;

pub use env::Env;

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fifo-broker/fifo-broker.toml";

/// A config file that cannot be used, located as `FILE:LINE:COL` when the
/// problem is at a place in the file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub(crate) file: PathBuf,
    /// 1-based line and column of the offending text, if there is one.
    pub(crate) position: Option<(usize, usize)>,
    /// What is wrong, naming the key.
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => {
                write!(
                    f,
                    "{}:{line}:{column}: {}",
                    self.file.display(),
                    self.message
                )
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// What a full output does when its queue already holds `buffer_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Drop the incoming lines that do not fit.
    DropNewest,
    /// Drop whole lines from the front of the queue to make room.
    DropOldest,
    /// Stop reading the inputs that feed this output until it drains.
    Block,
}

impl fmt::Display for WhenFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WhenFull::DropNewest => "drop-newest",
            WhenFull::DropOldest => "drop-oldest",
            WhenFull::Block => "block",
        })
    }
}

/// The validated config the daemon runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (for messages).
    pub file: PathBuf,
    /// The FIFO directory.
    pub dir: PathBuf,
    /// Where relative sink paths resolve.
    pub log_dir: PathBuf,
    /// Group given to every FIFO, if any.
    pub group: Option<u32>,
    /// Lines longer than this are truncated to this many bytes (plus `\n`).
    pub max_line_bytes: usize,
    /// Kernel pipe capacity to ask for on every FIFO, if set.
    pub pipe_bytes: Option<usize>,
    /// How long a stop may spend delivering what was already written.
    pub shutdown_timeout: Duration,
    /// Where to write the Prometheus text for node_exporter, if anywhere.
    pub metrics_file: Option<PathBuf>,
    /// Input FIFOs, sorted by name.
    pub inputs: Vec<InputConfig>,
    /// Subscriber FIFOs and sinks, sorted by kind then name.
    pub outputs: Vec<OutputConfig>,
    /// Things worth telling the administrator that do not stop the daemon
    /// (a glob that matches nothing), each located in the file.
    pub warnings: Vec<String>,
}

/// One input FIFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputConfig {
    /// File name inside the FIFO directory.
    pub name: String,
    /// Exact permission bits.
    pub mode: u32,
}

/// One output: a subscriber FIFO or a sink file.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputConfig {
    /// The name in the config (for a subscriber, its file name).
    pub name: String,
    /// Subscriber or sink, with what is specific to each.
    pub kind: OutputKind,
    /// Indices into [`Config::inputs`] of the inputs routed here.
    pub from: Vec<usize>,
    /// How each line is written.
    pub format: Format,
    /// Bytes queued beyond the kernel before `when_full` applies.
    pub buffer_bytes: usize,
    /// Policy once the queue is full.
    pub when_full: WhenFull,
    /// `match` and `exclude`.
    pub(crate) filter: Filter,
}

/// What kind of output, and the settings only that kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// A FIFO in the directory that readers open.
    Subscriber {
        /// Exact permission bits.
        mode: u32,
    },
    /// An append-only log file.
    Sink {
        /// Absolute path of the file.
        path: PathBuf,
        /// Rotate once the file would exceed this many bytes; 0 = never.
        max_bytes: u64,
        /// Rotated files kept (`path.1` .. `path.keep`).
        keep: u32,
    },
    /// A network (or journal) forward.
    Forward(Box<ForwardConfig>),
}

/// A forward's settings (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardConfig {
    /// Where to, parsed from `url`.
    pub(crate) endpoint: Endpoint,
    /// Syslog PRI and journal PRIORITY.
    pub(crate) facility: Facility,
    pub(crate) severity: Severity,
    /// Syslog HOSTNAME.
    pub(crate) hostname: String,
    /// Syslog APP-NAME and journal SYSLOG_IDENTIFIER (`{input}` allowed).
    pub(crate) app_name: String,
    /// TLS settings, for `syslog+tls://` and `nats://` with `tls = true`.
    pub(crate) tls: Option<TlsConfig>,
    /// NATS subject template (`{input}` allowed).
    pub(crate) subject: String,
    /// NATS `.creds` file.
    pub(crate) credentials: Option<PathBuf>,
    /// NATS: most messages sent and not acknowledged yet.
    pub(crate) window: usize,
}

/// How a forward's TLS client is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsConfig {
    /// Roots to trust; the system's when unset.
    pub(crate) ca_file: Option<PathBuf>,
    /// A client certificate and its key (mutual TLS).
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    /// The name the server's certificate must carry.
    pub(crate) server_name: String,
}

impl OutputConfig {
    /// "subscriber" or "sink", for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            OutputKind::Subscriber { .. } => "subscriber",
            OutputKind::Sink { .. } => "sink",
            OutputKind::Forward(_) => "forward",
        }
    }
}

/// A group's name for messages, or its number if it has none.
pub(crate) fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => format!("{} ({gid})", group.name),
        _ => gid.to_string(),
    }
}

/// Reads and validates the config file at `file`.
pub fn load(file: &Path, env: &Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|err| ConfigError {
        file: file.to_path_buf(),
        position: None,
        message: format!("cannot read config file: {err}"),
    })?;
    parse(file, &text, env)
}

/// The FIFO directory `file` names, read leniently: for `status` when the
/// config no longer validates (an edit after the daemon loaded it), so that
/// it still finds the running daemon. `None` if even `[broker] dir` cannot
/// be read; the default directory if the file sets none.
pub(crate) fn dir_of(file: &Path, env: &Env) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    match table.get("broker").and_then(|b| b.get("dir")) {
        None => Some(env.default_dir()),
        Some(toml::Value::String(dir)) if !dir.is_empty() => {
            let base = file.parent().unwrap_or(Path::new("/"));
            Some(base.join(dir))
        }
        Some(_) => None,
    }
}

/// Validates config `text` read from `file`.
pub(crate) fn parse(file: &Path, text: &str, env: &Env) -> Result<Config, ConfigError> {
    let at = locate::Locator { file, text };
    let raw: raw::RawConfig = toml::from_str(text).map_err(|err| at.toml_error(&err))?;
    validate::Validator::new(at, env).validate(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            uid: 1000,
            ..Env::default()
        }
    }

    /// Parses `text` as `/etc/fb.toml`, panicking with the error if any.
    pub(super) fn parse_ok(text: &str) -> Config {
        parse(Path::new("/etc/fb.toml"), text, &env()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Parses `text` as `/etc/fb.toml`, expecting an error, and returns it
    /// as printed.
    pub(super) fn parse_err(text: &str) -> String {
        match parse(Path::new("/etc/fb.toml"), text, &env()) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_key_is_located() {
        let e = parse_err("[inputs.a]\nmode = 0o600\ncolour = 1\n");
        assert!(e.starts_with("/etc/fb.toml:3:1: "), "{e}");
        assert!(e.contains("colour"), "{e}");
        let e = parse_err("[broker]\nmax_line = 5\n");
        assert!(
            e.starts_with("/etc/fb.toml:2:1: ") && e.contains("max_line"),
            "{e}"
        );
        let e = parse_err("[brokers]\n");
        assert!(e.contains(":1:") && e.contains("brokers"), "{e}");
    }

    #[test]
    fn wrong_type_is_located() {
        let e = parse_err("[inputs.a]\nmode = \"rw\"\n");
        assert!(e.starts_with("/etc/fb.toml:2:8: "), "{e}");
        let e = parse_err("[broker]\nmax_line_bytes = \"big\"\n");
        assert!(
            e.starts_with("/etc/fb.toml:2:18: broker.max_line_bytes: "),
            "{e}"
        );
        let e = parse_err("[inputs.a]\n[subscribers.\"a.b\"]\nfrom = \"a\"\n");
        assert!(e.contains(":3:8: subscribers.\"a.b\".from: "), "{e}");
        assert!(e.contains("from = [\"alerts\"]"), "{e}");
        let e = parse_err("[inputs.a]\nmode = \"0640\"\n");
        assert!(e.contains("mode = 0o640"), "{e}");
        let e = parse_err("[broker]\nshutdown_timeout = \"5s\"\n");
        assert!(e.contains("shutdown_timeout = 5"), "{e}");
        let e = parse_err("[inputs.a]\n[sinks.s]\nfrom = [\"a\"]\n");
        assert!(e.contains(":2:1: sinks.s: missing field `path`"), "{e}");
    }

    #[test]
    fn bad_syntax_is_located() {
        let e = parse_err("[inputs.a]\nmode = = 1\n");
        assert!(e.starts_with("/etc/fb.toml:2:"), "{e}");
    }
}
