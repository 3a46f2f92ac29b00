//! Forwards: outputs that send lines beyond the host (SPEC §7) — to a
//! syslog server over TCP or TLS, to NATS JetStream, or to the journal —
//! from the same loop, without ever blocking it.
//!
//! A forward queues *records* (`TIME INPUT LINE\n`, rendered by its lane)
//! in its [`Outbox`](crate::outbox::Outbox) like every output, so `from`,
//! filters, `buffer_bytes` and `when_full` work as for the others. Its
//! protocol ([`syslog`], [`nats`], [`journal`]) encodes records into a small
//! wire buffer only when the connection can take them; what the outbox
//! holds meanwhile is under the output's policy.
//!
//! The connection ([`Link`]) is made without blocking: an IP address is
//! connected at once (`EINPROGRESS`, then `WRITABLE`), a name is resolved on
//! a helper thread the loop checks on a short timer. Any failure closes the
//! connection, is counted and logged (rate-limited), and a reconnect is
//! tried after a backoff of 0.1 s doubling to 30 s, reset once a connection
//! lived a while. Connected and idle, a forward has no timer.

mod journal;
mod nats;
mod stream;
mod syslog;

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Interest;

pub(crate) use stream::{tls_client_config, TlsSetup};

use super::{Core, Failure, Kind, State, Target};
use crate::config::ForwardConfig;
use crate::forward::url::{Endpoint, Transport};
use crate::stats::suppressed_note;
use crate::world::World;
use stream::Stream;

/// First reconnect delay; doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that was up (handshakes done) this long resets the
/// backoff when it fails.
const HEALTHY: Duration = Duration::from_secs(1);
/// How often a name being resolved is checked on, and for how long.
const RESOLVE_POLL: Duration = Duration::from_millis(10);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connect may take, and then a TLS or NATS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads of a server's replies per event (16 KiB each).
const MAX_READS: usize = 64;
/// Encoded bytes prepared for the socket at once.
const WIRE_BATCH: usize = 256 * 1024;

/// A forward output.
pub(crate) struct Forward {
    /// Name, queue of records and counters.
    core: Core,
    /// Where to (for messages, secrets hidden).
    endpoint: Endpoint,
    /// TLS client, for `syslog+tls://` and `nats://` with `tls = true`.
    tls: Option<TlsSetup>,
    /// The protocol.
    proto: Proto,
    /// The connection (stream protocols).
    link: Link,
    /// Encoded bytes on their way to the socket.
    wire: Wire,
    /// When to reconnect, check on a resolver, or give up on an ack.
    retry_at: Option<Instant>,
    /// The next reconnect delay.
    backoff: Duration,
    /// When the current connection was up (handshakes done): the backoff
    /// resets if it fails after `HEALTHY`.
    up_since: Option<Instant>,
    /// When the TCP connection in `link` was made (handshake deadlines).
    linked_at: Instant,
    /// Connections made and lost.
    connects: u64,
    disconnects: u64,
    /// The connection in `link` was counted and logged as up (for TLS, once
    /// its handshake is done).
    announced: bool,
    /// The interest the socket is registered with, if it is.
    interest: Option<Interest>,
    /// The server's replies were not all read (`MAX_READS`): read on at
    /// the next turn, without waiting for an event.
    read_more: bool,
}

/// The protocol a forward speaks.
enum Proto {
    Syslog(syslog::Session),
    Nats(Box<nats::Session>),
    Journal(journal::Session),
}

/// A stream connection's state.
enum Link {
    /// Not connected; reconnect at `retry_at`.
    Down,
    /// A helper thread resolves the host's name.
    Resolving {
        answer: mpsc::Receiver<io::Result<Vec<SocketAddr>>>,
        deadline: Instant,
    },
    /// A non-blocking connect is under way; `rest` are addresses to try next.
    Connecting {
        sock: TcpStream,
        rest: Vec<SocketAddr>,
        deadline: Instant,
    },
    /// Connected.
    Up(Stream),
}

/// Encoded bytes for the socket, with where each message ends, so that
/// after a failure the message cut in the middle is sent again whole.
#[derive(Default)]
pub(super) struct Wire {
    buf: Vec<u8>,
    /// Bytes of `buf` the socket took.
    sent: usize,
    /// End offsets of the messages in `buf` not wholly sent yet.
    ends: VecDeque<usize>,
    /// End of the last message wholly sent.
    done: usize,
    /// Counts `clear` and `rewind`, which move what offsets in `buf` mean.
    epoch: u64,
}

impl Wire {
    fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    fn advance(&mut self, n: usize) {
        self.sent += n;
        while let Some(&end) = self.ends.front().filter(|&&end| end <= self.sent) {
            self.done = end;
            self.ends.pop_front();
        }
        if self.is_empty() {
            self.clear();
        }
    }

    pub(super) fn clear(&mut self) {
        self.epoch += 1;
        self.buf.clear();
        self.sent = 0;
        self.done = 0;
        self.ends.clear();
    }

    /// After a failure: keeps the messages not wholly sent, from the start
    /// of the one that was cut.
    fn rewind(&mut self) {
        self.epoch += 1;
        self.buf.drain(..self.done);
        for end in &mut self.ends {
            *end -= self.done;
        }
        self.sent = 0;
        self.done = 0;
    }

    /// Where `buf` ends now, if some of it is unsent. Equal to an earlier
    /// answer only while the bytes before that end are not all sent and
    /// nothing was appended after it.
    pub(super) fn unsent_end(&self) -> Option<(u64, usize)> {
        (!self.is_empty()).then_some((self.epoch, self.buf.len()))
    }

    /// The buffer to encode into.
    pub(super) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Marks the end of one message.
    pub(super) fn end_message(&mut self) {
        self.ends.push_back(self.buf.len());
    }

    /// True once a batch is large enough to send.
    pub(super) fn is_full(&self) -> bool {
        self.len() >= WIRE_BATCH
    }
}

/// `TIME INPUT LINE\n` split into its parts (the line keeps its `\n`).
pub(super) fn split_record(record: &[u8]) -> (&str, &str, &[u8]) {
    let mut parts = record.splitn(3, |&b| b == b' ');
    let (Some(time), Some(input), Some(line)) = (parts.next(), parts.next(), parts.next()) else {
        return ("-", "", record);
    };
    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("")
    }
    (text(time), text(input), line)
}

impl Forward {
    /// A forward for `config`, not connected yet (the first flush connects).
    /// Reads what it needs from files (TLS, `.creds`) now, never in the loop.
    pub(crate) fn new(name: &str, config: &ForwardConfig) -> Result<Forward, String> {
        let tls = config.tls.as_ref().map(tls_client_config).transpose()?;
        let core = Core::new(name, mio::Token(0));
        let fail = |e: io::Error| e.to_string();
        let proto = match &config.endpoint {
            Endpoint::Syslog { .. } => Proto::Syslog(syslog::Session::new(config)),
            Endpoint::Nats { .. } => {
                Proto::Nats(Box::new(nats::Session::new(config).map_err(fail)?))
            }
            Endpoint::Journal => Proto::Journal(journal::Session::new(config).map_err(fail)?),
        };
        Ok(Forward {
            core,
            endpoint: config.endpoint.clone(),
            tls,
            proto,
            link: Link::Down,
            wire: Wire::default(),
            retry_at: None,
            backoff: FIRST_BACKOFF,
            up_since: None,
            linked_at: Instant::now(),
            connects: 0,
            disconnects: 0,
            announced: false,
            interest: None,
            read_more: false,
        })
    }

    /// Registers what it will open under `token`.
    pub(crate) fn set_token(&mut self, token: mio::Token) {
        self.core.token = token;
    }

    /// Moves the forward on as far as it can without blocking: connects,
    /// reads replies, writes queued records.
    fn drive(&mut self, world: &World) {
        if let Proto::Journal(journal) = &mut self.proto {
            if self.retry_at.is_some_and(|at| at > Instant::now()) {
                return; // backing off after a failed send
            }
            let result = journal.send(&mut self.core, world);
            self.settle(result, world);
            return;
        }
        for _ in 0..4 {
            let step = match &self.link {
                Link::Down if self.retry_at.is_some_and(|at| at > Instant::now()) => Ok(false),
                Link::Down => self.start(world),
                Link::Resolving { .. } => self.resolved(world),
                Link::Connecting { .. } => self.connected(world),
                Link::Up(_) if self.retry_at.is_some_and(|at| at <= Instant::now()) => {
                    Err(self.overdue())
                }
                Link::Up(_) => self.pump().map(|()| {
                    self.announce();
                    false
                }),
            };
            match step {
                Ok(true) => continue,
                Ok(false) => break,
                Err(reason) => {
                    self.fail(&reason, world);
                    break;
                }
            }
        }
        self.watch(world);
        self.set_timer();
    }

    /// Starts connecting: at once to an IP address, else after resolving
    /// the name on a helper thread.
    fn start(&mut self, world: &World) -> Result<bool, String> {
        let (host, port) = match &self.endpoint {
            Endpoint::Syslog { host, port, .. } | Endpoint::Nats { host, port, .. } => {
                (host.clone(), *port)
            }
            Endpoint::Journal => return Ok(false),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.connect(vec![SocketAddr::new(ip, port)], world);
        }
        let (tell, answer) = mpsc::channel();
        let resolver = std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let found = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect);
                let _ = tell.send(found);
            });
        resolver.map_err(|e| format!("cannot start a resolver thread: {e}"))?;
        self.link = Link::Resolving {
            answer,
            deadline: Instant::now() + RESOLVE_TIMEOUT,
        };
        Ok(false)
    }

    fn resolved(&mut self, world: &World) -> Result<bool, String> {
        let Link::Resolving { answer, deadline } = &self.link else {
            return Ok(false);
        };
        match answer.try_recv() {
            Ok(Ok(addrs)) => self.connect(addrs, world),
            Ok(Err(e)) => Err(format!("cannot resolve {}: {e}", self.endpoint)),
            Err(mpsc::TryRecvError::Empty) if Instant::now() < *deadline => Ok(false),
            Err(_) => Err(format!("resolving {} timed out", self.endpoint)),
        }
    }

    /// Starts a non-blocking connect to the first address that takes one.
    fn connect(&mut self, mut addrs: Vec<SocketAddr>, world: &World) -> Result<bool, String> {
        addrs.reverse();
        let mut last = None;
        while let Some(addr) = addrs.pop() {
            match TcpStream::connect(addr) {
                Ok(mut sock) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let registry = world.registry();
                    if let Err(e) = registry.register(&mut sock, self.core.token, interest) {
                        return Err(format!("cannot watch the socket: {e}"));
                    }
                    self.interest = Some(interest);
                    self.link = Link::Connecting {
                        sock,
                        rest: addrs,
                        deadline: Instant::now() + CONNECT_TIMEOUT,
                    };
                    return Ok(false);
                }
                Err(e) => last = Some(format!("connect to {addr}: {e}")),
            }
        }
        Err(last.unwrap_or_else(|| format!("{} has no address", self.endpoint)))
    }

    /// Checks on a connect under way.
    fn connected(&mut self, world: &World) -> Result<bool, String> {
        let Link::Connecting {
            sock,
            rest,
            deadline,
        } = &mut self.link
        else {
            return Ok(false);
        };
        let error = match sock.take_error() {
            Ok(Some(e)) | Err(e) => Some(e.to_string()),
            Ok(None) => match sock.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    if Instant::now() < *deadline {
                        return Ok(false);
                    }
                    Some("connect timed out".to_string())
                }
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(error) = error {
            let rest = std::mem::take(rest);
            self.unwatch(world);
            self.link = Link::Down;
            if rest.is_empty() {
                return Err(format!("cannot connect to {}: {error}", self.endpoint));
            }
            return self.connect(rest, world);
        }
        let Link::Connecting { sock, .. } = std::mem::replace(&mut self.link, Link::Down) else {
            return Ok(false);
        };
        let _ = sock.set_nodelay(true);
        let stream = match (&self.endpoint, &self.tls) {
            (
                Endpoint::Syslog {
                    transport: Transport::Tls,
                    ..
                },
                Some(tls),
            ) => Stream::tls(sock, tls).map_err(|e| format!("TLS: {e}"))?,
            _ => Stream::Plain(sock),
        };
        self.link = Link::Up(stream);
        self.up_since = None;
        self.linked_at = Instant::now();
        self.announced = false;
        self.announce();
        if let Proto::Nats(session) = &mut self.proto {
            session.connected();
        }
        Ok(true)
    }

    /// Renewed by a reload: keeps the old forward's connection counters
    /// and, NATS to NATS, its message ids and unacknowledged messages (sent
    /// again, same ids, once the new session is ready).
    pub(crate) fn inherit(&mut self, old: &mut Forward) {
        self.connects = old.connects;
        self.disconnects = old.disconnects;
        if let (Proto::Nats(new), Proto::Nats(old)) = (&mut self.proto, &mut old.proto) {
            new.inherit(old);
        }
    }

    /// Bytes taken from the queue and not delivered yet: NATS messages
    /// awaiting their PubAck, or syslog frames not on the socket yet.
    pub(crate) fn held_bytes(&self) -> usize {
        match &self.proto {
            Proto::Nats(session) => session.in_flight(),
            _ => self.wire.len(),
        }
    }

    /// Lines taken from the queue and not delivered yet (as
    /// [`Forward::held_bytes`]).
    pub(crate) fn held_lines(&self) -> u64 {
        match &self.proto {
            Proto::Nats(session) => session.unacked(),
            _ => self.wire.ends.len() as u64,
        }
    }

    /// Counts and logs the connection once it is up: at once for plain TCP,
    /// when the handshake is done for TLS.
    fn announce(&mut self) {
        let Link::Up(stream) = &self.link else {
            return;
        };
        if self.announced || stream.is_handshaking() {
            return;
        }
        self.announced = true;
        self.up_since = Some(Instant::now());
        self.connects += 1;
        log::info!("forward {}: connected to {}", self.core.name, self.endpoint);
    }

    /// Reads what the server sent, then writes what is queued, until the
    /// socket would block.
    fn pump(&mut self) -> Result<(), String> {
        self.read_replies()?;
        let Forward {
            link: Link::Up(stream),
            proto,
            wire,
            core,
            ..
        } = self
        else {
            return Ok(());
        };
        loop {
            if wire.is_empty() {
                match proto {
                    Proto::Syslog(session) => session.fill(&mut core.outbox, wire),
                    Proto::Nats(session) => session.fill(core, wire),
                    Proto::Journal(_) => {}
                }
                if wire.is_empty() {
                    break;
                }
            }
            match stream.write(wire.pending()) {
                Ok(n) => {
                    core.stats.bytes_out += n as u64;
                    wire.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write to {}: {e}", self.endpoint)),
            }
        }
        stream
            .flush()
            .map_err(|e| format!("write to {}: {e}", self.endpoint))
    }

    /// Reads and handles what the server sent (a syslog server sends
    /// nothing: its end of stream is noticed here, and anything it sends
    /// closes the connection).
    fn read_replies(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 16 * 1024];
        // A server's replies to a window of messages fit in a few reads; one
        // that floods is read on its next event, not until it stops.
        self.read_more = true;
        for _ in 0..MAX_READS {
            let Link::Up(stream) = &mut self.link else {
                self.read_more = false;
                return Ok(());
            };
            let n = match stream.read(&mut buf) {
                Ok(0) => return Err(format!("{} closed the connection", self.endpoint)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_more = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read from {}: {e}", self.endpoint)),
            };
            let Proto::Nats(session) = &mut self.proto else {
                // RFC 6587 is one-way: a peer that talks is not a syslog
                // receiver (and reading it on would keep the loop busy).
                return Err(format!(
                    "{} sent {n} bytes; a syslog receiver sends nothing, so this is not one",
                    self.endpoint
                ));
            };
            if session.received(&buf[..n], &mut self.wire)? {
                self.upgrade_tls()?;
            }
        }
        Ok(())
    }

    /// NATS with TLS: the server's INFO came in the clear; the rest is TLS.
    fn upgrade_tls(&mut self) -> Result<(), String> {
        let Some(tls) = &self.tls else {
            return Err(format!(
                "{} requires TLS; set tls = true (and ca_file if needed)",
                self.endpoint
            ));
        };
        let Link::Up(stream) = std::mem::replace(&mut self.link, Link::Down) else {
            return Ok(());
        };
        let sock = stream.into_plain().ok_or("TLS was already started")?;
        self.link = Link::Up(Stream::tls(sock, tls).map_err(|e| format!("TLS: {e}"))?);
        Ok(())
    }

    /// What a timer that ran out while connected means.
    fn overdue(&self) -> String {
        match &self.proto {
            Proto::Nats(session) if session.is_ready() => {
                format!("{} did not acknowledge a message in time", self.endpoint)
            }
            _ => format!("handshake with {} timed out", self.endpoint),
        }
    }

    /// A failure: close, count, log, and reconnect after the backoff.
    fn fail(&mut self, reason: &str, world: &World) {
        self.core.stats.errors += 1;
        self.read_more = false;
        self.unwatch(world);
        let was_up = matches!(self.link, Link::Up(_));
        self.link = Link::Down;
        if was_up {
            self.disconnects += 1;
        }
        // Healthy: up (TLS handshake done; for NATS, the session ready)
        // for a while. A server that stalls handshakes still backs off.
        let ready = match &self.proto {
            Proto::Nats(session) => session.is_ready(),
            _ => true,
        };
        if self
            .up_since
            .take()
            .is_some_and(|at| ready && at.elapsed() >= HEALTHY)
        {
            self.backoff = FIRST_BACKOFF;
        }
        let delay = self.backoff;
        self.retry_at = Some(Instant::now() + delay);
        self.backoff = (delay * 2).min(MAX_BACKOFF);
        self.wire.rewind();
        if let Proto::Nats(session) = &mut self.proto {
            session.disconnected(&mut self.wire);
        }
        if let Some(held) = self.core.warning.allow() {
            log::warn!(
                "forward {}: {reason}; {} bytes queued, retrying in {delay:?}{}",
                self.core.name,
                self.core.outbox.len() + self.held_bytes(),
                suppressed_note(held)
            );
        }
    }

    /// For the journal: a send error keeps the records and retries later.
    fn settle(&mut self, result: Result<bool, String>, world: &World) {
        match result {
            Ok(blocked) => {
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
                let interest = blocked.then_some(Interest::WRITABLE);
                if let Proto::Journal(journal) = &mut self.proto {
                    journal.watch(interest, self.core.token, world);
                }
            }
            Err(reason) => self.fail(&reason, world),
        }
    }

    /// Registers the socket for what the connection waits for.
    fn watch(&mut self, world: &World) {
        let Link::Up(stream) = &mut self.link else {
            return;
        };
        let mut interest = Interest::READABLE;
        if !self.wire.is_empty() || stream.wants_write() {
            interest |= Interest::WRITABLE;
        }
        if self.interest != Some(interest) {
            let registry = world.registry();
            let result = match self.interest {
                Some(_) => registry.reregister(stream.socket(), self.core.token, interest),
                None => registry.register(stream.socket(), self.core.token, interest),
            };
            if let Err(e) = result {
                log::error!("forward {}: cannot watch the socket: {e}", self.core.name);
            }
            self.interest = Some(interest);
        }
    }

    fn unwatch(&mut self, world: &World) {
        if self.interest.take().is_none() {
            return;
        }
        let sock = match &mut self.link {
            Link::Up(stream) => stream.socket(),
            Link::Connecting { sock, .. } => sock,
            _ => return,
        };
        let _ = world.registry().deregister(sock);
    }

    /// Sets the one timer a forward may need: reconnect, resolver check,
    /// connect deadline, or the oldest unacknowledged message's deadline.
    fn set_timer(&mut self) {
        self.retry_at = match &self.link {
            Link::Down => self.retry_at,
            Link::Resolving { .. } => Some(Instant::now() + RESOLVE_POLL),
            Link::Connecting { deadline, .. } => Some(*deadline),
            Link::Up(stream) => {
                let shaking = match &self.proto {
                    Proto::Nats(session) => !session.is_ready(),
                    _ => stream.is_handshaking(),
                };
                let handshake = shaking.then_some(self.linked_at + CONNECT_TIMEOUT);
                let ack = match &self.proto {
                    Proto::Nats(session) => session.ack_deadline(),
                    _ => None,
                };
                handshake.into_iter().chain(ack).min()
            }
        };
    }

    /// Whatever a stop could not deliver: queued records and, for NATS,
    /// messages sent but not acknowledged.
    fn abandon(&mut self, world: &World) {
        self.unwatch(world);
        self.link = Link::Down;
        let unacked = match &mut self.proto {
            Proto::Nats(session) => session.abandon(),
            _ => 0,
        };
        let stats = &mut self.core.stats;
        stats.discarded += unacked;
        stats.lines_out = stats.lines_out.saturating_sub(unacked);
        if unacked > 0 {
            log::warn!(
                "forward {}: {unacked} lines sent but not acknowledged at stop",
                self.core.name
            );
        }
    }
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forward({} -> {})", self.core.name, self.endpoint)
    }
}

impl Target for Forward {
    const KIND: Kind = Kind::Forward;

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    /// Every line goes through the queue: the protocol encodes it when the
    /// connection can take it.
    fn offer(&mut self, data: &[u8], lines: u64, world: &World) {
        self.core.stats.lines_out += lines;
        self.core.queue(Kind::Forward, data, false);
        self.drive(world);
    }

    fn flush(&mut self, world: &World) {
        self.drive(world);
    }

    fn write(&mut self, _data: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn write_queued(&mut self) -> (usize, io::Result<()>) {
        (0, Ok(()))
    }

    fn failed(&mut self, _err: io::Error, _world: &World) -> Failure {
        Failure::Retry
    }

    fn on_event(&mut self, _closed: bool, world: &World) {
        self.drive(world);
    }

    fn retry_at(&self) -> Option<Instant> {
        if self.read_more {
            return Some(Instant::now());
        }
        let accept_by = match &self.link {
            Link::Up(stream) => stream.accept_by(),
            _ => None,
        };
        self.retry_at.into_iter().chain(accept_by).min()
    }

    fn state(&self) -> State {
        let up = match (&self.proto, &self.link) {
            (Proto::Journal(journal), _) => journal.is_up(),
            (Proto::Nats(session), Link::Up(_)) => session.is_ready(),
            (_, Link::Up(stream)) => !stream.is_handshaking(),
            (_, _) => false,
        };
        if up {
            State::Connected
        } else {
            State::Disconnected
        }
    }

    fn is_drained(&self) -> bool {
        let protocol = match &self.proto {
            Proto::Nats(session) => session.is_drained(),
            _ => true,
        };
        self.core.outbox.is_empty() && self.wire.is_empty() && protocol
    }

    /// Renewed by a reload (its settings changed): the connection closes;
    /// queued records carry over to the new one, and so do unacknowledged
    /// NATS messages if it is NATS too ([`Forward::inherit`]); otherwise
    /// they are counted as discarded.
    fn release(&mut self, world: &World) {
        self.abandon(world);
    }

    fn close(&mut self, world: &World) {
        self.drive(world);
        self.abandon(world);
    }

    fn counter_note(&self) -> String {
        let mut note = format!(
            " state={} connects={} disconnects={}",
            match self.state() {
                State::Connected => "connected",
                _ => "disconnected",
            },
            self.connects,
            self.disconnects
        );
        if let Proto::Nats(session) = &self.proto {
            note.push_str(&format!(" acked={}", session.acked()));
        }
        note
    }
}

#[cfg(test)]
mod tests {
    use super::Wire;

    #[test]
    fn unsent_end_holds_only_while_that_end_is_pending_and_last() {
        let mut wire = Wire::default();
        assert_eq!(wire.unsent_end(), None, "nothing to send");
        wire.buf().extend_from_slice(b"PONG\r\n");
        let pong = wire.unsent_end();
        assert!(pong.is_some());
        wire.advance(2);
        assert_eq!(wire.unsent_end(), pong, "partly sent: still answers");
        // A message whose payload happens to end like a PONG is no PONG.
        wire.buf()
            .extend_from_slice(b"HPUB s r 12 16\r\nNATS/1.0\r\n\r\nPONG\r\n");
        wire.end_message();
        assert_ne!(wire.unsent_end(), pong, "appended after it");
        let later = wire.unsent_end();
        let len = wire.len();
        wire.advance(len);
        assert_eq!(wire.unsent_end(), None, "all sent");
        let same = vec![b'x'; later.unwrap().1];
        wire.buf().extend_from_slice(&same);
        assert_ne!(wire.unsent_end(), later, "same length after a clear");
    }
}
