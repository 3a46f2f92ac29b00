//! What the control socket answers: the running state as a
//! [`Snapshot`], inputs by name, outputs by kind then name, serialized to
//! JSON. Read-only: building it changes nothing in the loop.

use std::collections::BTreeMap;

use super::Broker;
use crate::status::{InputRow, OutputRow, Snapshot};

impl Broker {
    /// The counters and state of every input and output, now.
    pub(super) fn snapshot(&self) -> Snapshot {
        // One row per name: an input removed by a reload and added back
        // may still be draining its old pipe beside the new one.
        let mut by_name: BTreeMap<&str, InputRow> = BTreeMap::new();
        for (_, input) in &self.inputs {
            let s = input.stats();
            let row = by_name.entry(input.name()).or_insert_with(|| InputRow {
                name: input.name().to_string(),
                lines_in: 0,
                bytes_in: 0,
                truncated: 0,
                errors: 0,
            });
            row.lines_in += s.lines_in;
            row.bytes_in += s.bytes_in;
            row.truncated += s.truncated;
            row.errors += s.errors;
        }
        let inputs: Vec<InputRow> = by_name.into_values().collect();
        let mut outputs: Vec<OutputRow> = (self.fanout.outputs().iter())
            .map(|(_, output)| {
                let (s, queue_lines) = output.stats_and_queue();
                let state = if output.is_full() {
                    "full".to_string()
                } else {
                    output.state().to_string()
                };
                OutputRow {
                    name: output.name().to_string(),
                    kind: output.kind().to_string(),
                    state,
                    lines_out: s.lines_out,
                    bytes_out: s.bytes_out,
                    dropped: s.dropped,
                    discarded: s.discarded,
                    filtered: s.filtered,
                    errors: s.errors,
                    queue_bytes: output.queue_bytes() as u64,
                    queue_lines,
                    buffer_bytes: output.buffer_bytes() as u64,
                }
            })
            .collect();
        outputs.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Snapshot {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            config: std::path::absolute(&self.config.file)
                .unwrap_or_else(|_| self.config.file.clone())
                .display()
                .to_string(),
            dir: self.world.dir.path().display().to_string(),
            inputs,
            outputs,
            control: self
                .control
                .as_ref()
                .map(|c| c.stats().clone())
                .unwrap_or_default(),
        }
    }

    /// The snapshot as one JSON document.
    pub(super) fn snapshot_json(&self) -> Vec<u8> {
        // Plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_vec(&self.snapshot()).unwrap_or_else(|e| {
            log::error!("cannot serialize the status snapshot: {e}");
            b"{}".to_vec()
        })
    }
}
