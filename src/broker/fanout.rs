//! The fan-out: every output, the lanes lines take to them, and routing one
//! batch of lines from an input to the outputs it feeds.
//!
//! Outputs live in a slab: their keys are stable across reloads (token
//! `2 * key + 1`), so a reload re-registers nothing that it keeps. A *lane*
//! is a distinct pair of filter and format: per batch, each filter selects
//! its lines once ([`Selection`]) and each lane renders once, into a reused
//! buffer; `{line}` outputs without a filter get the input's bytes as they
//! are and pay nothing for the filters of others.

use std::time::{Instant, SystemTime};

use slab::Slab;

use crate::filter::{Filter, Selection};
use crate::format::{timestamp, Context, Format};
use crate::input::{Batch, TeeSource};
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
    /// Filters, formats and the current batch through each lane.
    lanes: Lanes,
    /// Some subscriber owes the rest of a line (a reload took it off the
    /// zero-copy path in the middle of one): batches are checked for it.
    owing: bool,
}

/// The distinct (filter, format) pairs outputs use.
#[derive(Default)]
struct Lanes {
    /// Distinct formats.
    formats: Vec<Format>,
    /// Per lane: its filter in `selection` (none: every line) and format.
    lanes: Vec<(Option<usize>, usize)>,
    /// Per lane: the current batch rendered (reused buffers), if it is.
    rendered: Vec<Option<Vec<u8>>>,
    /// Spare buffers for `rendered`.
    spare: Vec<Vec<u8>>,
    /// The filters and what they select from the current batch.
    selection: Selection,
    /// `{host}`: the host's name, read at startup and on reload.
    host: String,
}

impl Lanes {
    /// A new batch: nothing selected or rendered yet.
    fn begin(&mut self) {
        self.selection.begin();
        for slot in &mut self.rendered {
            if let Some(mut buf) = slot.take() {
                buf.clear();
                self.spare.push(buf);
            }
        }
    }

    /// What lane `lane` delivers of `batch`, and how many lines that is.
    fn data<'a>(
        &'a mut self,
        lane: usize,
        batch: &'a Batch,
        input: &str,
        time: &mut Option<String>,
    ) -> (&'a [u8], u64) {
        let (spec, format) = self.lanes[lane];
        let (lines, count) = match spec {
            Some(spec) => self.selection.select(spec, batch.lines),
            None => (batch.lines, batch.count),
        };
        let format = &self.formats[format];
        if format.is_verbatim() || count == 0 {
            return (lines, count);
        }
        let slot = &mut self.rendered[lane];
        if slot.is_none() {
            let mut buf = self.spare.pop().unwrap_or_default();
            let time = match format.uses_time() {
                true => time.get_or_insert_with(|| timestamp(SystemTime::now())),
                false => "",
            };
            let cx = Context {
                input,
                time,
                host: &self.host,
            };
            format.render(lines, cx, &mut buf);
            *slot = Some(buf);
        }
        (slot.as_deref().unwrap_or_default(), count)
    }
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

    /// Empties the lane tables before every output's lane is looked up
    /// again (on reload), and reads the host's name again.
    pub(super) fn reset_lanes(&mut self) {
        let spare = std::mem::take(&mut self.lanes.spare);
        self.lanes = Lanes {
            spare,
            host: crate::format::host_name(),
            ..Lanes::default()
        };
    }

    /// The lane for `format` and `filter`, made if new.
    pub(super) fn lane(&mut self, format: &Format, filter: &Filter) -> usize {
        let lanes = &mut self.lanes;
        let format = match lanes.formats.iter().position(|f| f == format) {
            Some(f) => f,
            None => {
                lanes.formats.push(format.clone());
                lanes.formats.len() - 1
            }
        };
        let lane = (lanes.selection.add(filter), format);
        match lanes.lanes.iter().position(|l| *l == lane) {
            Some(i) => i,
            None => {
                lanes.lanes.push(lane);
                lanes.rendered.push(None);
                lanes.lanes.len() - 1
            }
        }
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

    /// True if no output among `routes` has anything queued.
    pub(super) fn all_drained(&self, routes: &[usize]) -> bool {
        routes.iter().all(|&o| self.outputs[o].is_drained())
    }

    /// The end of a stop that ran out of time: no `block` output holds its
    /// inputs back any more.
    pub(super) fn give_up_blocking(&mut self) {
        for (_, output) in &mut self.outputs {
            output.give_up_blocking();
        }
    }

    /// True if nothing is queued anywhere.
    pub(super) fn is_drained(&self) -> bool {
        self.outputs.iter().all(|(_, o)| o.is_drained())
    }

    /// Hands `batch` from input `input` to every output in `routes`, each
    /// filter and rendering done once per lane.
    pub(super) fn route(&mut self, world: &World, input: &str, routes: &[usize], batch: &Batch) {
        if batch.count == 0 {
            // Only the start of a line: mirrors that teed it keep it as
            // `Ahead`; what their tee told about a full pipe is stale now.
            for &o in routes {
                self.outputs[o].forget_tee();
            }
            return;
        }
        if self.owing {
            self.route_owed(world, input, routes, batch);
            return;
        }
        for &o in routes {
            if self.outputs[o].is_mirror() {
                self.outputs[o].deliver(batch, world);
            }
        }
        self.route_copies(world, input, routes, batch, |_, output| output.is_mirror());
    }

    /// [`FanOut::route`] while a subscriber owes the rest of a line: if this
    /// batch has it, the subscriber gets it from the batch's first line and
    /// the others get that line and then the rest (mirrors the whole batch,
    /// as always); a `block` queue that filled meanwhile stops waiting.
    fn route_owed(&mut self, world: &World, input: &str, routes: &[usize], batch: &Batch) {
        let mirrors: Vec<usize> = (routes.iter().copied())
            .filter(|&o| self.outputs[o].is_mirror())
            .collect();
        let owing: Vec<usize> = (routes.iter().copied())
            .filter(|&o| self.outputs[o].owes(batch.pipe))
            .collect();
        for &o in &mirrors {
            self.outputs[o].deliver(batch, world);
        }
        if owing.is_empty() {
            self.route_copies(world, input, routes, batch, |o, _| mirrors.contains(&o));
        } else {
            let end = memchr::memchr(b'\n', batch.lines).map_or(batch.lines.len(), |i| i + 1);
            let (first, rest) = batch.lines.split_at(end);
            for &o in &owing {
                self.outputs[o].settle(first, world);
            }
            let part = |lines, count| Batch {
                lines,
                count,
                pipe: batch.pipe,
                tail: &[],
                streaming: false,
                truncated: batch.truncated,
            };
            let skip: Vec<usize> = mirrors.iter().chain(&owing).copied().collect();
            self.route_copies(world, input, routes, &part(first, 1), |o, _| {
                skip.contains(&o)
            });
            let rest = Batch {
                tail: batch.tail,
                streaming: batch.streaming,
                ..part(rest, batch.count - 1)
            };
            self.route_copies(world, input, routes, &rest, |o, _| mirrors.contains(&o));
        }
        for (_, output) in &mut self.outputs {
            output.give_up_if_full(world);
        }
        self.owing = self.outputs.iter().any(|(_, o)| o.owes_any());
    }

    /// Hands `batch` through its lane to every output in `routes` for which
    /// `skip(key, output)` is false (mirrors are handed batches apart).
    fn route_copies(
        &mut self,
        world: &World,
        input: &str,
        routes: &[usize],
        batch: &Batch,
        skip: impl Fn(usize, &Output) -> bool,
    ) {
        if batch.count == 0 {
            return;
        }
        self.lanes.begin();
        let mut time: Option<String> = None;
        for &o in routes {
            let output = &mut self.outputs[o];
            if skip(o, output) {
                continue;
            }
            let (data, count) = self.lanes.data(output.lane(), batch, input, &mut time);
            if count < batch.count {
                output.count_filtered(batch.count - count);
            }
            if count > 0 {
                output.offer(data, count, world);
            }
        }
    }

    /// Zero-copy: the mirrors among `routes` take what they can of the
    /// input pipe `src` before it is read. Returns the most any took.
    pub(super) fn tee(&mut self, routes: &[usize], src: TeeSource) -> usize {
        let mut most = 0;
        for &o in routes {
            most = most.max(self.outputs[o].tee(src));
        }
        most
    }

    /// Makes exactly the subscribers that take one input's lines as they
    /// are mirrors: format `{line}`, no filter, and `feeds(key)` (fed by one
    /// input only).
    pub(super) fn index_mirrors(
        &mut self,
        world: &World,
        feeds: impl Fn(usize) -> usize,
        fed_by: impl Fn(usize, u64) -> bool,
    ) {
        for (key, output) in &mut self.outputs {
            let (filter, format) = self.lanes.lanes[output.lane()];
            let verbatim = filter.is_none() && self.lanes.formats[format].is_verbatim();
            output.set_mirror(verbatim && feeds(key) == 1, |pipe| fed_by(key, pipe), world);
        }
        self.owing = self.outputs.iter().any(|(_, o)| o.owes_any());
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

    /// Retries the outputs whose retry is due; true if any was (activity,
    /// like an event).
    pub(super) fn retry_due(&mut self, now: Instant, world: &World) -> bool {
        let mut any = false;
        for &o in &self.timed {
            let output = &mut self.outputs[o];
            if output.retry_at().is_some_and(|at| at <= now) {
                output.flush(world);
                any = true;
            }
        }
        any
    }

    /// SIGHUP: every output reopens what it can (sink files).
    pub(super) fn reopen(&mut self) {
        for (_, output) in &mut self.outputs {
            output.reopen();
        }
    }
}
