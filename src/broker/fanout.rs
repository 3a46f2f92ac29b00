//! The fan-out: every output, the distinct formats, and routing one batch
//! of lines from an input to the outputs it feeds.
//!
//! Outputs live in a slab: their keys are stable across reloads (token
//! `2 * key + 1`), so a reload re-registers nothing that it keeps. Each
//! distinct format renders a batch once, into a reused buffer; `{line}`
//! outputs get the input's bytes as they are.

use std::time::{Instant, SystemTime};

use slab::Slab;

use crate::format::{timestamp, Format};
use crate::input::Batch;
use crate::output::Output;
use crate::world::World;

/// Every output and how lines reach it.
#[derive(Default)]
pub(super) struct FanOut {
    /// The outputs, by key.
    outputs: Slab<Output>,
    /// Keys of the outputs that retry on a timer, so per-turn checks do not
    /// walk every subscriber.
    timed: Vec<usize>,
    /// Distinct output formats; outputs refer to them by index.
    formats: Vec<Format>,
    /// Per format, the current batch rendered through it (reused buffers).
    rendered: Vec<Vec<u8>>,
}

impl FanOut {
    /// The outputs, by key.
    pub(super) fn outputs(&self) -> &Slab<Output> {
        &self.outputs
    }

    /// The outputs, by key, to change.
    pub(super) fn outputs_mut(&mut self) -> &mut Slab<Output> {
        &mut self.outputs
    }

    /// Replaces the format table; outputs must be reconfigured to match.
    pub(super) fn set_formats(&mut self, formats: Vec<Format>) {
        self.rendered = vec![Vec::new(); formats.len()];
        self.formats = formats;
    }

    /// Recomputes which outputs retry on a timer (after a reload).
    pub(super) fn index_timers(&mut self) {
        self.timed = self
            .outputs
            .iter()
            .filter(|(_, o)| o.kind().has_timer())
            .map(|(key, _)| key)
            .collect();
    }

    /// True if a `block` output among `routes` is full.
    pub(super) fn any_full(&self, routes: &[usize]) -> bool {
        routes.iter().any(|&o| self.outputs[o].is_full())
    }

    /// True if nothing is queued anywhere.
    pub(super) fn is_drained(&self) -> bool {
        self.outputs.iter().all(|(_, o)| o.is_drained())
    }

    /// Hands `batch` from input `input` to every output in `routes`,
    /// rendering each distinct format once.
    pub(super) fn route(&mut self, world: &World, input: &str, routes: &[usize], batch: &Batch) {
        if batch.count == 0 {
            return;
        }
        for buf in &mut self.rendered {
            buf.clear();
        }
        let mut time: Option<String> = None;
        for &o in routes {
            let output = &mut self.outputs[o];
            let format = &self.formats[output.format()];
            let data: &[u8] = if format.is_verbatim() {
                batch.lines
            } else {
                let buf = &mut self.rendered[output.format()];
                if buf.is_empty() {
                    let now = if format.uses_time() {
                        time.get_or_insert_with(|| timestamp(SystemTime::now()))
                            .as_str()
                    } else {
                        ""
                    };
                    format.render(batch.lines, input, now, buf);
                }
                buf
            };
            output.offer(data, batch.count, world);
        }
    }

    /// An output's fd is ready.
    pub(super) fn on_event(&mut self, key: usize, closed: bool, world: &World) {
        if let Some(output) = self.outputs.get_mut(key) {
            output.on_event(closed, world);
        }
    }

    /// The earliest retry any output waits for.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.timed
            .iter()
            .filter_map(|&o| self.outputs[o].retry_at())
            .min()
    }

    /// Retries the outputs whose retry is due.
    pub(super) fn retry_due(&mut self, now: Instant, world: &World) {
        for &o in &self.timed {
            let output = &mut self.outputs[o];
            if output.retry_at().is_some_and(|at| at <= now) {
                output.flush(world);
            }
        }
    }

    /// SIGHUP: every output reopens what it can (sink files).
    pub(super) fn reopen(&mut self) {
        for (_, output) in &mut self.outputs {
            output.reopen();
        }
    }
}
