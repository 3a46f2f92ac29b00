//! `fifo-broker status --prometheus`: the snapshot in the Prometheus text
//! exposition format (version 0.0.4), each family with `# HELP` and
//! `# TYPE`, counters named `_total`, every series labelled with the
//! `kind` (`input`, `subscriber`, `sink`, ...) and `name` it is about.
//! The same text suits node_exporter's textfile collector.

use std::fmt::Write;

use super::{InputRow, OutputRow, Snapshot};

/// One metric family being written: its series follow its header.
struct Family<'a> {
    /// The exposition being written.
    out: &'a mut String,
    /// The family's metric name.
    name: &'static str,
}

impl Family<'_> {
    fn new<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// The family's one series, without labels.
    fn single(self, value: u64) {
        let _ = writeln!(self.out, "{} {value}", self.name);
    }

    /// One series; `labels` are name/value pairs, values escaped.
    fn series(&mut self, labels: &[(&str, &str)], value: u64) {
        let labels: Vec<String> = (labels.iter())
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(self.out, "{}{{{}}} {value}", self.name, labels.join(","));
    }
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition, ending with a newline.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut f = Family::new(
        &mut out,
        "fifo_broker_info",
        "gauge",
        "Always 1; the labels say which daemon answered.",
    );
    let pid = s.pid.to_string();
    f.series(
        &[
            ("version", &s.version),
            ("pid", &pid),
            ("config", &s.config),
        ],
        1,
    );
    Family::new(
        &mut out,
        "fifo_broker_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    )
    .single(s.uptime_s);
    inputs_and_outputs(&mut out, s);
    Family::new(
        &mut out,
        "fifo_broker_control_requests_total",
        "counter",
        "Control socket requests answered.",
    )
    .single(s.control.served);
    Family::new(
        &mut out,
        "fifo_broker_control_clients_dropped_total",
        "counter",
        "Control socket clients dropped (bad or oversized request, too slow, error).",
    )
    .single(s.control.dropped);
    Family::new(
        &mut out,
        "fifo_broker_control_clients_refused_total",
        "counter",
        "Control socket connections refused because too many clients were connected.",
    )
    .single(s.control.refused);
    out
}

/// Help of the two families with a `direction`.
const LINES_HELP: &str =
    "Lines read from an input (direction=\"in\") or delivered by an output (direction=\"out\").";
const BYTES_HELP: &str =
    "Bytes read from an input (direction=\"in\") or written by an output (direction=\"out\").";

type InField = fn(&InputRow) -> u64;
type OutField = fn(&OutputRow) -> u64;

/// The families with a series per input and per output.
fn inputs_and_outputs(out: &mut String, s: &Snapshot) {
    let both: [(&'static str, &str, InField, OutField); 2] = [
        (
            "fifo_broker_lines_total",
            LINES_HELP,
            |i| i.lines_in,
            |o| o.lines_out,
        ),
        (
            "fifo_broker_bytes_total",
            BYTES_HELP,
            |i| i.bytes_in,
            |o| o.bytes_out,
        ),
    ];
    for (name, help, input, output) in both {
        let mut f = Family::new(out, name, "counter", help);
        for i in &s.inputs {
            let labels = [("direction", "in"), ("kind", "input"), ("name", &i.name)];
            f.series(&labels, input(i));
        }
        for o in &s.outputs {
            let labels = [("direction", "out"), ("kind", &o.kind), ("name", &o.name)];
            f.series(&labels, output(o));
        }
    }
    let help = "Lines cut to max_line_bytes.";
    let mut f = Family::new(out, "fifo_broker_truncated_lines_total", "counter", help);
    for i in &s.inputs {
        f.series(&[("kind", "input"), ("name", &i.name)], i.truncated);
    }
    let help = "Read, write, open and rotation errors.";
    let mut f = Family::new(out, "fifo_broker_errors_total", "counter", help);
    for i in &s.inputs {
        f.series(&[("kind", "input"), ("name", &i.name)], i.errors);
    }
    for o in &s.outputs {
        f.series(&[("kind", &o.kind), ("name", &o.name)], o.errors);
    }
    outputs_only(out, s);
}

/// The families with a series per output only.
fn outputs_only(out: &mut String, s: &Snapshot) {
    let families: [(&'static str, &str, &str, OutField); 6] = [
        (
            "fifo_broker_dropped_lines_total",
            "counter",
            "Lines dropped by when_full.",
            |o| o.dropped,
        ),
        (
            "fifo_broker_discarded_lines_total",
            "counter",
            "Lines lost because no reader was attached or the reader left.",
            |o| o.discarded,
        ),
        (
            "fifo_broker_filtered_lines_total",
            "counter",
            "Lines kept out by match/exclude.",
            |o| o.filtered,
        ),
        (
            "fifo_broker_queue_bytes",
            "gauge",
            "Bytes queued beyond the kernel.",
            |o| o.queue_bytes,
        ),
        (
            "fifo_broker_queue_lines",
            "gauge",
            "Lines accepted and not delivered yet (queued, or awaiting a NATS PubAck).",
            |o| o.queue_lines,
        ),
        (
            "fifo_broker_buffer_bytes",
            "gauge",
            "Queue capacity (buffer_bytes).",
            |o| o.buffer_bytes,
        ),
    ];
    for (name, kind, help, field) in families {
        let mut f = Family::new(out, name, kind, help);
        for o in &s.outputs {
            f.series(&[("kind", &o.kind), ("name", &o.name)], field(o));
        }
    }
    let help = "1 for the state each output is in (attached, no reader, ok, retrying, connected, disconnected, full).";
    let mut f = Family::new(out, "fifo_broker_output_state", "gauge", help);
    for o in &s.outputs {
        let labels = [("kind", &*o.kind), ("name", &o.name), ("state", &o.state)];
        f.series(&labels, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ControlRow;

    #[test]
    fn every_family_has_help_and_type_and_labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let snapshot = Snapshot {
            pid: 7,
            version: "0.1.0".into(),
            uptime_s: 3,
            config: "/etc/x \"y\".toml".into(),
            dir: "/run/x".into(),
            inputs: vec![InputRow {
                name: "alerts".into(),
                lines_in: 42,
                bytes_in: 420,
                truncated: 1,
                errors: 0,
            }],
            outputs: Vec::new(),
            control: ControlRow::default(),
        };
        let text = render(&snapshot);
        assert!(text.contains(
            "fifo_broker_lines_total{direction=\"in\",kind=\"input\",name=\"alerts\"} 42\n"
        ));
        assert!(text.contains("config=\"/etc/x \\\"y\\\".toml\""), "{text}");
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            let counter = line.ends_with(" counter");
            assert_eq!(counter, name.ends_with("_total"), "{line}");
        }
    }
}
