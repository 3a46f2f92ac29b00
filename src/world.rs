//! The loop's resources that every part of the data path uses: the poller,
//! the locked FIFO directory and the pipe capacity in force.
//!
//! Held once by the broker and lent (`&World`) to inputs and outputs, so no
//! part of the loop has to borrow the broker's fields one by one. It owns no
//! policy and makes no decision.

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
}

impl World {
    /// Where fds are registered.
    pub(crate) fn registry(&self) -> &Registry {
        self.poll.registry()
    }
}
