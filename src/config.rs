//! The config file: TOML in, a validated [`Config`] out.
//!
//! Two stages, as ripgrep does it: `Raw*` structs mirror the file exactly
//! (`deny_unknown_fields`, every value wrapped in [`Spanned`] so errors can
//! point at it), and [`parse`] turns them into a [`Config`] whose every field is
//! checked, defaulted and resolved (paths absolute, globs expanded into input
//! indices, formats parsed). Nothing in here touches the file system except
//! reading the config file and looking up a group name.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::format::Format;

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fifo-broker/fifo-broker.toml";

const DEFAULT_MAX_LINE_BYTES: usize = 65536;
const DEFAULT_INPUT_MODE: u32 = 0o620;
const DEFAULT_SUBSCRIBER_MODE: u32 = 0o640;
const DEFAULT_BUFFER_BYTES: usize = 1 << 20;
const DEFAULT_MAX_BYTES: u64 = 100 << 20;
const DEFAULT_KEEP: u32 = 5;
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_SUBSCRIBER_FORMAT: &str = "{line}";
const DEFAULT_SINK_FORMAT: &str = "{time} {input} {line}";
/// Largest accepted `max_line_bytes` and `buffer_bytes`: far beyond any sane
/// line, small enough that a typo cannot make the daemon allocate gigabytes.
const MAX_SIZE: i64 = 1 << 30;
const MAX_KEEP: i64 = 1000;

/// A config file that cannot be used, located as `FILE:LINE:COL` when the
/// problem is at a place in the file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line and column of the offending text, if there is one.
    pub position: Option<(usize, usize)>,
    /// What is wrong, naming the key.
    pub message: String,
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
}

impl OutputConfig {
    /// "subscriber" or "sink", for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            OutputKind::Subscriber { .. } => "subscriber",
            OutputKind::Sink { .. } => "sink",
        }
    }
}

/// The environment that picks default directories, captured once so that
/// parsing is a pure function of its inputs (and testable).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// Effective user id.
    pub uid: u32,
    /// `$RUNTIME_DIRECTORY` (set by systemd's `RuntimeDirectory=`).
    pub runtime_directory: Option<OsString>,
    /// `$LOGS_DIRECTORY` (set by systemd's `LogsDirectory=`).
    pub logs_directory: Option<OsString>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<OsString>,
    /// `$XDG_STATE_HOME`.
    pub xdg_state_home: Option<OsString>,
    /// `$HOME`.
    pub home: Option<OsString>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Env {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Env {
            uid: rustix::process::geteuid().as_raw(),
            runtime_directory: var("RUNTIME_DIRECTORY"),
            logs_directory: var("LOGS_DIRECTORY"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_state_home: var("XDG_STATE_HOME"),
            home: var("HOME"),
        }
    }

    /// The FIFO directory when the config names none.
    fn default_dir(&self) -> PathBuf {
        if let Some(dirs) = &self.runtime_directory {
            return first_of_list(dirs);
        }
        if self.uid == 0 {
            return PathBuf::from("/run/fifo-broker");
        }
        match &self.xdg_runtime_dir {
            Some(xdg) => Path::new(xdg).join("fifo-broker"),
            None => PathBuf::from(format!("/tmp/fifo-broker-{}", self.uid)),
        }
    }

    /// The log directory when the config names none.
    fn default_log_dir(&self) -> PathBuf {
        if let Some(dirs) = &self.logs_directory {
            return first_of_list(dirs);
        }
        if self.uid == 0 {
            return PathBuf::from("/var/log/fifo-broker");
        }
        match (&self.xdg_state_home, &self.home) {
            (Some(state), _) => Path::new(state).join("fifo-broker"),
            (None, Some(home)) => Path::new(home).join(".local/state/fifo-broker"),
            (None, None) => PathBuf::from(format!("/tmp/fifo-broker-{}-logs", self.uid)),
        }
    }
}

/// systemd puts several directories in one variable, separated by `:`.
fn first_of_list(list: &OsString) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = list.as_bytes();
    let first = bytes.split(|&b| b == b':').next().unwrap_or(bytes);
    PathBuf::from(std::ffi::OsStr::from_bytes(first))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    broker: RawBroker,
    #[serde(default)]
    inputs: BTreeMap<Spanned<String>, RawInput>,
    #[serde(default)]
    subscribers: BTreeMap<Spanned<String>, RawSubscriber>,
    #[serde(default)]
    sinks: BTreeMap<Spanned<String>, RawSink>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    dir: Option<Spanned<String>>,
    log_dir: Option<Spanned<String>>,
    group: Option<Spanned<RawGroup>>,
    max_line_bytes: Option<Spanned<i64>>,
    pipe_bytes: Option<Spanned<i64>>,
    shutdown_timeout: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGroup {
    Name(String),
    Id(i64),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInput {
    mode: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscriber {
    from: Spanned<Vec<Spanned<String>>>,
    mode: Option<Spanned<i64>>,
    format: Option<Spanned<String>>,
    buffer_bytes: Option<Spanned<i64>>,
    when_full: Option<Spanned<WhenFull>>,
}

/// The raw keys subscribers and sinks share.
struct Common<'r> {
    from: &'r Spanned<Vec<Spanned<String>>>,
    format: &'r Option<Spanned<String>>,
    buffer_bytes: &'r Option<Spanned<i64>>,
    when_full: &'r Option<Spanned<WhenFull>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    path: Spanned<String>,
    from: Spanned<Vec<Spanned<String>>>,
    format: Option<Spanned<String>>,
    buffer_bytes: Option<Spanned<i64>>,
    when_full: Option<Spanned<WhenFull>>,
    max_bytes: Option<Spanned<i64>>,
    keep: Option<Spanned<i64>>,
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

/// Validates config `text` read from `file`.
pub fn parse(file: &Path, text: &str, env: &Env) -> Result<Config, ConfigError> {
    let at = Locator { file, text };
    let raw: RawConfig = toml::from_str(text).map_err(|err| {
        // The toml crate's message repeats the offending line with a caret;
        // the first line is the message itself. serde's messages do not say
        // which key they are about, so name it from the location.
        let message = err.message().lines().next().unwrap_or("invalid TOML");
        let offset = err.span().map_or(0, |s| s.start);
        match key_at(text, offset) {
            Some(key) if !message.contains(&key) => at.error(offset, format!("{key}: {message}")),
            _ => at.error(offset, message),
        }
    })?;
    Validator {
        at,
        env,
        warnings: Vec::new(),
    }
    .validate(raw)
}

/// Turns byte offsets into `FILE:LINE:COL` errors.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            position: Some(line_column(self.text, offset)),
            message: message.into(),
        }
    }

    fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(spanned.span().start, message)
    }

    fn location<T>(&self, spanned: &Spanned<T>) -> String {
        let (line, column) = line_column(self.text, spanned.span().start);
        format!("{}:{line}:{column}", self.file.display())
    }
}

/// The dotted key at byte `offset` of `text` (the table header above it, then
/// the key its line assigns), for naming what a serde error is about.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    if let Some(table) = header(line) {
        return Some(table);
    }
    let table = text[..line_start].lines().rev().find_map(header);
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty());
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (t, k) => t.or(k),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = memchr::memchr_iter(b'\n', before).count() + 1;
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    let column = text
        .get(line_start..offset)
        .map_or(offset - line_start, |s| s.chars().count());
    (line, column + 1)
}

struct Validator<'a> {
    at: Locator<'a>,
    env: &'a Env,
    warnings: Vec<String>,
}

impl Validator<'_> {
    fn validate(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let base = self.at.file.parent().unwrap_or(Path::new("/"));
        let broker = &raw.broker;
        let dir = match &broker.dir {
            Some(dir) => self.directory(dir, "broker.dir", base)?,
            None => self.env.default_dir(),
        };
        let log_dir = match &broker.log_dir {
            Some(dir) => self.directory(dir, "broker.log_dir", base)?,
            None => self.env.default_log_dir(),
        };
        let group = broker.group.as_ref().map(|g| self.group(g)).transpose()?;
        let max_line_bytes = match &broker.max_line_bytes {
            Some(v) => self.size(v, "broker.max_line_bytes", 1)?,
            None => DEFAULT_MAX_LINE_BYTES,
        };
        let pipe_bytes = match &broker.pipe_bytes {
            Some(v) => Some(self.size(v, "broker.pipe_bytes", 4096)?),
            None => None,
        };
        let shutdown_timeout = match &broker.shutdown_timeout {
            Some(v) if v.get_ref().is_finite() && (0.0..=3600.0).contains(v.get_ref()) => {
                Duration::from_secs_f64(*v.get_ref())
            }
            Some(v) => {
                return Err(self
                    .at
                    .at(v, "broker.shutdown_timeout: must be 0 to 3600 seconds"))
            }
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };

        let mut inputs = Vec::new();
        for (name, input) in &raw.inputs {
            self.name(name, "inputs")?;
            let mode = match &input.mode {
                Some(m) => self.mode(m, &format!("inputs.{}.mode", name.get_ref()), 0o400)?,
                None => DEFAULT_INPUT_MODE,
            };
            inputs.push(InputConfig {
                name: name.get_ref().clone(),
                mode,
            });
        }

        let mut outputs = Vec::new();
        for (name, sub) in &raw.subscribers {
            self.name(name, "subscribers")?;
            let key = format!("subscribers.{}", name.get_ref());
            if let Some((other, _)) = raw.inputs.get_key_value(name.get_ref().as_str()) {
                return Err(self.at.at(
                    name,
                    format!(
                        "{key}: the name is already used by the input at {} \
                         (inputs and subscribers are files in the same directory)",
                        self.at.location(other)
                    ),
                ));
            }
            let mode = match &sub.mode {
                Some(m) => self.mode(m, &format!("{key}.mode"), 0o200)?,
                None => DEFAULT_SUBSCRIBER_MODE,
            };
            let common = Common {
                from: &sub.from,
                format: &sub.format,
                buffer_bytes: &sub.buffer_bytes,
                when_full: &sub.when_full,
            };
            let kind = OutputKind::Subscriber { mode };
            outputs.push(self.output(
                name,
                &key,
                kind,
                common,
                DEFAULT_SUBSCRIBER_FORMAT,
                &inputs,
            )?);
        }

        let mut sink_paths: BTreeMap<PathBuf, &Spanned<String>> = BTreeMap::new();
        for (name, sink) in &raw.sinks {
            self.name(name, "sinks")?;
            let key = format!("sinks.{}", name.get_ref());
            let path = self.sink_path(&sink.path, &key, &log_dir)?;
            if let Some(other) = sink_paths.insert(path.clone(), name) {
                return Err(self.at.at(
                    &sink.path,
                    format!(
                        "{key}.path: {} is already the path of the sink at {}",
                        path.display(),
                        self.at.location(other)
                    ),
                ));
            }
            let max_bytes = match &sink.max_bytes {
                Some(v) => self.integer(v, &format!("{key}.max_bytes"), 0, i64::MAX)? as u64,
                None => DEFAULT_MAX_BYTES,
            };
            let keep = match &sink.keep {
                Some(v) => self.integer(v, &format!("{key}.keep"), 0, MAX_KEEP)? as u32,
                None => DEFAULT_KEEP,
            };
            let common = Common {
                from: &sink.from,
                format: &sink.format,
                buffer_bytes: &sink.buffer_bytes,
                when_full: &sink.when_full,
            };
            let kind = OutputKind::Sink {
                path,
                max_bytes,
                keep,
            };
            outputs.push(self.output(name, &key, kind, common, DEFAULT_SINK_FORMAT, &inputs)?);
        }

        Ok(Config {
            file: self.at.file.to_path_buf(),
            dir,
            log_dir,
            group,
            max_line_bytes,
            pipe_bytes,
            shutdown_timeout,
            inputs,
            outputs,
            warnings: self.warnings,
        })
    }

    /// The settings subscribers and sinks share, checked.
    fn output(
        &mut self,
        name: &Spanned<String>,
        key: &str,
        kind: OutputKind,
        common: Common<'_>,
        default_format: &str,
        inputs: &[InputConfig],
    ) -> Result<OutputConfig, ConfigError> {
        Ok(OutputConfig {
            name: name.get_ref().clone(),
            kind,
            from: self.routes(common.from, key, inputs)?,
            format: self.format(common.format, key, default_format)?,
            buffer_bytes: self.buffer_bytes(common.buffer_bytes, key)?,
            when_full: common
                .when_full
                .as_ref()
                .map_or(WhenFull::DropNewest, |w| *w.get_ref()),
        })
    }

    fn directory(
        &self,
        dir: &Spanned<String>,
        key: &str,
        base: &Path,
    ) -> Result<PathBuf, ConfigError> {
        if dir.get_ref().is_empty() {
            return Err(self.at.at(dir, format!("{key}: must not be empty")));
        }
        Ok(base.join(dir.get_ref()))
    }

    fn name(&self, name: &Spanned<String>, table: &str) -> Result<(), ConfigError> {
        let n = name.get_ref();
        let valid_first = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let valid_rest = |b: u8| valid_first(b) || b == b'.' || b == b'-';
        let ok = n.len() <= 255
            && n.bytes().next().is_some_and(valid_first)
            && n.bytes().skip(1).all(valid_rest);
        if ok {
            Ok(())
        } else {
            Err(self.at.at(
                name,
                format!(
                    "{table}.{n:?}: invalid name: names are 1 to 255 of A-Z a-z 0-9 _ . - \
                     and start with a letter, digit or _"
                ),
            ))
        }
    }

    fn mode(&self, mode: &Spanned<i64>, key: &str, needs: u32) -> Result<u32, ConfigError> {
        let m = *mode.get_ref();
        if !(0..=0o777).contains(&m) {
            return Err(self.at.at(
                mode,
                format!(
                    "{key}: {m} (0o{m:o}) is not a permission mode; write it in octal \
                     between 0o000 and 0o777, e.g. 0o640"
                ),
            ));
        }
        let m = m as u32;
        if m & needs == 0 {
            let what = if needs == 0o400 { "read" } else { "write" };
            return Err(self.at.at(
                mode,
                format!(
                    "{key}: 0o{m:03o} lacks owner {what} (0o{needs:03o}), which the daemon \
                     needs to use the FIFO"
                ),
            ));
        }
        Ok(m)
    }

    fn integer(&self, v: &Spanned<i64>, key: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(self
                .at
                .at(v, format!("{key}: {n} is out of range ({min} to {max})")))
        }
    }

    fn size(&self, v: &Spanned<i64>, key: &str, min: i64) -> Result<usize, ConfigError> {
        Ok(self.integer(v, key, min, MAX_SIZE)? as usize)
    }

    fn buffer_bytes(&self, v: &Option<Spanned<i64>>, key: &str) -> Result<usize, ConfigError> {
        match v {
            Some(v) => self.size(v, &format!("{key}.buffer_bytes"), 0),
            None => Ok(DEFAULT_BUFFER_BYTES),
        }
    }

    fn group(&self, group: &Spanned<RawGroup>) -> Result<u32, ConfigError> {
        match group.get_ref() {
            RawGroup::Id(id) if (0..i64::from(u32::MAX)).contains(id) => Ok(*id as u32),
            RawGroup::Id(id) => Err(self
                .at
                .at(group, format!("broker.group: {id} is not a gid"))),
            RawGroup::Name(name) => match nix::unistd::Group::from_name(name) {
                Ok(Some(g)) => Ok(g.gid.as_raw()),
                Ok(None) => Err(self
                    .at
                    .at(group, format!("broker.group: no group named {name:?}"))),
                Err(err) => Err(self.at.at(
                    group,
                    format!("broker.group: cannot look up group {name:?}: {err}"),
                )),
            },
        }
    }

    fn sink_path(
        &self,
        path: &Spanned<String>,
        key: &str,
        log_dir: &Path,
    ) -> Result<PathBuf, ConfigError> {
        let p = Path::new(path.get_ref());
        if p.as_os_str().is_empty() || p.file_name().is_none() || path.get_ref().ends_with('/') {
            return Err(self
                .at
                .at(path, format!("{key}.path: {p:?} does not name a file")));
        }
        Ok(log_dir.join(p))
    }

    fn format(
        &self,
        format: &Option<Spanned<String>>,
        key: &str,
        default: &str,
    ) -> Result<Format, ConfigError> {
        match format {
            Some(f) => {
                Format::parse(f.get_ref()).map_err(|e| self.at.at(f, format!("{key}.format: {e}")))
            }
            None => Ok(Format::parse(default).expect("default formats are valid")),
        }
    }

    fn routes(
        &mut self,
        from: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        inputs: &[InputConfig],
    ) -> Result<Vec<usize>, ConfigError> {
        if from.get_ref().is_empty() {
            return Err(self
                .at
                .at(from, format!("{key}.from: must name at least one input")));
        }
        let mut routes = Vec::new();
        for entry in from.get_ref() {
            let pattern = entry.get_ref();
            let before = routes.len();
            if is_glob(pattern) {
                let glob = wildmatch::WildMatch::new(pattern);
                routes.extend((0..inputs.len()).filter(|&i| glob.matches(&inputs[i].name)));
                if routes.len() == before {
                    self.warnings.push(format!(
                        "{}: {key}.from: {pattern:?} matches no input (yet)",
                        self.at.location(entry)
                    ));
                }
            } else {
                match inputs.iter().position(|i| &i.name == pattern) {
                    Some(i) => routes.push(i),
                    None => {
                        return Err(self.at.at(
                            entry,
                            format!("{key}.from: {pattern:?} names no input in [inputs]"),
                        ))
                    }
                }
            }
        }
        routes.sort_unstable();
        routes.dedup();
        Ok(routes)
    }
}

/// True if a `from` entry is a pattern rather than a name.
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

impl Config {
    /// What `--check` prints: every directory, FIFO and file the daemon
    /// would create, with modes and routes.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "config: {}", self.file.display());
        let _ = writeln!(out, "dir: {}", self.dir.display());
        let _ = writeln!(out, "log_dir: {}", self.log_dir.display());
        if let Some(gid) = self.group {
            let _ = writeln!(out, "group: {gid}");
        }
        let _ = writeln!(out, "max_line_bytes: {}", self.max_line_bytes);
        for input in &self.inputs {
            let _ = writeln!(
                out,
                "input {}: {} mode 0{:03o}",
                input.name,
                self.dir.join(&input.name).display(),
                input.mode
            );
        }
        for output in &self.outputs {
            let routes: Vec<&str> = output.from.iter().map(|&i| &*self.inputs[i].name).collect();
            let target = match &output.kind {
                OutputKind::Subscriber { mode } => {
                    format!("{} mode 0{mode:03o}", self.dir.join(&output.name).display())
                }
                OutputKind::Sink {
                    path,
                    max_bytes,
                    keep,
                } => {
                    format!(
                        "{} mode 0640 max_bytes {max_bytes} keep {keep}",
                        path.display()
                    )
                }
            };
            let _ = writeln!(
                out,
                "{} {}: {target} from [{}] format {:?} buffer_bytes {} when_full {}",
                output.kind_name(),
                output.name,
                routes.join(", "),
                output.format.source(),
                output.buffer_bytes,
                output.when_full,
            );
        }
        out
    }
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

    fn parse_ok(text: &str) -> Config {
        parse(Path::new("/etc/fb.toml"), text, &env()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> String {
        match parse(Path::new("/etc/fb.toml"), text, &env()) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const EXAMPLE: &str = r#"
[broker]
dir = "/run/fb"
max_line_bytes = 100

[inputs.alerts]
mode = 0o620

[inputs.events]

[subscribers."alerts.tail"]
from = ["alerts"]
mode = 0o600
when_full = "block"

[subscribers.all]
from = ["*"]
format = "{input}: {line}"

[sinks.archive]
path = "archive.log"
from = ["*"]
"#;

    #[test]
    fn example_parses_with_defaults() {
        let c = parse_ok(EXAMPLE);
        assert_eq!(c.dir, Path::new("/run/fb"));
        assert_eq!(c.log_dir, Path::new("/tmp/fifo-broker-1000-logs"));
        assert_eq!(c.max_line_bytes, 100);
        let names: Vec<_> = c.inputs.iter().map(|i| (i.name.as_str(), i.mode)).collect();
        assert_eq!(names, [("alerts", 0o620), ("events", 0o620)]);
        let tail = &c.outputs[0];
        assert_eq!(tail.name, "alerts.tail");
        assert_eq!(tail.kind, OutputKind::Subscriber { mode: 0o600 });
        assert_eq!(tail.from, [0]);
        assert_eq!(tail.when_full, WhenFull::Block);
        assert_eq!(tail.buffer_bytes, 1 << 20);
        assert_eq!(c.outputs[1].from, [0, 1]);
        assert_eq!(c.outputs[1].kind, OutputKind::Subscriber { mode: 0o640 });
        let sink = &c.outputs[2];
        assert_eq!(
            sink.kind,
            OutputKind::Sink {
                path: PathBuf::from("/tmp/fifo-broker-1000-logs/archive.log"),
                max_bytes: 100 << 20,
                keep: 5
            }
        );
        assert_eq!(sink.format.source(), "{time} {input} {line}");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn default_dirs_follow_systemd_then_root_then_xdg() {
        let mut e = Env {
            uid: 0,
            ..Env::default()
        };
        assert_eq!(e.default_dir(), Path::new("/run/fifo-broker"));
        assert_eq!(e.default_log_dir(), Path::new("/var/log/fifo-broker"));
        e.runtime_directory = Some("/run/a:/run/b".into());
        e.logs_directory = Some("/var/log/x".into());
        assert_eq!(e.default_dir(), Path::new("/run/a"));
        assert_eq!(e.default_log_dir(), Path::new("/var/log/x"));
        let mut u = Env {
            uid: 1000,
            home: Some("/home/u".into()),
            ..Env::default()
        };
        assert_eq!(u.default_dir(), Path::new("/tmp/fifo-broker-1000"));
        assert_eq!(
            u.default_log_dir(),
            Path::new("/home/u/.local/state/fifo-broker")
        );
        u.xdg_runtime_dir = Some("/run/user/1000".into());
        u.xdg_state_home = Some("/home/u/.state".into());
        assert_eq!(u.default_dir(), Path::new("/run/user/1000/fifo-broker"));
        assert_eq!(u.default_log_dir(), Path::new("/home/u/.state/fifo-broker"));
    }

    #[test]
    fn relative_dir_resolves_against_config_file() {
        let c = parse_ok("[broker]\ndir = \"fifos\"\nlog_dir = \"/abs\"\n");
        assert_eq!(c.dir, Path::new("/etc/fifos"));
        assert_eq!(c.log_dir, Path::new("/abs"));
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
        let e = parse_err("[inputs.a]\n[sinks.s]\nfrom = [\"a\"]\n");
        assert!(e.contains(":2:1: sinks.s: missing field `path`"), "{e}");
    }

    #[test]
    fn bad_syntax_is_located() {
        let e = parse_err("[inputs.a]\nmode = = 1\n");
        assert!(e.starts_with("/etc/fb.toml:2:"), "{e}");
    }

    #[test]
    fn bad_modes_are_rejected() {
        for (mode, why) in [
            ("0o1777", "octal"),
            ("-1", "octal"),
            ("0o200", "owner read"),
        ] {
            let e = parse_err(&format!("[inputs.a]\nmode = {mode}\n"));
            assert!(e.starts_with("/etc/fb.toml:2:8: inputs.a.mode: "), "{e}");
            assert!(e.contains(why), "{mode}: {e}");
        }
        let e = parse_err("[inputs.a]\n[subscribers.s]\nfrom=[\"a\"]\nmode = 0o444\n");
        assert!(
            e.contains(":4:8: subscribers.s.mode") && e.contains("owner write"),
            "{e}"
        );
    }

    #[test]
    fn from_must_name_inputs() {
        let e = parse_err("[inputs.a]\n[subscribers.s]\nfrom = [\"a\", \"b\"]\n");
        assert!(
            e.starts_with("/etc/fb.toml:3:14: subscribers.s.from: \"b\" names no"),
            "{e}"
        );
        let e = parse_err("[inputs.a]\n[sinks.s]\npath = \"x\"\nfrom = []\n");
        assert!(
            e.starts_with("/etc/fb.toml:4:8: sinks.s.from: must name"),
            "{e}"
        );
        let e = parse_err("[inputs.a]\n[sinks.s]\npath = \"x\"\n");
        assert!(e.contains("from"), "{e}");
    }

    #[test]
    fn glob_matching_nothing_is_a_warning() {
        let c = parse_ok("[inputs.a]\n[subscribers.s]\nfrom = [\"zz*\", \"a\"]\n");
        assert_eq!(c.outputs[0].from, [0]);
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].starts_with("/etc/fb.toml:3:9: subscribers.s.from"),
            "{c:?}"
        );
    }

    #[test]
    fn globs_expand_to_sorted_unique_inputs() {
        let c = parse_ok(
            "[inputs.ab]\n[inputs.ac]\n[inputs.b]\n[subscribers.s]\nfrom = [\"a?\", \"*c\", \"b\"]\n",
        );
        assert_eq!(c.outputs[0].from, [0, 1, 2]);
    }

    #[test]
    fn names_are_checked_and_unique_across_inputs_and_subscribers() {
        let e = parse_err("[inputs.\"a/b\"]\n");
        assert!(e.contains(":1:") && e.contains("invalid name"), "{e}");
        let e = parse_err("[inputs.\".hidden\"]\n");
        assert!(e.contains("invalid name"), "{e}");
        let e = parse_err(&format!("[inputs.{}]\n", "x".repeat(256)));
        assert!(e.contains("invalid name"), "{e}");
        parse_ok(&format!("[inputs.{}]\n", "x".repeat(255)));
        let e = parse_err("[inputs.a]\n[subscribers.a]\nfrom = [\"a\"]\n");
        assert!(
            e.starts_with("/etc/fb.toml:2:14: subscribers.a: the name is already"),
            "{e}"
        );
    }

    #[test]
    fn when_full_and_formats_are_checked() {
        let e = parse_err("[inputs.a]\n[subscribers.s]\nfrom=[\"a\"]\nwhen_full = \"wait\"\n");
        assert!(e.contains(":4:") && e.contains("wait"), "{e}");
        let e = parse_err("[inputs.a]\n[subscribers.s]\nfrom=[\"a\"]\nformat = \"{nope}\"\n");
        assert!(
            e.contains(":4:10: subscribers.s.format: ") && e.contains("{nope}"),
            "{e}"
        );
    }

    #[test]
    fn sinks_resolve_paths_and_refuse_duplicates() {
        let c = parse_ok(
            "[broker]\nlog_dir = \"/l\"\n[inputs.a]\n[sinks.x]\npath = \"/abs/x.log\"\n\
             from = [\"a\"]\nmax_bytes = 0\nkeep = 0\n",
        );
        let want = OutputKind::Sink {
            path: "/abs/x.log".into(),
            max_bytes: 0,
            keep: 0,
        };
        assert_eq!(c.outputs[0].kind, want);
        let e = parse_err(
            "[broker]\nlog_dir = \"/l\"\n[inputs.a]\n[sinks.x]\npath = \"x.log\"\nfrom = [\"a\"]\n\
             [sinks.y]\npath = \"/l/x.log\"\nfrom = [\"a\"]\n",
        );
        assert!(e.contains(":8:8: sinks.y.path: /l/x.log is already"), "{e}");
        let e = parse_err("[inputs.a]\n[sinks.x]\npath = \"\"\nfrom = [\"a\"]\n");
        assert!(e.contains("sinks.x.path"), "{e}");
        let e = parse_err("[inputs.a]\n[sinks.x]\npath = \"x\"\nfrom = [\"a\"]\nkeep = -1\n");
        assert!(e.contains(":5:8: sinks.x.keep: -1 is out of range"), "{e}");
    }

    #[test]
    fn sizes_and_groups_are_checked() {
        let e = parse_err("[broker]\nmax_line_bytes = 0\n");
        assert!(e.contains(":2:18: broker.max_line_bytes"), "{e}");
        let e = parse_err("[broker]\npipe_bytes = 100\n");
        assert!(e.contains("broker.pipe_bytes"), "{e}");
        let e = parse_err("[broker]\ngroup = \"no-such-group-here\"\n");
        assert!(e.contains(":2:9: broker.group: no group named"), "{e}");
        let c = parse_ok("[broker]\ngroup = 4242\nshutdown_timeout = 0.5\n");
        assert_eq!(c.group, Some(4242));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(500));
    }

    #[test]
    fn key_at_never_splits_a_character() {
        assert_eq!(key_at("[a]\né = 1\n", 5).as_deref(), Some("a.é"));
        assert_eq!(key_at("[a]\nk = \"é\"\n", 10).as_deref(), Some("a.k"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_column("é = 1\nab", 7), (2, 1));
        assert_eq!(line_column("é = x", 5), (1, 5));
    }
}
