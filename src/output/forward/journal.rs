//! The journal side of a forward: one datagram per line to journald's
//! native socket (`/run/systemd/journal/socket`; tests may point
//! `FIFO_BROKER_JOURNAL_SOCKET` elsewhere), with `MESSAGE`, `PRIORITY`,
//! `SYSLOG_IDENTIFIER` and `FIFO_BROKER_INPUT`. Sends never block: a full
//! socket buffer waits for `WRITABLE`; a missing journal is retried with
//! backoff; an entry too large for one datagram is counted and dropped
//! (journald's memfd path is not implemented).

use std::io;
use std::path::PathBuf;

use mio::net::UnixDatagram;
use mio::{Interest, Token};
use rustix::io::Errno;

use super::split_record;
use crate::config::ForwardConfig;
use crate::forward::journal::{encode, INPUT, MESSAGE, PRIORITY, SYSLOG_IDENTIFIER};
use crate::output::Core;
use crate::stats::suppressed_note;
use crate::world::World;

const SOCKET: &str = "/run/systemd/journal/socket";

pub(super) struct Session {
    /// An unbound, non-blocking datagram socket.
    sock: UnixDatagram,
    /// journald's socket.
    path: PathBuf,
    /// `PRIORITY=` (the severity's code).
    priority: [u8; 1],
    /// `SYSLOG_IDENTIFIER=`, with `{input}` standing for the input.
    ident: String,
    /// One entry being encoded (reused).
    entry: Vec<u8>,
    /// The socket is registered for `WRITABLE`.
    watched: bool,
    /// The last send went through.
    up: bool,
}

impl Session {
    pub(super) fn new(config: &ForwardConfig) -> io::Result<Session> {
        let path = std::env::var_os("FIFO_BROKER_JOURNAL_SOCKET")
            .map_or_else(|| PathBuf::from(SOCKET), PathBuf::from);
        Ok(Session {
            sock: UnixDatagram::unbound()?,
            path,
            priority: [b'0' + config.severity.code()],
            ident: config.app_name.clone(),
            entry: Vec::new(),
            watched: false,
            up: true,
        })
    }

    pub(super) fn is_up(&self) -> bool {
        self.up
    }

    /// Sends queued records, one entry each. `Ok(true)`: the socket is full,
    /// wait for `WRITABLE`; `Err`: the journal cannot be reached.
    pub(super) fn send(&mut self, core: &mut Core, _world: &World) -> Result<bool, String> {
        let mut blocked = false;
        let mut failure = None;
        let mut too_large = 0u64;
        let (written, _) = core.outbox.flush(|records| {
            let Some(end) = memchr::memchr(b'\n', records) else {
                return Ok(0);
            };
            let (_, input, line) = split_record(&records[..=end]);
            let message = &line[..line.len().saturating_sub(1)];
            let ident = self.ident.replace("{input}", input);
            self.entry.clear();
            let fields: [(&str, &[u8]); 4] = [
                (MESSAGE, message),
                (PRIORITY, &self.priority),
                (SYSLOG_IDENTIFIER, ident.as_bytes()),
                (INPUT, input.as_bytes()),
            ];
            if let Err(e) = encode(&fields, &mut self.entry) {
                failure = Some(e);
                return Ok(0);
            }
            match self.sock.send_to(&self.entry, &self.path) {
                Ok(_) => Ok(end + 1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    Ok(0)
                }
                Err(e) if e.raw_os_error() == Some(Errno::MSGSIZE.raw_os_error()) => {
                    too_large += 1;
                    Ok(end + 1)
                }
                Err(e) => {
                    failure = Some(format!("send to {}: {e}", self.path.display()));
                    Ok(0)
                }
            }
        });
        core.stats.bytes_out += written as u64;
        if too_large > 0 {
            core.stats.errors += too_large;
            core.stats.discarded += too_large;
            core.stats.lines_out = core.stats.lines_out.saturating_sub(too_large);
            if let Some(held) = core.warning.allow() {
                log::warn!(
                    "forward {}: {too_large} lines too large for one journal datagram, \
                     dropped{}",
                    core.name,
                    suppressed_note(held)
                );
            }
        }
        self.up = failure.is_none();
        match failure {
            Some(reason) => Err(reason),
            None => Ok(blocked),
        }
    }

    /// Watches the socket for `WRITABLE` while a send waits for room.
    pub(super) fn watch(&mut self, interest: Option<Interest>, token: Token, world: &World) {
        let registry = world.registry();
        match (interest, self.watched) {
            (Some(interest), false) => {
                self.watched = registry.register(&mut self.sock, token, interest).is_ok();
            }
            (None, true) => {
                let _ = registry.deregister(&mut self.sock);
                self.watched = false;
            }
            _ => {}
        }
    }
}
