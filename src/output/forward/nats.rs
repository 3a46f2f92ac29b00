//! The NATS side of a forward: JetStream publish over the client protocol.
//!
//! After the server's INFO (and TLS, when asked), CONNECT, a subscription to
//! this forward's reply inbox and a PING; the PONG makes the session ready.
//! Each record becomes an HPUB with a reply subject and a `Nats-Msg-Id`
//! unique across restarts and instances (a random token per forward and a
//! sequence number). At most `window` messages, and at most `buffer_bytes`
//! of them (unless one message is larger), are unacknowledged: their copies
//! are the forward's memory besides its outbox. A line counts as delivered
//! when its PubAck arrives. A negative ack, "no
//! responders", `-ERR` or an ack that does not come in time is a failure:
//! the connection is closed and, after the backoff, every unacknowledged
//! message is sent again with the same id, so the stream's duplicate window
//! keeps the result exactly-once. Replies are untrusted: anything malformed
//! or over a bound closes the connection.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::{split_record, Wire};
use crate::config::ForwardConfig;
use crate::forward::nats::{
    encode_connect, encode_ping, encode_pong, parse, parse_ack, parse_info, printable, AckResult,
    Auth, Connect, Creds, Publisher, ServerOp, MAX_INFO_LINE, MAX_PAYLOAD,
};
use crate::forward::url::{Endpoint, UrlAuth};
use crate::output::Core;

/// Largest buffer of an acknowledged message kept for reuse: a few long
/// lines must not leave the forward holding `window` buffers of their size.
const SPARE_BYTES: usize = 4096;
/// How long a PubAck may take before the connection is given up.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of server replies buffered before one is complete.
const MAX_RECEIVED: usize = MAX_INFO_LINE + MAX_PAYLOAD + 4096;
/// The subscription id of the reply inbox.
const INBOX_SID: u64 = 1;

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for INFO.
    Info,
    /// CONNECT sent; waiting for the PONG to our PING.
    Pong,
    /// Publishing.
    Ready,
}

/// One message sent and not acknowledged yet.
struct Unacked {
    seq: u64,
    /// The record it was made from (to send it again).
    record: Vec<u8>,
    sent_at: Instant,
}

pub(super) struct Session {
    /// Reply subjects and message ids.
    publisher: Publisher,
    /// Subject template (`{input}` stands for the input's name).
    subject: String,
    /// The subject being built for one message (reused).
    subject_buf: String,
    /// Credentials from the URL.
    auth: UrlAuth,
    /// Credentials from a `.creds` file (read when the forward is made).
    creds: Option<Creds>,
    /// TLS is configured.
    tls: bool,
    /// Most unacknowledged messages.
    window: usize,
    phase: Phase,
    /// Server replies not parsed yet.
    received: Vec<u8>,
    /// Largest payload the server takes.
    max_payload: usize,
    /// Messages sent and not acknowledged, oldest first.
    unacked: VecDeque<Unacked>,
    /// Bytes of their records.
    in_flight: usize,
    /// Buffers of acknowledged messages, reused (none over `SPARE_BYTES`).
    spare: Vec<Vec<u8>>,
    /// Where the last PONG put in `wire` ends (`Wire::mark`): while it is
    /// the last thing there and unsent, it answers any further PING.
    pong: Option<(u64, usize)>,
    /// The last sequence number used.
    seq: u64,
    /// Lines acknowledged.
    acked: u64,
}

impl Session {
    pub(super) fn new(config: &ForwardConfig) -> io::Result<Session> {
        let Endpoint::Nats { auth, .. } = &config.endpoint else {
            return Err(io::Error::other("not a nats:// forward"));
        };
        Ok(Session {
            publisher: Publisher::new(random_bytes()?),
            subject: config.subject.clone(),
            subject_buf: String::new(),
            auth: auth.clone(),
            creds: match &config.credentials {
                Some(path) => Some(read_creds(path).map_err(io::Error::other)?),
                None => None,
            },
            tls: config.tls.is_some(),
            window: config.window,
            phase: Phase::Info,
            received: Vec::new(),
            max_payload: MAX_PAYLOAD,
            unacked: VecDeque::new(),
            in_flight: 0,
            spare: Vec::new(),
            pong: None,
            seq: 0,
            acked: 0,
        })
    }

    pub(super) fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    pub(super) fn acked(&self) -> u64 {
        self.acked
    }

    pub(super) fn is_drained(&self) -> bool {
        self.unacked.is_empty()
    }

    /// A new connection: the handshake starts over.
    pub(super) fn connected(&mut self) {
        self.phase = Phase::Info;
        self.received.clear();
    }

    /// The connection is gone: what was encoded is dropped; unacknowledged
    /// messages are sent again once a new session is ready.
    pub(super) fn disconnected(&mut self, wire: &mut Wire) {
        self.phase = Phase::Info;
        self.received.clear();
        wire.clear();
    }

    /// Bytes of the messages awaiting their PubAck.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// When the oldest unacknowledged message is given up on; none before
    /// the session is ready (a new connection sends them all again then,
    /// and until then only the handshake's deadline counts).
    pub(super) fn ack_deadline(&self) -> Option<Instant> {
        if self.phase != Phase::Ready {
            return None;
        }
        self.unacked.front().map(|m| m.sent_at + ACK_TIMEOUT)
    }

    /// Takes over a renewed forward's ids, unacknowledged messages and
    /// count of acknowledged ones.
    pub(super) fn inherit(&mut self, old: &mut Session) {
        std::mem::swap(&mut self.publisher, &mut old.publisher);
        self.seq = old.seq;
        self.unacked = std::mem::take(&mut old.unacked);
        self.in_flight = std::mem::take(&mut old.in_flight);
        self.acked = old.acked;
    }

    /// Messages awaiting their PubAck.
    pub(super) fn unacked(&self) -> u64 {
        self.unacked.len() as u64
    }

    /// A stop gives up: how many lines were never acknowledged.
    pub(super) fn abandon(&mut self) -> u64 {
        let n = self.unacked.len() as u64;
        self.unacked.clear();
        self.in_flight = 0;
        n
    }

    /// Handles server bytes. `Ok(true)`: start TLS now (before anything
    /// else is written). `Err`: close the connection.
    pub(super) fn received(&mut self, data: &[u8], wire: &mut Wire) -> Result<bool, String> {
        if self.received.len() + data.len() > MAX_RECEIVED {
            return Err("the NATS server sent an oversized reply".into());
        }
        self.received.extend_from_slice(data);
        let mut used = 0;
        let mut upgrade = false;
        let mut received = std::mem::take(&mut self.received);
        let result = loop {
            match parse(&received[used..]) {
                Ok(None) => break Ok(()),
                Ok(Some((op, n))) => {
                    used += n;
                    match self.handle(op, wire) {
                        Ok(up) => upgrade |= up,
                        Err(e) => break Err(e),
                    }
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        received.drain(..used);
        self.received = received;
        result.map(|()| upgrade)
    }

    fn handle(&mut self, op: ServerOp<'_>, wire: &mut Wire) -> Result<bool, String> {
        match op {
            ServerOp::Info(json) if self.phase == Phase::Info => return self.hello(json, wire),
            ServerOp::Info(_) | ServerOp::Ok => {}
            // One unsent PONG answers any number of PINGs (the server
            // only counts PINGs not answered since the last PONG), so a
            // server that sends PINGs and never reads cannot grow `wire`.
            ServerOp::Ping if self.pong.is_some() && self.pong == wire.unsent_end() => {}
            ServerOp::Ping => {
                encode_pong(wire.buf());
                self.pong = wire.unsent_end();
            }
            ServerOp::Pong if self.phase == Phase::Pong => {
                self.phase = Phase::Ready;
                self.resend(wire);
            }
            ServerOp::Pong => {}
            ServerOp::Err(text) => return Err(format!("server error: {}", printable(text))),
            ServerOp::Msg(msg) => {
                let Some(seq) = self.publisher.ack_seq(msg.subject) else {
                    return Ok(false);
                };
                match parse_ack(&msg) {
                    AckResult::Ok { .. } => self.ack(seq),
                    AckResult::Err(e) => return Err(format!("JetStream refused a message: {e}")),
                    AckResult::NoResponders => {
                        return Err(format!(
                            "no JetStream stream captures subject {:?}",
                            self.subject
                        ))
                    }
                }
            }
        }
        Ok(false)
    }

    /// INFO: answer with CONNECT, the inbox subscription and a PING.
    fn hello(&mut self, json: &[u8], wire: &mut Wire) -> Result<bool, String> {
        let info = parse_info(json)?;
        self.max_payload = usize::try_from(info.max_payload)
            .unwrap_or(MAX_PAYLOAD)
            .clamp(1, MAX_PAYLOAD);
        let creds = self.creds.as_ref();
        let sig = match (creds, &info.nonce) {
            (Some(creds), Some(nonce)) => creds.sign(nonce)?,
            _ => String::new(),
        };
        let auth = match (creds, &self.auth) {
            (Some(creds), _) => Auth::Jwt {
                jwt: creds.jwt(),
                sig: &sig,
            },
            (None, UrlAuth::UserPass { user, pass }) => Auth::UserPass { user, pass },
            (None, UrlAuth::Token(token)) => Auth::Token(token),
            (None, UrlAuth::None) => Auth::None,
        };
        let name = format!("fifo-broker {}", self.publisher.token());
        let connect = Connect {
            name: &name,
            version: env!("CARGO_PKG_VERSION"),
            tls_required: self.tls,
            auth,
        };
        encode_connect(&connect, wire.buf());
        self.publisher.encode_sub(INBOX_SID, wire.buf());
        encode_ping(wire.buf());
        self.phase = Phase::Pong;
        Ok(self.tls || info.tls_required)
    }

    fn ack(&mut self, seq: u64) {
        if let Some(i) = self.unacked.iter().position(|m| m.seq == seq) {
            if let Some(done) = self.unacked.remove(i) {
                self.in_flight -= done.record.len();
                if done.record.capacity() <= SPARE_BYTES {
                    self.spare.push(done.record);
                }
                self.acked += 1;
            }
        }
    }

    /// A new session: every unacknowledged message again, same ids.
    fn resend(&mut self, wire: &mut Wire) {
        let now = Instant::now();
        for i in 0..self.unacked.len() {
            let (seq, record) = (
                self.unacked[i].seq,
                std::mem::take(&mut self.unacked[i].record),
            );
            self.publish(seq, &record, wire);
            self.unacked[i].record = record;
            self.unacked[i].sent_at = now;
        }
    }

    /// Moves records from the outbox into the window, as HPUBs in `wire`.
    pub(super) fn fill(&mut self, core: &mut Core, wire: &mut Wire) {
        if self.phase != Phase::Ready {
            return;
        }
        let mut too_large = 0;
        let max_in_flight = core.outbox.capacity();
        let _ = core.outbox.flush(|records| {
            let mut used = 0;
            for end in memchr::memchr_iter(b'\n', records) {
                let record = &records[used..=end];
                let window_full = self.unacked.len() >= self.window
                    || (!self.unacked.is_empty() && self.in_flight + record.len() > max_in_flight);
                if window_full || wire.is_full() {
                    break;
                }
                used = end + 1;
                let (_, _, line) = split_record(record);
                let payload = line.len() - usize::from(line.ends_with(b"\n"));
                if payload + self.publisher.max_header_len() > self.max_payload {
                    too_large += 1;
                    continue;
                }
                self.seq += 1;
                self.publish(self.seq, record, wire);
                let mut copy = self.spare.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(record);
                self.in_flight += copy.len();
                self.unacked.push_back(Unacked {
                    seq: self.seq,
                    record: copy,
                    sent_at: Instant::now(),
                });
            }
            Ok(used)
        });
        if too_large > 0 {
            core.stats.errors += too_large;
            core.stats.discarded += too_large;
            core.stats.lines_out = core.stats.lines_out.saturating_sub(too_large);
            log::warn!(
                "forward {}: {too_large} lines over the server's max_payload \
                 ({} bytes) dropped",
                core.name,
                self.max_payload
            );
        }
    }

    /// One HPUB of `record` as message `seq`.
    fn publish(&mut self, seq: u64, record: &[u8], wire: &mut Wire) {
        let (_, input, line) = split_record(record);
        let payload = line.strip_suffix(b"\n").unwrap_or(line);
        self.subject_buf.clear();
        let mut pieces = self.subject.split("{input}");
        if let Some(first) = pieces.next() {
            self.subject_buf.push_str(first);
        }
        for piece in pieces {
            self.subject_buf.push_str(input);
            self.subject_buf.push_str(piece);
        }
        self.publisher
            .encode_publish(&self.subject_buf, seq, payload, wire.buf());
        wire.end_message();
    }
}

/// Reads a `.creds` file (when the forward is made, never in the loop).
fn read_creds(path: &std::path::Path) -> Result<Creds, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Creds::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// 16 bytes from the kernel's random source, for a forward's token.
fn random_bytes() -> io::Result<[u8; 16]> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}
