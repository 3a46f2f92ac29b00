//! Forwards (SPEC §7): outputs that send lines beyond the host, to a syslog
//! server, a NATS JetStream, or the local journal.
//!
//! The files here are the protocol pieces, independent of the event loop:
//! they parse configuration strings, encode into caller-provided `Vec<u8>`s
//! and parse server replies from caller-provided byte buffers. None of them
//! may do I/O, block, panic on any input, or allocate without a bound; the
//! loop owns sockets, timers and queues.
//!
//! - [`url`] — a forward's `url` into an [`url::Endpoint`].

pub mod url;

