//! The journal side of a forward: one datagram per line to journald's
//! native socket (`/run/systemd/journal/socket`; tests may point
//! `FIFO_BROKER_JOURNAL_SOCKET` elsewhere), with `MESSAGE`, `PRIORITY`,
//! `SYSLOG_IDENTIFIER` and `FIFO_BROKER_INPUT`. Sends never block: a full
//! socket buffer waits for `WRITABLE`; a missing journal is retried with
//! backoff. An entry too large for one datagram (`EMSGSIZE`) goes the way
//! sd_journal_sendv(3) sends it: written into a sealed memfd whose
//! descriptor rides on an empty datagram (`SCM_RIGHTS`); journald reads the
//! entry from there. The memfd holds one entry, at most `max_line_bytes`
//! plus a few short fields, and is closed once sent; a full socket keeps
//! the entry queued as for any other, and the next try makes a new memfd.
//! Only a memfd that cannot be made (say `EMFILE`) drops the line, counted
//! and logged.

use std::fs::File;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use mio::net::UnixDatagram;
use mio::{Interest, Token};
use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{
    sendmsg_addr, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
};

use super::split_record;
use crate::config::ForwardConfig;
use crate::forward::journal::{encode, INPUT, MESSAGE, PRIORITY, SYSLOG_IDENTIFIER};
use crate::output::Core;
use crate::stats::suppressed_note;
use crate::world::World;

const SOCKET: &str = "/run/systemd/journal/socket";
/// The memfd's name, as `/proc/PID/fd` shows it (after `memfd:`).
const MEMFD_NAME: &str = "fifo-broker-journal";

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
        let mut memfd_error = None;
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
                    match send_in_memfd(&self.sock, &self.path, &self.entry) {
                        Ok(()) => Ok(end + 1),
                        Err(Large::Memfd(e)) => {
                            too_large += 1;
                            memfd_error = Some(e);
                            Ok(end + 1)
                        }
                        Err(Large::Send(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                            blocked = true;
                            Ok(0)
                        }
                        Err(Large::Send(e)) => {
                            failure = Some(format!("send a memfd to {}: {e}", self.path.display()));
                            Ok(0)
                        }
                    }
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
                let cause = memfd_error.map_or_else(String::new, |e| e.to_string());
                log::warn!(
                    "forward {}: {too_large} lines too large for one journal datagram \
                     and no memfd to pass them in ({cause}), dropped{}",
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

/// Why an entry too large for one datagram did not reach journald.
enum Large {
    /// No sealed memfd could be made for it: the entry is dropped.
    Memfd(io::Error),
    /// The datagram carrying the memfd was refused, as a plain send can be.
    Send(io::Error),
}

/// Hands `entry` to journald at `path` as sd_journal_sendv(3) does when it is
/// too large for one datagram: in a sealed memfd passed with `SCM_RIGHTS`
/// on an empty datagram. The memfd is closed on return; journald holds its
/// own copy of the descriptor once the datagram is queued.
fn send_in_memfd(sock: &UnixDatagram, path: &Path, entry: &[u8]) -> Result<(), Large> {
    let memfd = sealed_memfd(entry).map_err(Large::Memfd)?;
    let addr = SocketAddrUnix::new(path).map_err(|e| Large::Send(e.into()))?;
    let fds = [memfd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    // One descriptor always fits the space sized for one.
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    match sendmsg_addr(sock, &addr, &[], &mut control, flags) {
        Ok(_) => Ok(()),
        Err(e) => Err(Large::Send(e.into())),
    }
}

/// The seals journald wants on a memfd it is passed: until systemd v254 it
/// takes a memfd as sealed only if it has exactly these (another seal, such
/// as the `F_SEAL_EXEC` of `MFD_NOEXEC_SEAL`, makes it refuse the entry
/// from an unprivileged sender).
const SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE)
    .union(SealFlags::SEAL);

/// A memfd holding `entry` from offset 0, sealed with [`SEALS`] against
/// any change (journald refuses one that could still shrink, grow or be
/// written).
fn sealed_memfd(entry: &[u8]) -> io::Result<OwnedFd> {
    let fd = memfd_create(MEMFD_NAME, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut file = File::from(fd);
    file.write_all(entry)?;
    fcntl_add_seals(&file, SEALS)?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};

    use rustix::fs::fcntl_get_seals;

    use super::*;

    #[test]
    fn sealed_memfd_holds_the_entry_from_offset_0_and_refuses_changes() {
        let entry: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = File::from(sealed_memfd(&entry).unwrap());
        assert_eq!(
            fcntl_get_seals(&file).unwrap(),
            SEALS,
            "exactly journald's seals"
        );
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert!(
            back == entry,
            "{} bytes back of {}",
            back.len(),
            entry.len()
        );
        assert!(
            file.write_all(b"more").is_err(),
            "a sealed memfd took a write"
        );
        assert!(file.set_len(1).is_err(), "a sealed memfd shrank");
    }
}
