//! `fifo-broker status` as a table for people: a header with pid, uptime
//! and config, then one row per input and output with aligned columns.

use std::fmt::Write;

use super::{human_bytes, human_duration, Snapshot};

/// Column titles; numbers are right-aligned, text left-aligned.
const TITLES: [&str; 11] = [
    "NAME",
    "KIND",
    "STATE",
    "IN",
    "OUT",
    "DROPPED",
    "DISCARDED",
    "FILTERED",
    "TRUNCATED",
    "ERRORS",
    "QUEUE",
];
/// Columns 0..TEXT_COLUMNS are text.
const TEXT_COLUMNS: usize = 3;

/// The table, ending with a newline.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fifo-broker {} pid {}, up {}, config {}, dir {}",
        snapshot.version,
        snapshot.pid,
        human_duration(snapshot.uptime_s),
        snapshot.config,
        snapshot.dir
    );
    let dash = || "-".to_string();
    let mut rows: Vec<[String; 11]> = vec![TITLES.map(String::from)];
    for i in &snapshot.inputs {
        rows.push([
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
        rows.push([
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
    let mut widths = [0usize; 11];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (c, (cell, w)) in row.iter().zip(widths).enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            if c < TEXT_COLUMNS || c == TITLES.len() - 1 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "{cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
