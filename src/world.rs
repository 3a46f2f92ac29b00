//! The loop's resources that every part of the data path uses: the poller,
//! the locked FIFO directory and the pipe capacity in force.
//!
//! Held once by the broker and lent (`&World`) to inputs and outputs, so no
//! part of the loop has to borrow the broker's fields one by one. It owns no
//! policy and makes no decision.

use std::cell::Cell;
use std::os::fd::AsFd;
use std::rc::Rc;

use mio::{Poll, Registry};

use crate::fifodir::FifoDir;

/// What inputs and outputs need from the loop to open, watch and close fds.
pub(crate) struct World {
    /// The poller every fd is registered with.
    pub(crate) poll: Poll,
    /// The FIFO directory, locked.
    pub(crate) dir: FifoDir,
    /// Kernel pipe capacity to ask for on every FIFO, if configured.
    pub(crate) pipe_bytes: Option<usize>,
    /// How far pipes may grow when `pipe_bytes` is not configured.
    pub(crate) pipes: Rc<PipeBudget>,
}

/// Adaptive pipe capacity: a pipe that fills (a subscriber whose reader lags
/// a little, an input whose writer is faster than one read) is doubled with
/// `F_SETPIPE_SZ`, up to `/proc/sys/fs/pipe-max-size`, within a budget of a
/// quarter of the user's `pipe-user-pages-soft` (at most 16 MiB), so
/// thousands of other FIFOs keep their full default size. Pipes never
/// shrink; a subscriber gives its growth back when its reader leaves.
#[derive(Debug)]
pub(crate) struct PipeBudget {
    /// Largest size a pipe grows to.
    max: usize,
    /// Bytes of growth still allowed.
    left: Cell<usize>,
    /// False when `pipe_bytes` is configured: sizes are the admin's.
    adaptive: bool,
}

/// The most any set of pipes grows in total.
const MAX_BUDGET: usize = 16 << 20;

impl PipeBudget {
    /// The budget for this system, adaptive unless `pipe_bytes` is set.
    pub(crate) fn new(pipe_bytes: Option<usize>) -> PipeBudget {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
        };
        let max = read("/proc/sys/fs/pipe-max-size").unwrap_or(1 << 20);
        let soft = read("/proc/sys/fs/pipe-user-pages-soft").unwrap_or(16384);
        let budget = soft.saturating_mul(4096) / 4;
        PipeBudget {
            max,
            left: Cell::new(budget.min(MAX_BUDGET)),
            adaptive: pipe_bytes.is_none(),
        }
    }

    /// Doubles the pipe of `fd` from `*size` if the budget allows; true if
    /// it grew (`*size` is then the new size).
    pub(crate) fn grow(&self, fd: impl AsFd, size: &mut usize) -> bool {
        let want = size.saturating_mul(2).min(self.max);
        let more = want.saturating_sub(*size);
        if !self.adaptive || more == 0 || more > self.left.get() {
            return false;
        }
        match rustix::pipe::fcntl_setpipe_size(&fd, want) {
            Ok(got) if got > *size => {
                self.left
                    .set(self.left.get() - (got - *size).min(self.left.get()));
                *size = got;
                true
            }
            _ => false,
        }
    }

    /// Gives back what a pipe grew beyond `base` (its reader left).
    pub(crate) fn give_back(&self, grown: usize) {
        self.left.set(self.left.get() + grown);
    }

    /// The size of the pipe behind `fd` (0 if it cannot be read).
    pub(crate) fn size_of(fd: impl AsFd) -> usize {
        rustix::pipe::fcntl_getpipe_size(&fd).unwrap_or(0)
    }

    /// The largest size a pipe may reach.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

impl World {
    /// Where fds are registered.
    pub(crate) fn registry(&self) -> &Registry {
        self.poll.registry()
    }
}
