//! sd_notify(3): tells systemd when the daemon is ready, reloading and
//! stopping, how it is doing, and that its loop is alive.
//!
//! A [`Notifier`] reads `$NOTIFY_SOCKET` once; without it, it does nothing.
//! The socket may be a path or, with a leading `@`, an abstract address.
//! Datagrams go out through one unbound, non-blocking socket, so sending
//! must never block the event loop: the receiver's queue holds only
//! `net.unix.max_dgram_qlen` datagrams (10 by default), and a blocking send
//! to a supervisor that stopped reading would wait forever, with every input
//! and output stalled and SIGTERM unhandled.
//!
//! A notification that finds the queue full is not lost: it waits, merged
//! with whatever else waits, and the loop sends it again at
//! [`Notifier::retry_at`] (100 ms after the failed attempt, doubling up to
//! 1 s). What waits is the latest line of each key, in the order those
//! latest lines were sent: a newer `STATUS=` replaces the older one, and a
//! `READY=1` sent after `RELOADING=1` stays after it. systemd reads the keys
//! of one datagram together, so that one datagram says where the daemon is
//! now. Any other failure drops the notification, is counted, and is logged
//! once; none of this ever stops the daemon.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::stats::{suppressed_note, RateLimit};

/// Wait before the first retry after the queue was found full.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// The daemon's channel to systemd.
#[derive(Debug)]
pub struct Notifier {
    /// The socket and its destination; `None` when nobody listens.
    link: Option<Link>,
    /// Lines (`KEY=value`) not delivered yet: the latest of each key, in
    /// the order they were sent.
    pending: Vec<String>,
    /// When to try `pending` again; `Some` exactly when it is not empty.
    retry_at: Option<Instant>,
    /// Wait after the next attempt that finds the queue full.
    backoff: Duration,
    /// Sends that found the queue full and were left pending.
    deferred: u64,
    /// Datagrams dropped because of any other error.
    failed: u64,
    /// Rate limit of the warning about a full queue.
    full_warning: RateLimit,
    /// Set once another error has been logged.
    warned: bool,
}

/// Where notifications go.
#[derive(Debug)]
struct Link {
    /// Unbound, non-blocking, reused for every datagram.
    socket: UnixDatagram,
    /// `$NOTIFY_SOCKET` as an address.
    addr: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for messages.
    name: String,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; unset or empty gives a notifier that does
    /// nothing.
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// A notifier for the socket named as in `$NOTIFY_SOCKET`, if any.
    fn new(socket: Option<&OsStr>) -> Notifier {
        let link = socket.filter(|s| !s.is_empty()).and_then(|name| {
            Link::open(name)
                .map_err(|err| {
                    log::warn!("cannot notify systemd at {}: {err}", name.to_string_lossy());
                })
                .ok()
        });
        Notifier {
            link,
            pending: Vec::new(),
            retry_at: None,
            backoff: FIRST_RETRY,
            deferred: 0,
            failed: 0,
            full_warning: RateLimit::default(),
            warned: false,
        }
    }

    /// True if systemd (or a test) listens for notifications.
    pub fn enabled(&self) -> bool {
        self.link.is_some()
    }

    /// Sends `states`, after anything still pending, without blocking. If
    /// the queue is full they are kept pending for [`retry`](Self::retry).
    pub fn send(&mut self, states: &[NotifyState<'_>]) {
        if self.link.is_none() || states.is_empty() {
            return;
        }
        for state in states {
            merge(&mut self.pending, state.to_string());
        }
        if self.flush() {
            self.deferred += 1;
            if let Some(held) = self.full_warning.allow() {
                log::warn!(
                    "systemd is not reading notifications at {} (its queue is full): \
                     {} deferred so far; the latest state is sent once it reads again{}",
                    self.link.as_ref().map_or("", |l| &l.name),
                    self.deferred,
                    suppressed_note(held)
                );
            }
        }
    }

    /// When to call [`retry`](Self::retry); `None` when nothing is pending.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Tries again to send what is pending, as one datagram, without
    /// blocking.
    pub fn retry(&mut self) {
        if !self.pending.is_empty() {
            self.flush();
        }
    }

    /// Sends that found the queue full (each is delivered later, merged
    /// with the ones after it).
    pub fn deferred(&self) -> u64 {
        self.deferred
    }

    /// Datagrams lost to errors other than a full queue.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Sends every pending line as one datagram. True if they are still
    /// pending because the queue is full.
    fn flush(&mut self) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        let message: String = self.pending.iter().map(|l| format!("{l}\n")).collect();
        match link.send(message.as_bytes()) {
            Ok(()) => {}
            Err(err) if queue_full(&err) => {
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_RETRY);
                return true;
            }
            Err(err) => {
                self.failed += 1;
                if !std::mem::replace(&mut self.warned, true) {
                    log::warn!(
                        "cannot notify systemd at {}: {err} (further failures are not logged)",
                        link.name
                    );
                }
            }
        }
        self.pending.clear();
        self.retry_at = None;
        self.backoff = FIRST_RETRY;
        false
    }
}

impl Link {
    fn open(name: &OsStr) -> io::Result<Link> {
        let addr = match name.as_bytes().strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
            None => SocketAddr::from_pathname(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Link {
            socket,
            addr,
            name: name.to_string_lossy().into_owned(),
        })
    }

    /// One datagram; `WouldBlock` when the receiver's queue is full.
    fn send(&self, message: &[u8]) -> io::Result<()> {
        loop {
            match self.socket.send_to_addr(message, &self.addr) {
                Ok(n) if n == message.len() => return Ok(()),
                Ok(_) => return Err(io::Error::new(io::ErrorKind::WriteZero, "datagram cut")),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

/// True for the errors that mean "not now": the receiver's queue (EAGAIN)
/// or the kernel's buffers (ENOBUFS) are full.
fn queue_full(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
        || err.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error())
}

/// Adds `line` to `pending`, dropping an older line with the same key, so
/// that each key keeps its latest value and the lines stay in the order
/// their latest versions were sent.
fn merge(pending: &mut Vec<String>, line: String) {
    fn key(line: &str) -> &str {
        line.split_once('=').map_or(line, |(key, _)| key)
    }
    pending.retain(|old| key(old) != key(&line));
    pending.push(line);
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    /// Every datagram already queued on `listener`.
    fn drain(listener: &UnixDatagram) -> Vec<String> {
        listener.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        let mut received = Vec::new();
        while let Ok(n) = listener.recv(&mut buf) {
            received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        received
    }

    #[test]
    fn abstract_sockets_get_the_datagram() {
        let name = format!("fifo-broker-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut notifier = Notifier::new(Some(OsStr::new(&format!("@{name}"))));
        assert!(notifier.enabled());
        notifier.send(&[NotifyState::Ready, NotifyState::Status("ok")]);
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok\n");
    }

    #[test]
    fn a_full_queue_never_blocks_and_the_latest_state_follows() {
        // Far more than net.unix.max_dgram_qlen (10 by default).
        const SENDS: usize = 100;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();

        // A send that blocks would hang the sending thread, not the test.
        let (done, finished) = mpsc::channel();
        let socket = path.clone().into_os_string();
        thread::spawn(move || {
            let mut notifier = Notifier::new(Some(&socket));
            let mut slowest = Duration::ZERO;
            for i in 0..SENDS {
                let start = Instant::now();
                notifier.send(&[NotifyState::Status(&format!("{i}"))]);
                slowest = slowest.max(start.elapsed());
            }
            let _ = done.send((notifier, slowest));
        });
        let (mut notifier, slowest) = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("send() returns although nobody reads the socket");
        assert!(
            slowest < Duration::from_millis(500),
            "expected every send() to return at once, the slowest took {slowest:?}"
        );
        let first_retry = notifier
            .retry_at()
            .expect("a retry is scheduled while something is pending");
        assert!(first_retry <= Instant::now() + MAX_RETRY, "{first_retry:?}");
        notifier.retry();
        assert!(
            notifier.retry_at() > Some(first_retry),
            "a failed retry schedules the next"
        );

        let queued = drain(&listener);
        let want: Vec<String> = (0..queued.len()).map(|i| format!("STATUS={i}\n")).collect();
        assert_eq!(queued, want, "the datagrams that fitted, in order");
        assert!(queued.len() < SENDS, "expected the queue to fill up");
        assert_eq!(notifier.deferred(), (SENDS - queued.len()) as u64);

        notifier.retry();
        let last = format!("STATUS={}\n", SENDS - 1);
        assert_eq!(drain(&listener), [last], "the pending state, once read");
        assert_eq!(notifier.retry_at(), None, "nothing pending, no timer");
        assert_eq!(notifier.failed(), 0);
    }

    #[test]
    fn pending_keeps_the_latest_line_per_key_in_the_order_last_sent() {
        let mut pending = Vec::new();
        for line in [
            "READY=1",
            "STATUS=a",
            "RELOADING=1",
            "MONOTONIC_USEC=1",
            "READY=1",
            "STATUS=b",
            "WATCHDOG=1",
            "RELOADING=1",
            "MONOTONIC_USEC=2",
            "READY=1",
            "STATUS=c=d",
        ] {
            merge(&mut pending, line.to_owned());
        }
        assert_eq!(
            pending,
            [
                "WATCHDOG=1",
                "RELOADING=1",
                "MONOTONIC_USEC=2",
                "READY=1",
                "STATUS=c=d"
            ]
        );
    }

    #[test]
    fn other_errors_drop_the_notification_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nobody-listens.sock");
        let mut notifier = Notifier::new(Some(missing.as_os_str()));
        notifier.send(&[NotifyState::Ready]);
        notifier.send(&[NotifyState::Stopping]);
        assert_eq!(notifier.failed(), 2);
        assert_eq!(notifier.deferred(), 0);
        assert_eq!(notifier.retry_at(), None);
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        for socket in [None, Some(OsStr::new(""))] {
            let mut notifier = Notifier::new(socket);
            assert!(!notifier.enabled());
            notifier.send(&[NotifyState::Ready]);
            notifier.retry();
            assert_eq!(notifier.retry_at(), None);
            assert_eq!((notifier.deferred(), notifier.failed()), (0, 0));
        }
    }
}
