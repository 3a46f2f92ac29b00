//! Validation of `[forwards.NAME]` (SPEC §7): the url, the settings of its
//! protocol, and that keys meant for another protocol are not given. TLS
//! files and `.creds` are read and parsed here, so `--check` catches an
//! unreadable or malformed one with its line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::Validator;
use crate::config::raw::RawForward;
use crate::config::{ConfigError, ForwardConfig, InputConfig, OutputConfig, OutputKind, TlsConfig};
use crate::forward::nats::{check_subject, Creds};
use crate::forward::syslog::{Facility, Severity};
use crate::forward::url::{Endpoint, Transport};

/// Queue beyond the kernel for a forward, unless `buffer_bytes` says.
const DEFAULT_FORWARD_BUFFER: usize = 8 << 20;
/// What a forward queues: the line with when and where it was read; the
/// protocol encodes it on the way out.
pub(crate) const FORWARD_RECORD: &str = "{time} {input} {line}";
/// Unacknowledged NATS messages, unless `window` says.
const DEFAULT_WINDOW: i64 = 256;

impl Validator<'_> {
    /// `[forwards.*]`, sorted by name.
    pub(super) fn forwards(
        &mut self,
        raw: &BTreeMap<Spanned<String>, RawForward>,
        inputs: &[InputConfig],
    ) -> Result<Vec<OutputConfig>, ConfigError> {
        let mut outputs = Vec::new();
        for (name, forward) in raw {
            self.name(name, "forwards")?;
            let key = super::key("forwards", name.get_ref());
            let kind = OutputKind::Forward(Box::new(self.forward(&key, forward)?));
            let common = forward.common();
            let mut output = self.output(name, &key, kind, common, FORWARD_RECORD, inputs)?;
            if forward.buffer_bytes.is_none() {
                output.buffer_bytes = DEFAULT_FORWARD_BUFFER;
            }
            outputs.push(output);
        }
        Ok(outputs)
    }

    fn forward(&self, key: &str, raw: &RawForward) -> Result<ForwardConfig, ConfigError> {
        let endpoint = Endpoint::parse(raw.url.get_ref())
            .map_err(|e| self.at.at(&raw.url, format!("{key}.url: {e}")))?;
        let nats = matches!(endpoint, Endpoint::Nats { .. });
        self.only_for_nats(key, raw, nats)?;
        let tls_wanted = match &endpoint {
            Endpoint::Syslog { transport, .. } => *transport == Transport::Tls,
            Endpoint::Nats { .. } => raw.tls.as_ref().is_some_and(|t| *t.get_ref()),
            Endpoint::Journal => false,
        };
        let tls = match tls_wanted {
            true => Some(self.tls(key, raw, &endpoint)?),
            false => {
                self.no_tls_keys(key, raw)?;
                None
            }
        };
        Ok(ForwardConfig {
            facility: self.parsed(&raw.facility, key, "facility", Facility::parse)?,
            severity: self.parsed(&raw.severity, key, "severity", Severity::parse)?,
            hostname: raw
                .hostname
                .as_ref()
                .map_or_else(crate::format::host_name, |h| h.get_ref().clone()),
            app_name: (raw.app_name.as_ref()).map_or("{input}".into(), |a| a.get_ref().clone()),
            subject: self.subject(key, raw, nats)?,
            credentials: self.credentials(key, raw)?,
            window: match &raw.window {
                Some(w) => self.integer(w, &format!("{key}.window"), 1, 65536)? as usize,
                None => DEFAULT_WINDOW as usize,
            },
            tls,
            endpoint,
        })
    }

    /// `facility` / `severity`: a name, or the default.
    fn parsed<T: Default>(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
        field: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match value {
            Some(v) => parse(v.get_ref()).map_err(|e| self.at.at(v, format!("{key}.{field}: {e}"))),
            None => Ok(T::default()),
        }
    }

    /// `subject`, `credentials`, `tls` and `window` belong to NATS.
    fn only_for_nats(&self, key: &str, raw: &RawForward, nats: bool) -> Result<(), ConfigError> {
        if nats {
            return Ok(());
        }
        let strings = [("subject", &raw.subject), ("credentials", &raw.credentials)];
        for (field, value) in strings {
            if let Some(v) = value {
                return Err(self
                    .at
                    .at(v, format!("{key}.{field}: only nats:// forwards take it")));
            }
        }
        if let Some(v) = &raw.tls {
            let hint = "only nats:// forwards take it (syslog over TLS is syslog+tls://)";
            return Err(self.at.at(v, format!("{key}.tls: {hint}")));
        }
        if let Some(v) = &raw.window {
            return Err(self
                .at
                .at(v, format!("{key}.window: only nats:// forwards take it")));
        }
        Ok(())
    }

    fn no_tls_keys(&self, key: &str, raw: &RawForward) -> Result<(), ConfigError> {
        let keys = [
            ("ca_file", &raw.ca_file),
            ("cert_file", &raw.cert_file),
            ("key_file", &raw.key_file),
            ("server_name", &raw.server_name),
        ];
        for (field, value) in keys {
            if let Some(v) = value {
                return Err(self.at.at(
                    v,
                    format!(
                        "{key}.{field}: only for TLS (syslog+tls://, or nats:// with tls = true)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn tls(
        &self,
        key: &str,
        raw: &RawForward,
        endpoint: &Endpoint,
    ) -> Result<TlsConfig, ConfigError> {
        let path = |v: &Option<Spanned<String>>| v.as_ref().map(|p| self.relative(p.get_ref()));
        let tls = TlsConfig {
            ca_file: path(&raw.ca_file),
            cert_file: path(&raw.cert_file),
            key_file: path(&raw.key_file),
            server_name: match &raw.server_name {
                Some(name) => name.get_ref().clone(),
                None => endpoint.host().unwrap_or_default().to_string(),
            },
        };
        match (&raw.cert_file, &raw.key_file) {
            (Some(c), None) => Err(self
                .at
                .at(c, format!("{key}.cert_file: needs key_file too"))),
            (None, Some(k)) => Err(self
                .at
                .at(k, format!("{key}.key_file: needs cert_file too"))),
            _ => Ok(()),
        }?;
        if let Err(e) = crate::output::tls_client_config(&tls) {
            let at = [
                &raw.ca_file,
                &raw.cert_file,
                &raw.key_file,
                &raw.server_name,
            ]
            .into_iter()
            .flatten()
            .find(|v| e.contains(v.get_ref().as_str()))
            .unwrap_or(&raw.url);
            return Err(self.at.at(at, format!("{key}: {e}")));
        }
        Ok(tls)
    }

    fn subject(&self, key: &str, raw: &RawForward, nats: bool) -> Result<String, ConfigError> {
        match (&raw.subject, nats) {
            (Some(s), _) => {
                check_subject(&s.get_ref().replace("{input}", "input"))
                    .map_err(|e| self.at.at(s, format!("{key}.subject: {e}")))?;
                Ok(s.get_ref().clone())
            }
            (None, true) => Err(self.at.at(
                &raw.url,
                format!("{key}.subject: nats:// forwards need a subject (e.g. \"logs.{{input}}\")"),
            )),
            (None, false) => Ok(String::new()),
        }
    }

    fn credentials(&self, key: &str, raw: &RawForward) -> Result<Option<PathBuf>, ConfigError> {
        let Some(v) = &raw.credentials else {
            return Ok(None);
        };
        let path = self.relative(v.get_ref());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.at
                .at(v, format!("{key}.credentials: {}: {e}", path.display()))
        })?;
        Creds::parse(&text).map_err(|e| {
            self.at
                .at(v, format!("{key}.credentials: {}: {e}", path.display()))
        })?;
        Ok(Some(path))
    }

    /// A path relative to the config file's directory.
    fn relative(&self, path: &str) -> PathBuf {
        let base = self.at.file.parent().unwrap_or(Path::new("/"));
        base.join(path)
    }
}
