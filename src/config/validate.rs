//! The second stage: the [`Validator`] turns the [`raw`](super::raw) structs
//! into a [`Config`] whose every field is checked, defaulted and resolved
//! (directories and sink paths absolute, `from` globs expanded into input
//! indices, formats parsed). Each table has its own function, called in file
//! order so the first error reported is the first one in the file. Every
//! error names its key and points at the offending value; a glob that
//! matches nothing is only a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::env::Env;
use super::locate::Locator;
use super::raw::{Common, RawBroker, RawConfig, RawGroup, RawInput, RawSink, RawSubscriber};
use super::{Config, ConfigError, InputConfig, OutputConfig, OutputKind, WhenFull};
mod forward;

use crate::filter::{Filter, Pattern};
use crate::format::Format;

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

/// Checks one parsed file; used once, by [`validate`](Validator::validate).
pub(crate) struct Validator<'a> {
    /// Locates errors in the file.
    at: Locator<'a>,
    /// Picks the directories the file leaves out.
    env: &'a Env,
    /// Collected as they are found, handed over in [`Config::warnings`].
    warnings: Vec<String>,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(at: Locator<'a>, env: &'a Env) -> Validator<'a> {
        Validator {
            at,
            env,
            warnings: Vec::new(),
        }
    }

    /// The whole file, or its first error.
    pub(crate) fn validate(mut self, raw: &RawConfig) -> Result<Config, ConfigError> {
        let mut config = self.broker(&raw.broker)?;
        config.inputs = self.inputs(&raw.inputs)?;
        let subscribers = self.subscribers(raw, &config.inputs)?;
        let sinks = self.sinks(&raw.sinks, &config.log_dir, &config.inputs)?;
        let forwards = self.forwards(&raw.forwards, &config.inputs)?;
        config.outputs = subscribers
            .into_iter()
            .chain(sinks)
            .chain(forwards)
            .collect();
        config.warnings = self.warnings;
        Ok(config)
    }

    /// `[broker]`, as a [`Config`] with no inputs, outputs or warnings yet.
    fn broker(&self, broker: &RawBroker) -> Result<Config, ConfigError> {
        let base = self.at.file.parent().unwrap_or(Path::new("/"));
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
            Some(v) => self.shutdown_timeout(v)?,
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };
        let metrics_file = match &broker.metrics_file {
            Some(path) => Some(self.metrics_file(path)?),
            None => None,
        };
        Ok(Config {
            metrics_file,
            file: self.at.file.to_path_buf(),
            dir,
            log_dir,
            group,
            max_line_bytes,
            pipe_bytes,
            shutdown_timeout,
            inputs: Vec::new(),
            outputs: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// `[inputs.*]`, sorted by name.
    fn inputs(
        &self,
        raw: &BTreeMap<Spanned<String>, RawInput>,
    ) -> Result<Vec<InputConfig>, ConfigError> {
        let mut inputs = Vec::new();
        for (name, input) in raw {
            self.name(name, "inputs")?;
            let mode = match &input.mode {
                Some(m) => {
                    self.mode(m, &format!("{}.mode", key("inputs", name.get_ref())), 0o400)?
                }
                None => DEFAULT_INPUT_MODE,
            };
            inputs.push(InputConfig {
                name: name.get_ref().clone(),
                mode,
            });
        }
        Ok(inputs)
    }

    /// `[subscribers.*]`, sorted by name. `raw` is the whole file, since a
    /// subscriber's name must not be an input's.
    fn subscribers(
        &mut self,
        raw: &RawConfig,
        inputs: &[InputConfig],
    ) -> Result<Vec<OutputConfig>, ConfigError> {
        let mut outputs = Vec::new();
        for (name, sub) in &raw.subscribers {
            outputs.push(self.subscriber(name, sub, raw, inputs)?);
        }
        Ok(outputs)
    }

    /// One `[subscribers.NAME]`.
    fn subscriber(
        &mut self,
        name: &Spanned<String>,
        sub: &RawSubscriber,
        raw: &RawConfig,
        inputs: &[InputConfig],
    ) -> Result<OutputConfig, ConfigError> {
        self.name(name, "subscribers")?;
        let key = key("subscribers", name.get_ref());
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
        let kind = OutputKind::Subscriber { mode };
        self.output(
            name,
            &key,
            kind,
            sub.common(),
            DEFAULT_SUBSCRIBER_FORMAT,
            inputs,
        )
    }

    /// `[sinks.*]`, sorted by name; no two may write the same file.
    fn sinks(
        &mut self,
        raw: &BTreeMap<Spanned<String>, RawSink>,
        log_dir: &Path,
        inputs: &[InputConfig],
    ) -> Result<Vec<OutputConfig>, ConfigError> {
        let mut outputs = Vec::new();
        let mut sink_paths: BTreeMap<PathBuf, &Spanned<String>> = BTreeMap::new();
        for (name, sink) in raw {
            self.name(name, "sinks")?;
            let key = key("sinks", name.get_ref());
            let path = self.sink_path(&sink.path, &key, log_dir)?;
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
            outputs.push(self.sink(name, &key, sink, path, inputs)?);
        }
        Ok(outputs)
    }

    /// One `[sinks.NAME]` whose `path` is checked and resolved.
    fn sink(
        &mut self,
        name: &Spanned<String>,
        key: &str,
        sink: &RawSink,
        path: PathBuf,
        inputs: &[InputConfig],
    ) -> Result<OutputConfig, ConfigError> {
        let max_bytes = match &sink.max_bytes {
            Some(v) => self.integer(v, &format!("{key}.max_bytes"), 0, i64::MAX)? as u64,
            None => DEFAULT_MAX_BYTES,
        };
        let keep = match &sink.keep {
            Some(v) => self.integer(v, &format!("{key}.keep"), 0, MAX_KEEP)? as u32,
            None => DEFAULT_KEEP,
        };
        let kind = OutputKind::Sink {
            path,
            max_bytes,
            keep,
        };
        self.output(name, key, kind, sink.common(), DEFAULT_SINK_FORMAT, inputs)
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
            filter: Filter {
                matching: self.pattern(common.matching, &format!("{key}.match"))?,
                excluding: self.pattern(common.exclude, &format!("{key}.exclude"))?,
            },
        })
    }

    /// `match` / `exclude`: a regex, compiled within the size limit.
    fn pattern(
        &self,
        source: &Option<Spanned<String>>,
        key: &str,
    ) -> Result<Option<Pattern>, ConfigError> {
        let Some(source) = source else {
            return Ok(None);
        };
        Pattern::new(source.get_ref())
            .map(Some)
            .map_err(|e| self.at.at(source, format!("{key}: {e}")))
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

    fn metrics_file(&self, path: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        let p = Path::new(path.get_ref());
        if !p.is_absolute() || p.file_name().is_none() {
            return Err(self.at.at(
                path,
                "broker.metrics_file: must be an absolute file path, e.g. \
                 \"/var/lib/prometheus/node-exporter/fifo-broker.prom\"",
            ));
        }
        Ok(p.to_path_buf())
    }

    fn shutdown_timeout(&self, v: &Spanned<f64>) -> Result<Duration, ConfigError> {
        let secs = *v.get_ref();
        if secs.is_finite() && (0.0..=3600.0).contains(&secs) {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(self
                .at
                .at(v, "broker.shutdown_timeout: must be 0 to 3600 seconds"))
        }
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
                    "{}: invalid name: names are 1 to 255 of A-Z a-z 0-9 _ . - \
                     and start with a letter, digit or _",
                    key(table, n)
                ),
            ))
        }
    }

    fn mode(&self, mode: &Spanned<i64>, key: &str, needs: u32) -> Result<u32, ConfigError> {
        let m = *mode.get_ref();
        if !(0..=0o777).contains(&m) {
            let written = self.at.text.get(mode.span()).unwrap_or("").trim();
            let decimal = !written.is_empty() && written.bytes().all(|b| b.is_ascii_digit());
            let hint = if decimal && written.bytes().all(|b| b < b'8') && written.len() <= 4 {
                format!(
                    " (TOML reads {written} as decimal; octal needs the 0o prefix: 0o{written})"
                )
            } else {
                String::new()
            };
            return Err(self.at.at(
                mode,
                format!(
                    "{key}: {written} is not a permission mode{hint}; write it in octal between \
                     0o000 and 0o777, e.g. 0o640 (setuid, setgid and sticky bits are not allowed)"
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

    /// `from`: names and globs, resolved into sorted, unique input indices.
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

/// `table.name` as TOML writes it: the name quoted unless it is a bare key
/// (`subscribers."alerts.tail"`, `inputs.alerts`).
pub(crate) fn key(table: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        format!("{table}.{name}")
    } else {
        format!("{table}.{name:?}")
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::config::tests::{parse_err, parse_ok};
    use crate::config::{OutputKind, WhenFull};

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
    fn relative_dir_resolves_against_config_file() {
        let c = parse_ok("[broker]\ndir = \"fifos\"\nlog_dir = \"/abs\"\n");
        assert_eq!(c.dir, Path::new("/etc/fifos"));
        assert_eq!(c.log_dir, Path::new("/abs"));
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
        let e = parse_err("[inputs.a]\nmode = 0o4620\n");
        assert!(e.contains("inputs.a.mode: 0o4620 is not"), "{e}");
        let e = parse_err("[inputs.a]\nmode = 644\n");
        assert!(e.contains("the 0o prefix: 0o644"), "{e}");
        let e = parse_err("[inputs.a]\n[subscribers.\"a.b\"]\nfrom=[\"a\"]\nmode = 0o444\n");
        assert!(e.contains("subscribers.\"a.b\".mode: 0o444 lacks"), "{e}");
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
        let e = parse_err("[broker]\nmetrics_file = \"m.prom\"\n");
        assert!(
            e.contains(":2:16: broker.metrics_file: must be an absolute"),
            "{e}"
        );
        let c = parse_ok("[broker]\nmetrics_file = \"/m/fb.prom\"\n");
        assert_eq!(c.metrics_file.as_deref(), Some(Path::new("/m/fb.prom")));
        let c = parse_ok("[broker]\ngroup = 4242\nshutdown_timeout = 0.5\n");
        assert_eq!(c.group, Some(4242));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(500));
    }
}
