//! Which inputs the loop must come back to without an event: *busy* ones
//! that used their reads for a turn and may have more (the poller is
//! edge-triggered, so no new event would come), and *stalled* ones held back
//! by a full `block` output.
//!
//! This is the one place that knows; an input is on at most one list, at
//! most once.

/// Where an input stands with the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Wait {
    /// Read on events only.
    #[default]
    Idle,
    /// Read again at the end of this turn, and do not sleep.
    Busy,
    /// Read again once a full output may have drained.
    Stalled,
}

/// The lists of inputs to come back to.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    /// Per input key.
    state: Vec<Wait>,
    /// Keys of busy inputs.
    busy: Vec<usize>,
    /// Keys of stalled inputs.
    stalled: Vec<usize>,
}

impl Schedule {
    fn set(&mut self, key: usize, wait: Wait) -> bool {
        if self.state.len() <= key {
            self.state.resize(key + 1, Wait::Idle);
        }
        if self.state[key] != Wait::Idle {
            return false;
        }
        self.state[key] = wait;
        true
    }

    /// Input `key` has more to read than one turn allows.
    pub(super) fn busy(&mut self, key: usize) {
        if self.set(key, Wait::Busy) {
            self.busy.push(key);
        }
    }

    /// Input `key` waits for a full output.
    pub(super) fn stall(&mut self, key: usize) {
        if self.set(key, Wait::Stalled) {
            self.stalled.push(key);
        }
    }

    /// True if input `key` waits for a full output (an event for it changes
    /// nothing).
    pub(super) fn is_stalled(&self, key: usize) -> bool {
        self.state.get(key) == Some(&Wait::Stalled)
    }

    /// True if input `key` will be read at the end of this turn anyway.
    pub(super) fn is_busy(&self, key: usize) -> bool {
        self.state.get(key) == Some(&Wait::Busy)
    }

    /// True if the loop must not sleep.
    pub(super) fn has_busy(&self) -> bool {
        !self.busy.is_empty()
    }

    /// True if no input waits to be read.
    pub(super) fn is_empty(&self) -> bool {
        self.busy.is_empty() && self.stalled.is_empty()
    }

    /// Takes every listed input, busy ones first, leaving them idle.
    pub(super) fn take(&mut self) -> Vec<usize> {
        let mut keys = std::mem::take(&mut self.busy);
        keys.append(&mut self.stalled);
        for &key in &keys {
            self.state[key] = Wait::Idle;
        }
        keys
    }
}
