//! The first stage: serde structs that mirror the config file exactly, one
//! per table. Unknown keys are errors (`deny_unknown_fields`), every value
//! keeps its position (`Spanned`) for error messages, and nothing is checked
//! or defaulted here: that is [`validate`](super::validate)'s job. SPEC.md
//! section 3 documents each key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::WhenFull;

/// The whole file; each table is keyed by the name it gives its entry.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) broker: RawBroker,
    #[serde(default)]
    pub(crate) inputs: BTreeMap<Spanned<String>, RawInput>,
    #[serde(default)]
    pub(crate) subscribers: BTreeMap<Spanned<String>, RawSubscriber>,
    #[serde(default)]
    pub(crate) sinks: BTreeMap<Spanned<String>, RawSink>,
    #[serde(default)]
    pub(crate) forwards: BTreeMap<Spanned<String>, RawForward>,
}

/// `[broker]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBroker {
    pub(crate) dir: Option<Spanned<String>>,
    pub(crate) log_dir: Option<Spanned<String>>,
    pub(crate) group: Option<Spanned<RawGroup>>,
    pub(crate) max_line_bytes: Option<Spanned<i64>>,
    pub(crate) pipe_bytes: Option<Spanned<i64>>,
    pub(crate) shutdown_timeout: Option<Spanned<f64>>,
    pub(crate) metrics_file: Option<Spanned<String>>,
}

/// `broker.group`: a group name or a numeric gid.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawGroup {
    Name(String),
    Id(i64),
}

/// `[inputs.NAME]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInput {
    pub(crate) mode: Option<Spanned<i64>>,
}

/// `[subscribers.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscriber {
    pub(crate) from: Spanned<Vec<Spanned<String>>>,
    pub(crate) mode: Option<Spanned<i64>>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) buffer_bytes: Option<Spanned<i64>>,
    pub(crate) when_full: Option<Spanned<WhenFull>>,
    #[serde(rename = "match")]
    pub(crate) matching: Option<Spanned<String>>,
    pub(crate) exclude: Option<Spanned<String>>,
}

/// `[sinks.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSink {
    pub(crate) path: Spanned<String>,
    pub(crate) from: Spanned<Vec<Spanned<String>>>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) buffer_bytes: Option<Spanned<i64>>,
    pub(crate) when_full: Option<Spanned<WhenFull>>,
    #[serde(rename = "match")]
    pub(crate) matching: Option<Spanned<String>>,
    pub(crate) exclude: Option<Spanned<String>>,
    pub(crate) max_bytes: Option<Spanned<i64>>,
    pub(crate) keep: Option<Spanned<i64>>,
}

/// The raw keys subscribers and sinks share.
pub(crate) struct Common<'r> {
    pub(crate) from: &'r Spanned<Vec<Spanned<String>>>,
    pub(crate) format: &'r Option<Spanned<String>>,
    pub(crate) buffer_bytes: &'r Option<Spanned<i64>>,
    pub(crate) when_full: &'r Option<Spanned<WhenFull>>,
    pub(crate) matching: &'r Option<Spanned<String>>,
    pub(crate) exclude: &'r Option<Spanned<String>>,
}

/// `common()` for the output tables whose shared keys have the same names.
macro_rules! common_keys {
    ($($raw:ty),+) => {$(
        impl $raw {
            /// The keys every output has.
            pub(crate) fn common(&self) -> Common<'_> {
                Common {
                    from: &self.from,
                    format: &self.format,
                    buffer_bytes: &self.buffer_bytes,
                    when_full: &self.when_full,
                    matching: &self.matching,
                    exclude: &self.exclude,
                }
            }
        }
    )+};
}

common_keys!(RawSubscriber, RawSink);

/// `[forwards.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForward {
    pub(crate) url: Spanned<String>,
    pub(crate) from: Spanned<Vec<Spanned<String>>>,
    pub(crate) buffer_bytes: Option<Spanned<i64>>,
    pub(crate) when_full: Option<Spanned<WhenFull>>,
    #[serde(rename = "match")]
    pub(crate) matching: Option<Spanned<String>>,
    pub(crate) exclude: Option<Spanned<String>>,
    pub(crate) facility: Option<Spanned<String>>,
    pub(crate) severity: Option<Spanned<String>>,
    pub(crate) hostname: Option<Spanned<String>>,
    pub(crate) app_name: Option<Spanned<String>>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) cert_file: Option<Spanned<String>>,
    pub(crate) key_file: Option<Spanned<String>>,
    pub(crate) server_name: Option<Spanned<String>>,
    pub(crate) subject: Option<Spanned<String>>,
    pub(crate) credentials: Option<Spanned<String>>,
    pub(crate) tls: Option<Spanned<bool>>,
    pub(crate) window: Option<Spanned<i64>>,
}

/// Forwards have no `format`: what they send is fixed by their protocol.
static NO_FORMAT: Option<Spanned<String>> = None;

impl RawForward {
    /// The keys every output has.
    pub(crate) fn common(&self) -> Common<'_> {
        Common {
            from: &self.from,
            format: &NO_FORMAT,
            buffer_bytes: &self.buffer_bytes,
            when_full: &self.when_full,
            matching: &self.matching,
            exclude: &self.exclude,
        }
    }
}
