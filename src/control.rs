//! The control socket `<dir>/.control`: a Unix stream socket (mode 0600)
//! on which `fifo-broker status` asks for a [`Snapshot`](crate::status::Snapshot).
//!
//! A client sends one line (`status\n`); the daemon answers with one JSON
//! document and closes. The socket is served by the event loop, so this
//! module must never block and never let a client hold the loop: every fd
//! is non-blocking, a request longer than [`MAX_REQUEST`] or a client still
//! connected [`CLIENT_TIMEOUT`] after it came is dropped (counted, logged
//! rate-limited), at most [`MAX_CLIENTS`] are served at once (more are
//! refused). While no client is connected there is no timer: an idle
//! socket costs nothing.
//!
//! The socket is created after the directory's lock is taken (so only the
//! owner of the directory replaces a stale one), and removed at stop only if
//! it is still the inode this process bound.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;
use slab::Slab;

use crate::error::{Error, Result};
use crate::fifodir::FifoDir;
use crate::stats::{suppressed_note, RateLimit};
use crate::status::ControlRow;

/// The socket's file name in the FIFO directory (no config name can start
/// with a dot, so it never collides with a FIFO).
pub(crate) const SOCKET_NAME: &str = ".control";
/// Longest request line accepted, newline included.
const MAX_REQUEST: usize = 4096;
/// Clients served at once; more are accepted and closed at once.
pub(crate) const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Token of the listening socket.
pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
/// Client slot `s` is `Token(CLIENT_BASE - s)`: the tokens just below the
/// listener's, far above any input's or output's (`2k`, `2k + 1`).
const CLIENT_BASE: usize = usize::MAX - 2;

/// True if `token` is the listener's or a client's.
pub(crate) fn owns(token: Token) -> bool {
    token.0 > CLIENT_BASE - MAX_CLIENTS && token.0 < usize::MAX
}

/// What the loop must do after a client event.
pub(crate) enum Wants {
    /// Nothing more.
    Nothing,
    /// A snapshot for the client in this slot (then [`Control::answer`]).
    Snapshot(usize),
}

/// One connected client.
struct Client {
    /// The connection.
    stream: UnixStream,
    /// The request so far (until its newline).
    request: Vec<u8>,
    /// The answer, once there is one.
    reply: Vec<u8>,
    /// How much of `reply` was written.
    written: usize,
    /// When it is dropped if it is still there.
    deadline: Instant,
}

/// The listening socket and its clients.
pub(crate) struct Control {
    /// The listener, registered as [`LISTENER`].
    listener: UnixListener,
    /// `<dir>/.control`, for messages.
    path: PathBuf,
    /// Device and inode of the socket this process bound.
    id: (u64, u64),
    /// Connected clients, by slot.
    clients: Slab<Client>,
    /// What was served, dropped and refused.
    stats: ControlRow,
    /// Limits messages about dropped clients.
    warning: RateLimit,
}

impl Control {
    /// Binds `<dir>/.control` (replacing a stale socket there, refusing
    /// anything else) with mode 0600 and registers it.
    pub(crate) fn open(dir: &FifoDir, registry: &Registry) -> Result<Control> {
        let path = dir.join(SOCKET_NAME);
        remove_stale(dir, &path)?;
        // Owner-only from the first instant: bind creates the socket with
        // 0777 & ~umask, and the daemon's umask is otherwise 0.
        let old = rustix::process::umask(Mode::from_raw_mode(0o177));
        let bound = UnixListener::bind(bind_path(dir.as_fd(), &path));
        rustix::process::umask(old);
        let mut listener = bound.map_err(|e| Error::path(&path, e))?;
        let stat = rustix::fs::statat(dir.as_fd(), SOCKET_NAME, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::path(&path, e))?;
        if let Err(e) = registry.register(&mut listener, LISTENER, Interest::READABLE) {
            let _ = rustix::fs::unlinkat(dir.as_fd(), SOCKET_NAME, AtFlags::empty());
            return Err(Error::path(&path, e));
        }
        Ok(Control {
            listener,
            path,
            id: (stat.st_dev, stat.st_ino),
            clients: Slab::with_capacity(MAX_CLIENTS),
            stats: ControlRow::default(),
            warning: RateLimit::default(),
        })
    }

    /// False if `<dir>/.control` is no longer the socket this process
    /// bound (deleted or replaced behind the daemon's back).
    pub(crate) fn is_intact(&self, dir: &FifoDir) -> bool {
        rustix::fs::statat(dir.as_fd(), SOCKET_NAME, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| (st.st_dev, st.st_ino) == self.id)
    }

    /// Its counters, for the snapshot.
    pub(crate) fn stats(&self) -> &ControlRow {
        &self.stats
    }

    /// When the oldest client must be gone; `None` while nobody is
    /// connected (no timer while idle).
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.clients.iter().map(|(_, c)| c.deadline).min()
    }

    /// Handles an event on the listener or a client.
    pub(crate) fn on_event(&mut self, token: Token, registry: &Registry) -> Wants {
        if token == LISTENER {
            self.accept(registry);
            return Wants::Nothing;
        }
        let slot = CLIENT_BASE - token.0;
        let Some(client) = self.clients.get_mut(slot) else {
            return Wants::Nothing;
        };
        if !client.reply.is_empty() {
            self.write(slot, registry);
            return Wants::Nothing;
        }
        match read_request(client) {
            Ok(Some(line)) if line == b"status" => Wants::Snapshot(slot),
            Ok(Some(line)) => {
                let line = String::from_utf8_lossy(&line).into_owned();
                self.drop_client(slot, registry, &format!("unknown request {line:?}"));
                Wants::Nothing
            }
            Ok(None) => Wants::Nothing,
            Err(why) => {
                self.drop_client(slot, registry, &why);
                Wants::Nothing
            }
        }
    }

    /// Sends `reply` to the client in `slot`, then closes it.
    pub(crate) fn answer(&mut self, slot: usize, mut reply: Vec<u8>, registry: &Registry) {
        let Some(client) = self.clients.get_mut(slot) else {
            return;
        };
        reply.push(b'\n');
        client.reply = reply;
        if let Err(e) = registry.reregister(
            &mut client.stream,
            Token(CLIENT_BASE - slot),
            Interest::WRITABLE,
        ) {
            self.drop_client(slot, registry, &format!("cannot watch it: {e}"));
            return;
        }
        self.write(slot, registry);
    }

    /// Drops every client whose time is up.
    pub(crate) fn expire(&mut self, now: Instant, registry: &Registry) {
        let late: Vec<(usize, bool)> = (self.clients.iter())
            .filter(|(_, c)| c.deadline <= now)
            .map(|(slot, c)| (slot, c.reply.is_empty()))
            .collect();
        for (slot, no_request) in late {
            let secs = CLIENT_TIMEOUT.as_secs();
            let why = if no_request {
                format!("sent no complete request within {secs} s")
            } else {
                format!("did not read its answer within {secs} s")
            };
            self.drop_client(slot, registry, &why);
        }
    }

    /// At stop: closes every client and removes the socket if it is still
    /// the one this process bound.
    pub(crate) fn close(mut self, dir: &FifoDir, registry: &Registry) {
        for mut client in self.clients.drain() {
            let _ = registry.deregister(&mut client.stream);
        }
        let _ = registry.deregister(&mut self.listener);
        if self.is_intact(dir) {
            if let Err(e) = rustix::fs::unlinkat(dir.as_fd(), SOCKET_NAME, AtFlags::empty()) {
                log::error!("cannot remove {}: {e}", self.path.display());
            }
        }
    }

    /// Accepts every pending connection; beyond [`MAX_CLIENTS`] they are
    /// closed at once.
    fn accept(&mut self, registry: &Registry) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.dropped += 1;
                    self.warn(&format!("cannot accept a connection: {e}"));
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                self.stats.refused += 1;
                // Best effort on a fresh socket's empty buffer: the client
                // learns the daemon is there, only busy.
                let _ = (&stream).write(
                    format!("busy: {MAX_CLIENTS} status clients are already connected\n")
                        .as_bytes(),
                );
                // Closing with its request unread would reset the
                // connection, and the client would never see the answer.
                let _ = (&stream).read(&mut [0u8; 256]);
                self.warn(&format!(
                    "{MAX_CLIENTS} clients already connected; refused another"
                ));
                continue;
            }
            let entry = self.clients.vacant_entry();
            let token = Token(CLIENT_BASE - entry.key());
            if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                self.stats.dropped += 1;
                self.warn(&format!("cannot watch a client: {e}"));
                continue;
            }
            entry.insert(Client {
                stream,
                request: Vec::new(),
                reply: Vec::new(),
                written: 0,
                deadline: Instant::now() + CLIENT_TIMEOUT,
            });
        }
    }

    /// Writes what the kernel takes of the answer; closes the client once
    /// all of it is written.
    fn write(&mut self, slot: usize, registry: &Registry) {
        let client = &mut self.clients[slot];
        while client.written < client.reply.len() {
            match client.stream.write(&client.reply[client.written..]) {
                Ok(n) => client.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.drop_client(slot, registry, &format!("cannot send the answer: {e}"));
                    return;
                }
            }
        }
        self.stats.served += 1;
        let mut client = self.clients.remove(slot);
        let _ = registry.deregister(&mut client.stream);
    }

    /// Closes the client in `slot`, counted and logged (rate-limited).
    fn drop_client(&mut self, slot: usize, registry: &Registry, why: &str) {
        let mut client = self.clients.remove(slot);
        let _ = registry.deregister(&mut client.stream);
        self.stats.dropped += 1;
        self.warn(&format!("dropped a client: {why}"));
    }

    fn warn(&mut self, message: &str) {
        if let Some(held) = self.warning.allow() {
            log::warn!(
                "{}: {message} ({} dropped, {} refused so far){}",
                self.path.display(),
                self.stats.dropped,
                self.stats.refused,
                suppressed_note(held)
            );
        }
    }
}

/// Longest path a Unix socket address holds (`sun_path`, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The path to bind or connect to for `path`, the socket in the directory
/// `dir`: `path` itself, or, if it is too long for a socket address, the
/// same file reached through `/proc/self/fd`.
pub(crate) fn bind_path(dir: std::os::fd::BorrowedFd<'_>, path: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return path.to_path_buf();
    }
    PathBuf::from(format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd()))
}

/// Reads what the client sent: `Ok(Some(line))` once its first line is
/// complete (without the newline), `Ok(None)` if more must come, `Err` if
/// it is too long, ended early or failed.
fn read_request(client: &mut Client) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut chunk = [0u8; 1024];
    loop {
        match client.stream.read(&mut chunk) {
            // `printf status | socat - UNIX:...` sends no newline.
            Ok(0) if !client.request.is_empty() && client.request.len() < MAX_REQUEST => {
                return Ok(Some(std::mem::take(&mut client.request)));
            }
            Ok(0) => return Err("closed the connection before sending a request".into()),
            Ok(n) => {
                client.request.extend_from_slice(&chunk[..n]);
                if let Some(end) = memchr::memchr(b'\n', &client.request) {
                    if end < MAX_REQUEST {
                        let mut line = client.request[..end].to_vec();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        return Ok(Some(line));
                    }
                }
                if client.request.len() >= MAX_REQUEST {
                    return Err(format!("request longer than {MAX_REQUEST} bytes"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(format!("cannot read its request: {e}")),
        }
    }
}

/// Removes a socket left at `<dir>/.control` by an instance that is gone
/// (the directory lock says none runs); refuses anything else there.
fn remove_stale(dir: &FifoDir, path: &Path) -> Result<()> {
    let stat = match rustix::fs::statat(dir.as_fd(), SOCKET_NAME, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::path(path, e)),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
        return Err(Error::refuse(
            path,
            "exists and is not a socket; refusing to touch it (remove or rename it: the \
             daemon's control socket goes there)",
        ));
    }
    match rustix::fs::unlinkat(dir.as_fd(), SOCKET_NAME, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::path(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_never_meet_input_or_output_tokens() {
        assert!(owns(LISTENER));
        assert!(owns(Token(CLIENT_BASE)));
        assert!(owns(Token(CLIENT_BASE - (MAX_CLIENTS - 1))));
        assert!(!owns(Token(CLIENT_BASE - MAX_CLIENTS)));
        assert!(!owns(Token(usize::MAX)));
        assert!(!owns(Token(0)) && !owns(Token(1)));
    }
}
