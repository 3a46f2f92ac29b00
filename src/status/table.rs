//! `fifo-broker status` as a table for people: a header with pid, uptime
//! and config, then one row per input and output with aligned columns;
//! with [`Rates`] (`--watch`), lines per second in and out as well.

use std::collections::HashMap;
use std::fmt::Write;

use super::{human_bytes, human_duration, Snapshot};

/// Lines per second, by `(kind, name)` (`kind` is `input` for inputs).
pub(crate) type Rates = HashMap<(String, String), f64>;

/// Column titles, and whether each is text (left-aligned).
const COLUMNS: [(&str, bool); 11] = [
    ("NAME", true),
    ("KIND", true),
    ("STATE", true),
    ("IN", false),
    ("OUT", false),
    ("DROPPED", false),
    ("DISCARDED", false),
    ("FILTERED", false),
    ("TRUNCATED", false),
    ("ERRORS", false),
    ("QUEUE", true),
];
/// The rate columns `--watch` adds after OUT.
const RATE_COLUMNS: [&str; 2] = ["IN/s", "OUT/s"];

/// The header line: who answered.
pub(crate) fn header(snapshot: &Snapshot) -> String {
    format!(
        "fifo-broker {} pid {}, up {}, config {}, dir {}",
        snapshot.version,
        snapshot.pid,
        human_duration(snapshot.uptime_s),
        snapshot.config,
        snapshot.dir
    )
}

/// The table, ending with a newline; with `rates`, two rate columns.
pub(crate) fn render(snapshot: &Snapshot, rates: Option<&Rates>) -> String {
    let mut out = header(snapshot);
    out.push('\n');
    let mut rows = rows(snapshot);
    let mut text: Vec<bool> = COLUMNS.iter().map(|(_, t)| *t).collect();
    if let Some(rates) = rates {
        let keys = (snapshot
            .inputs
            .iter()
            .map(|i| ("input".to_string(), i.name.clone())))
        .chain((snapshot.outputs.iter()).map(|o| (o.kind.clone(), o.name.clone())));
        let rate = |key| {
            rates
                .get(&key)
                .map_or("-".to_string(), |r| format!("{r:.1}"))
        };
        rows[0].splice(5..5, RATE_COLUMNS.map(String::from));
        for (row, key) in rows[1..].iter_mut().zip(keys) {
            let is_input = key.0 == "input";
            let r = rate(key);
            let (rin, rout) = if is_input {
                (r, "-".into())
            } else {
                ("-".into(), r)
            };
            row.splice(5..5, [rin, rout]);
        }
        text.splice(5..5, [false, false]);
    }
    let mut widths = vec![0usize; text.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            let sep = if c > 0 { "  " } else { "" };
            let _ = if text[c] {
                write!(line, "{sep}{cell:<w$}")
            } else {
                write!(line, "{sep}{cell:>w$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The title row, then one row per input and output.
fn rows(snapshot: &Snapshot) -> Vec<Vec<String>> {
    let dash = || "-".to_string();
    let mut rows = vec![COLUMNS.iter().map(|(t, _)| t.to_string()).collect()];
    for i in &snapshot.inputs {
        rows.push(vec![
            i.name.clone(),
            "input".into(),
            dash(),
            i.lines_in.to_string(),
            dash(),
            dash(),
            dash(),
            dash(),
            i.truncated.to_string(),
            i.errors.to_string(),
            dash(),
        ]);
    }
    for o in &snapshot.outputs {
        rows.push(vec![
            o.name.clone(),
            o.kind.clone(),
            o.state.clone(),
            dash(),
            o.lines_out.to_string(),
            o.dropped.to_string(),
            o.discarded.to_string(),
            o.filtered.to_string(),
            dash(),
            o.errors.to_string(),
            format!(
                "{} / {}",
                human_bytes(o.queue_bytes),
                human_bytes(o.buffer_bytes)
            ),
        ]);
    }
    rows
}

/// Lines per second of each input and output between two snapshots taken
/// `secs` apart (a counter that went down, after a restart, gives none).
pub(crate) fn rates(before: &Snapshot, after: &Snapshot, secs: f64) -> Rates {
    let mut rates = Rates::new();
    if secs <= 0.0 || before.pid != after.pid {
        return rates;
    }
    let old_in: HashMap<&str, u64> = (before.inputs.iter())
        .map(|i| (i.name.as_str(), i.lines_in))
        .collect();
    for i in &after.inputs {
        if let Some(old) = old_in.get(i.name.as_str()).filter(|&&o| o <= i.lines_in) {
            let rate = (i.lines_in - old) as f64 / secs;
            rates.insert(("input".into(), i.name.clone()), rate);
        }
    }
    let old_out: HashMap<(&str, &str), u64> = (before.outputs.iter())
        .map(|o| ((o.kind.as_str(), o.name.as_str()), o.lines_out))
        .collect();
    for o in &after.outputs {
        let key = (o.kind.as_str(), o.name.as_str());
        if let Some(old) = old_out.get(&key).filter(|&&old| old <= o.lines_out) {
            let rate = (o.lines_out - old) as f64 / secs;
            rates.insert((o.kind.clone(), o.name.clone()), rate);
        }
    }
    rates
}
