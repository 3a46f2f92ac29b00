//! The NATS client protocol, as much of it as publishing to JetStream
//! takes: CONNECT, HPUB, SUB, PING and PONG out; INFO, MSG/HMSG, PING, PONG,
//! `+OK` and `-ERR` in; PubAcks, INFO and `.creds` files interpreted.
//!
//! Everything the server sends is untrusted. The parser works in two steps
//! like mini-redis' `frame.rs` — [`check`] whether a whole operation is
//! buffered (not yet is `Ok(None)`, not an error), [`parse`] it into a
//! [`ServerOp`] borrowing the buffer — and, like nats-server's `parser.go`,
//! bounds every field before anything is allocated: a control line longer
//! than [`MAX_CONTROL_LINE`] ([`MAX_INFO_LINE`] for INFO) or a payload
//! larger than [`MAX_PAYLOAD`] is [`Malformed`]. Nothing here may do I/O,
//! panic on any input, or allocate per published line: encoders append to a
//! caller's buffer.
//!
//! A forward's messages are named by a [`Publisher`]: message `seq` is
//! published with reply subject `_INBOX.<token>.<seq>` and header
//! `Nats-Msg-Id: <token>-<seq>`, where the token is 22 random base62
//! characters drawn once per forward and process. The PubAck for it comes
//! back as a MSG on that reply subject ([`Publisher::ack_seq`]); a re-send
//! after a reconnect reuses the id, so JetStream's duplicate window drops
//! the copy.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::push_decimal;

/// Longest control line accepted from the server, `\r\n` included (the
/// server's own default `max_control_line`).
pub const MAX_CONTROL_LINE: usize = 4096;
/// Longest INFO line accepted: INFO carries cluster URLs and can outgrow
/// [`MAX_CONTROL_LINE`].
pub const MAX_INFO_LINE: usize = 64 * 1024;
/// Largest MSG/HMSG payload (headers included) accepted. PubAcks are tiny;
/// this only has to be generous.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Longest subject a forward may publish to, so that an HPUB control line
/// always fits in the server's 4096 bytes.
pub const MAX_SUBJECT: usize = 1024;
/// Largest `.creds` file [`Creds::parse`] reads.
pub const MAX_CREDS: usize = 64 * 1024;
/// Longest server text (an `-ERR` or a JetStream error description) that
/// [`printable`] keeps.
const MAX_TEXT: usize = 256;
/// Decimal digits a sid, size or sequence number may have (those of
/// `u64::MAX`); sizes are then bounded by [`MAX_PAYLOAD`].
const MAX_NUMBER_DIGITS: usize = 20;

/// Most words a control line may have (`HMSG subject sid reply hdr total`).
const MAX_ARGS: usize = 6;

// ---------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------

/// How the client proves who it is in CONNECT.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    /// No credentials.
    None,
    /// `user` and `pass` (from `nats://user:pass@`).
    UserPass {
        /// User name.
        user: &'a str,
        /// Password.
        pass: &'a str,
    },
    /// `auth_token` (from `nats://token@`).
    Token(&'a str),
    /// A user JWT and the server's nonce signed with its nkey seed (from a
    /// `.creds` file; see [`Creds`]).
    Jwt {
        /// The user JWT.
        jwt: &'a str,
        /// base64url of the ed25519 signature of the INFO nonce.
        sig: &'a str,
    },
}

impl fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::UserPass { .. } => "UserPass(<redacted>)",
            Auth::Token(_) => "Token(<redacted>)",
            Auth::Jwt { .. } => "Jwt(<redacted>)",
        })
    }
}

/// What CONNECT says besides the fixed options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Connection name shown by the server (`nats server report
    /// connections`), e.g. `fifo-broker central`.
    pub name: &'a str,
    /// The client's version (the crate's).
    pub version: &'a str,
    /// Whether the connection is TLS.
    pub tls_required: bool,
    /// Credentials.
    pub auth: Auth<'a>,
}

/// CONNECT's JSON; `None` fields are left out.
#[derive(Serialize)]
struct ConnectJson<'a> {
    verbose: bool,
    pedantic: bool,
    tls_required: bool,
    name: &'a str,
    lang: &'a str,
    version: &'a str,
    /// 1: the server may send INFO updates; headers need it.
    protocol: u8,
    headers: bool,
    no_responders: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sig: Option<&'a str>,
}

/// Appends `CONNECT {json}\r\n`: not verbose (no `+OK` per operation),
/// headers on, and "no responders" on, so a publish that no stream
/// captures is answered with a 503 status instead of silence.
pub fn encode_connect(connect: &Connect<'_>, out: &mut Vec<u8>) {
    let (mut user, mut pass, mut auth_token, mut jwt, mut sig) = (None, None, None, None, None);
    match connect.auth {
        Auth::None => {}
        Auth::UserPass { user: u, pass: p } => (user, pass) = (Some(u), Some(p)),
        Auth::Token(t) => auth_token = Some(t),
        Auth::Jwt { jwt: j, sig: s } => (jwt, sig) = (Some(j), Some(s)),
    }
    let json = ConnectJson {
        verbose: false,
        pedantic: false,
        tls_required: connect.tls_required,
        name: connect.name,
        lang: "rust",
        version: connect.version,
        protocol: 1,
        headers: true,
        no_responders: true,
        user,
        pass,
        auth_token,
        jwt,
        sig,
    };
    out.extend_from_slice(b"CONNECT ");
    // Serializing strings and bools into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &json);
    out.extend_from_slice(b"\r\n");
}

/// Appends `PING\r\n`.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

/// Appends `PONG\r\n` (the answer to the server's PING).
pub fn encode_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(PONG);
}

/// The PONG a client answers a PING with.
pub const PONG: &[u8] = b"PONG\r\n";

/// Appends `SUB subject sid\r\n`.
#[allow(dead_code)] // the decoder side: used by tests and the fuzz targets
pub fn encode_sub(subject: &str, sid: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
}

/// Appends `HPUB subject reply hdr_len total_len\r\n` followed by the
/// headers `NATS/1.0\r\nNats-Msg-Id: ID\r\n\r\n`, the payload and `\r\n`.
/// `subject` must have passed [`check_subject`]; `reply` and `msg_id` must
/// hold no whitespace (a [`Publisher`]'s never do).
pub fn encode_hpub(subject: &str, reply: &[u8], msg_id: &[u8], payload: &[u8], out: &mut Vec<u8>) {
    const HEAD: &[u8] = b"NATS/1.0\r\nNats-Msg-Id: ";
    const TAIL: &[u8] = b"\r\n\r\n";
    let hdr_len = HEAD.len() + msg_id.len() + TAIL.len();
    out.extend_from_slice(b"HPUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(reply);
    out.push(b' ');
    push_decimal(out, hdr_len as u64);
    out.push(b' ');
    push_decimal(out, (hdr_len + payload.len()) as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(HEAD);
    out.extend_from_slice(msg_id);
    out.extend_from_slice(TAIL);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Checks a subject to publish to: 1..=1024 bytes of dot-separated
/// non-empty tokens, no whitespace or control characters, no wildcards.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    if subject.len() > MAX_SUBJECT {
        return Err(format!("the subject is longer than {MAX_SUBJECT} bytes"));
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "subject {subject:?} contains whitespace or a control character"
        ));
    }
    if subject.split('.').any(str::is_empty) {
        return Err(format!(
            "subject {subject:?} has an empty token (a leading, trailing or doubled '.')"
        ));
    }
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return Err(format!(
            "subject {subject:?} has a wildcard; a publish subject must be literal"
        ));
    }
    Ok(())
}

/// Names the messages of one forward: reply subjects and `Nats-Msg-Id`s
/// from a random token and a sequence number.
#[derive(Clone, PartialEq, Eq)]
pub struct Publisher {
    /// 22 base62 characters from 128 random bits: unique across restarts,
    /// instances and forwards.
    token: String,
    /// `_INBOX.<token>.`, the prefix of every reply subject.
    inbox: String,
    /// `<token>-`, the prefix of every `Nats-Msg-Id`.
    id_prefix: String,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Publisher({})", self.token)
    }
}

impl Publisher {
    /// A publisher named by 16 random bytes (e.g. from `getrandom`); give
    /// every forward its own.
    pub fn new(random: [u8; 16]) -> Publisher {
        const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut n = u128::from_le_bytes(random);
        let token: String = (0..22)
            .map(|_| {
                let c = BASE62[(n % 62) as usize] as char;
                n /= 62;
                c
            })
            .collect();
        Publisher {
            inbox: format!("_INBOX.{token}."),
            id_prefix: format!("{token}-"),
            token,
        }
    }

    /// The random token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Appends `SUB _INBOX.<token>.* sid\r\n`, the subscription every
    /// PubAck of this publisher arrives on.
    pub fn encode_sub(&self, sid: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"SUB ");
        out.extend_from_slice(self.inbox.as_bytes());
        out.extend_from_slice(b"* ");
        push_decimal(out, sid);
        out.extend_from_slice(b"\r\n");
    }

    /// The most header bytes [`Publisher::encode_publish`] puts before a
    /// payload (`NATS/1.0`, the `Nats-Msg-Id` of the longest `seq`):
    /// the server's `max_payload` counts headers and payload together.
    pub fn max_header_len(&self) -> usize {
        b"NATS/1.0\r\nNats-Msg-Id: ".len() + self.id_prefix.len() + 20 + b"\r\n\r\n".len()
    }

    /// Appends the HPUB of message `seq`: reply `_INBOX.<token>.<seq>`,
    /// `Nats-Msg-Id: <token>-<seq>`. Allocates nothing but `out`'s growth.
    pub fn encode_publish(&self, subject: &str, seq: u64, payload: &[u8], out: &mut Vec<u8>) {
        let mut reply = [0u8; 64];
        let reply = join(self.inbox.as_bytes(), seq, &mut reply);
        let mut id = [0u8; 64];
        let id = join(self.id_prefix.as_bytes(), seq, &mut id);
        encode_hpub(subject, reply, id, payload, out);
    }

    /// The `seq` a PubAck is for, from the subject it arrived on; `None` if
    /// the subject is not one of this publisher's reply subjects.
    pub fn ack_seq(&self, subject: &[u8]) -> Option<u64> {
        let digits = subject.strip_prefix(self.inbox.as_bytes())?;
        parse_number(digits)
    }
}

/// `prefix` followed by `n` in decimal, in `buf` (cut to its size).
fn join<'b>(prefix: &[u8], n: u64, buf: &'b mut [u8]) -> &'b [u8] {
    let mut digits = [0u8; 20];
    let digits = super::decimal(n, &mut digits);
    let len = (prefix.len() + digits.len()).min(buf.len());
    let p = prefix.len().min(len);
    buf[..p].copy_from_slice(&prefix[..p]);
    buf[p..len].copy_from_slice(&digits[..len - p]);
    &buf[..len]
}

// ---------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------

/// The server sent something that is not the protocol or breaks a bound;
/// the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply from the NATS server: {0}")]
pub struct Malformed(pub &'static str);

/// One operation from the server, borrowing the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO {json}`: the JSON (see [`parse_info`]).
    Info(&'a [u8]),
    /// `MSG` or `HMSG`.
    Msg(Msg<'a>),
    /// `PING`: answer with [`encode_pong`].
    Ping,
    /// `PONG`: the answer to our PING.
    Pong,
    /// `+OK` (only in verbose mode, which we do not ask for).
    Ok,
    /// `-ERR 'text'`: the text without its quotes (see [`printable`]).
    Err(&'a [u8]),
}

/// A message delivered on one of our subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    /// The subject it was published to (for a PubAck: our reply subject).
    pub subject: &'a [u8],
    /// Our subscription id.
    pub sid: u64,
    /// Where the sender wants an answer, if anywhere.
    pub reply: Option<&'a [u8]>,
    /// The header block (`NATS/1.0[ status]\r\n...\r\n\r\n`) of an HMSG.
    pub headers: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
}

/// How many bytes the first operation in `buf` takes, if it is all there.
/// `Ok(None)`: wait for more bytes. `Err`: close the connection.
#[allow(dead_code)] // the decoder side: used by tests and the fuzz targets
pub fn check(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    Ok(decode(buf)?.map(|(_, used)| used))
}

/// The first operation in `buf` and how many bytes it takes, if it is all
/// there. `Ok(None)`: wait for more bytes. `Err`: close the connection.
pub fn parse(buf: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, Malformed> {
    decode(buf)
}

fn decode(buf: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, Malformed> {
    let is_info = buf.len() >= 4 && buf[..4].eq_ignore_ascii_case(b"INFO");
    let limit = if is_info {
        MAX_INFO_LINE
    } else {
        MAX_CONTROL_LINE
    };
    let window = &buf[..buf.len().min(limit)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        return if buf.len() >= limit {
            Err(Malformed("control line too long"))
        } else {
            Ok(None)
        };
    };
    let line = &buf[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body_start = lf + 1;

    let op_len = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let (op, rest) = line.split_at(op_len);
    let rest = trim(rest);
    let bare = |op: ServerOp<'static>| {
        if rest.is_empty() {
            Ok(Some((op, body_start)))
        } else {
            Err(Malformed("unexpected arguments"))
        }
    };
    if op.eq_ignore_ascii_case(b"INFO") {
        if rest.is_empty() {
            return Err(Malformed("INFO without JSON"));
        }
        Ok(Some((ServerOp::Info(rest), body_start)))
    } else if op.eq_ignore_ascii_case(b"MSG") || op.eq_ignore_ascii_case(b"HMSG") {
        let with_headers = op.len() == 4;
        decode_msg(buf, rest, body_start, with_headers)
    } else if op.eq_ignore_ascii_case(b"PING") {
        bare(ServerOp::Ping)
    } else if op.eq_ignore_ascii_case(b"PONG") {
        bare(ServerOp::Pong)
    } else if op.eq_ignore_ascii_case(b"+OK") {
        bare(ServerOp::Ok)
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        let text = match rest {
            [b'\'', inner @ .., b'\''] => inner,
            other => other,
        };
        Ok(Some((ServerOp::Err(text), body_start)))
    } else {
        Err(Malformed("unknown operation"))
    }
}

/// The rest of a MSG (`subject sid [reply] size`) or HMSG (`subject sid
/// [reply] hdr_size total_size`) whose arguments are `args` and whose
/// payload starts at `body_start`.
fn decode_msg<'a>(
    buf: &'a [u8],
    args: &'a [u8],
    body_start: usize,
    with_headers: bool,
) -> Result<Option<(ServerOp<'a>, usize)>, Malformed> {
    let mut words: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
    let mut n = 0;
    for word in args
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
    {
        if n == MAX_ARGS {
            return Err(Malformed("too many arguments"));
        }
        words[n] = word;
        n += 1;
    }
    let sizes = if with_headers { 2 } else { 1 };
    let reply = match n.checked_sub(2 + sizes) {
        Some(0) => None,
        Some(1) => Some(words[2]),
        _ => return Err(Malformed("wrong number of arguments")),
    };
    let number = |w: &[u8]| parse_number(w).ok_or(Malformed("bad number"));
    let sid = number(words[1])?;
    let total = number(words[n - 1])?;
    let hdr = if with_headers {
        number(words[n - 2])?
    } else {
        0
    };
    if total > MAX_PAYLOAD as u64 {
        return Err(Malformed("payload too large"));
    }
    if hdr > total {
        return Err(Malformed("header size exceeds total size"));
    }
    let (total, hdr) = (total as usize, hdr as usize);
    let end = body_start + total;
    let Some(trailer) = buf.get(end..end + 2) else {
        return Ok(None);
    };
    if trailer != b"\r\n" {
        return Err(Malformed("payload not followed by CRLF"));
    }
    let body = &buf[body_start..end];
    let (headers, payload) = if with_headers {
        let (h, p) = body.split_at(hdr);
        (Some(h), p)
    } else {
        (None, body)
    };
    let msg = Msg {
        subject: words[0],
        sid,
        reply,
        headers,
        payload,
    };
    Ok(Some((ServerOp::Msg(msg), end + 2)))
}

/// A decimal u64 of 1..=20 digits.
fn parse_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > MAX_NUMBER_DIGITS {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else { return &[] };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &s[start..=end]
}

/// Server text fit for a log line: at most 256 characters, invalid UTF-8
/// and control characters replaced.
pub fn printable(text: &[u8]) -> String {
    String::from_utf8_lossy(&text[..text.len().min(MAX_TEXT * 4)])
        .chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The INFO fields a publisher needs; the rest is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    /// The server's unique id.
    pub server_id: String,
    /// Largest payload the server accepts (headers included).
    pub max_payload: u64,
    /// The server wants TLS.
    pub tls_required: bool,
    /// The server supports headers (HPUB/HMSG).
    pub headers: bool,
    /// The server wants credentials.
    pub auth_required: bool,
    /// What to sign with a `.creds` seed, when asked.
    pub nonce: Option<String>,
}

/// Reads INFO's JSON (at most [`MAX_INFO_LINE`] bytes when it comes from
/// [`parse`]).
pub fn parse_info(json: &[u8]) -> Result<ServerInfo, String> {
    serde_json::from_slice(json).map_err(|e| format!("bad INFO from the NATS server: {e}"))
}

/// What a PubAck says about one published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckResult {
    /// Stored as stream sequence `seq`; `duplicate` when the stream already
    /// had this `Nats-Msg-Id` (a re-send) and kept the first copy.
    Ok {
        /// Stream sequence number.
        seq: u64,
        /// Dropped as a duplicate of an earlier copy.
        duplicate: bool,
    },
    /// JetStream refused it, or the reply made no sense; the text is fit
    /// for a log line.
    Err(String),
    /// No stream captures the subject (status 503).
    NoResponders,
}

#[derive(Deserialize)]
struct PubAckJson {
    stream: Option<serde::de::IgnoredAny>,
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    code: Option<u64>,
    err_code: Option<u64>,
    description: Option<String>,
}

/// Interprets the reply to a JetStream publish.
pub fn parse_ack(msg: &Msg<'_>) -> AckResult {
    if let Some(headers) = msg.headers {
        let status_line = headers.split(|&b| b == b'\n').next().unwrap_or_default();
        let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
        let Some(status) = status_line.strip_prefix(b"NATS/1.0") else {
            return AckResult::Err("reply headers do not start with NATS/1.0".into());
        };
        let status = trim(status);
        if !status.is_empty() {
            let (code, text) = match status.iter().position(|&b| b == b' ') {
                Some(i) => (&status[..i], trim(&status[i..])),
                None => (status, &b""[..]),
            };
            if code == b"503" {
                return AckResult::NoResponders;
            }
            return AckResult::Err(format!("status {} {}", printable(code), printable(text)));
        }
    }
    let ack: PubAckJson = match serde_json::from_slice(msg.payload) {
        Ok(ack) => ack,
        Err(e) => return AckResult::Err(format!("bad PubAck: {e}")),
    };
    if let Some(err) = ack.error {
        let mut text = String::from("JetStream error");
        if let Some(code) = err.code {
            text.push_str(&format!(" {code}"));
        }
        if let Some(err_code) = err.err_code {
            text.push_str(&format!(" (err_code {err_code})"));
        }
        if let Some(d) = err.description {
            text.push_str(": ");
            text.push_str(&printable(d.as_bytes()));
        }
        return AckResult::Err(text);
    }
    match (ack.stream, ack.seq) {
        (Some(_), Some(seq)) => AckResult::Ok {
            seq,
            duplicate: ack.duplicate,
        },
        _ => AckResult::Err("PubAck without stream and seq".into()),
    }
}

// ---------------------------------------------------------------------------
// .creds files
// ---------------------------------------------------------------------------

/// A user's JWT and nkey from a `.creds` file (as `nsc` writes them).
#[derive(Clone)]
pub struct Creds {
    /// The user JWT, sent in CONNECT.
    jwt: String,
    /// The key pair from the seed, which signs the server's nonce.
    key: nkeys::KeyPair,
}

impl fmt::Debug for Creds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Creds(user {})", self.key.public_key())
    }
}

impl Creds {
    /// Reads the text of a `.creds` file: the JWT after
    /// `-----BEGIN NATS USER JWT-----` and the seed after
    /// `-----BEGIN USER NKEY SEED-----`. Errors never contain the seed.
    pub fn parse(text: &str) -> Result<Creds, String> {
        if text.len() > MAX_CREDS {
            return Err(format!(
                "a credentials file is at most {MAX_CREDS} bytes; this is not one"
            ));
        }
        let jwt = block(text, "NATS USER JWT")?;
        let seed = block(text, "USER NKEY SEED")?;
        let key = nkeys::KeyPair::from_seed(seed)
            .map_err(|_| "the USER NKEY SEED is not a valid nkey seed".to_owned())?;
        if !key.public_key().starts_with('U') {
            return Err("the NKEY SEED is not a user seed (SU...)".into());
        }
        Ok(Creds {
            jwt: jwt.to_owned(),
            key,
        })
    }

    /// The user JWT.
    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// The user's public nkey (`U...`), fit for logs.
    #[allow(dead_code)] // the decoder side: used by tests and the fuzz targets
    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// CONNECT's `sig`: the ed25519 signature of INFO's `nonce`, base64url
    /// without padding.
    pub fn sign(&self, nonce: &str) -> Result<String, String> {
        let sig = self
            .key
            .sign(nonce.as_bytes())
            .map_err(|e| format!("signing the server's nonce: {e}"))?;
        Ok(data_encoding::BASE64URL_NOPAD.encode(&sig))
    }
}

/// The first non-empty line after `-----BEGIN <label>-----`, which must be
/// followed by an END marker line.
fn block<'t>(text: &'t str, label: &str) -> Result<&'t str, String> {
    let mut lines = text.lines().map(str::trim);
    let begin = format!("-----BEGIN {label}-----");
    if !lines.any(|l| l == begin) {
        return Err(format!("no {begin} line"));
    }
    let mut rest = lines.skip_while(|l| l.is_empty());
    let value = rest.next().unwrap_or_default();
    let end_ok = rest
        .next()
        .is_some_and(|l| l.starts_with("---") && l.contains("END"));
    let charset_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='));
    if value.is_empty() || !end_ok || !charset_ok {
        return Err(format!("the {label} block is malformed"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(buf: &[u8]) -> (ServerOp<'_>, usize) {
        let parsed = parse(buf).expect("well-formed").expect("complete");
        assert_eq!(check(buf), Ok(Some(parsed.1)), "check agrees with parse");
        parsed
    }

    fn msg(buf: &[u8]) -> Msg<'_> {
        match op(buf).0 {
            ServerOp::Msg(m) => m,
            other => panic!("expected a MSG, got {other:?}"),
        }
    }

    fn malformed(buf: &[u8]) -> &'static str {
        match parse(buf) {
            Err(Malformed(why)) => why,
            other => panic!("expected Malformed for {:?}, got {other:?}", printable(buf)),
        }
    }

    #[test]
    fn golden_client_ops() {
        let mut out = Vec::new();
        encode_ping(&mut out);
        encode_pong(&mut out);
        encode_sub("_INBOX.abc.*", 7, &mut out);
        encode_hpub("FOO", b"_INBOX.x.1", b"id1", b"Hello NATS!", &mut out);
        encode_hpub("logs.a", b"r", b"i", b"", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PING\r\nPONG\r\nSUB _INBOX.abc.* 7\r\n\
             HPUB FOO _INBOX.x.1 30 41\r\nNATS/1.0\r\nNats-Msg-Id: id1\r\n\r\nHello NATS!\r\n\
             HPUB logs.a r 28 28\r\nNATS/1.0\r\nNats-Msg-Id: i\r\n\r\n\r\n"
        );
    }

    #[test]
    fn hpub_sizes_match_what_the_server_parses() {
        // Our HPUB, replayed as the HMSG the server would deliver, must
        // split into exactly our headers and payload.
        let mut out = Vec::new();
        encode_hpub("s", b"r", b"abc-1", b"pay\r\nload", &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        let delivered = text.replacen("HPUB s r", "HMSG s 1 r", 1);
        let m = msg(delivered.as_bytes());
        assert_eq!(
            m.headers,
            Some(&b"NATS/1.0\r\nNats-Msg-Id: abc-1\r\n\r\n"[..])
        );
        assert_eq!(m.payload, b"pay\r\nload");
        assert_eq!(m.reply, Some(&b"r"[..]));
    }

    #[test]
    fn connect_json() {
        let json = |auth| {
            let mut out = Vec::new();
            encode_connect(
                &Connect {
                    name: "fifo-broker central",
                    version: "0.1.0",
                    tls_required: false,
                    auth,
                },
                &mut out,
            );
            let text = String::from_utf8(out).unwrap();
            let body = text
                .strip_prefix("CONNECT ")
                .and_then(|t| t.strip_suffix("\r\n"))
                .unwrap_or_else(|| panic!("not a CONNECT line: {text:?}"));
            assert!(!body.contains(['\r', '\n']), "{text:?}");
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        };
        assert_eq!(
            json(Auth::None),
            serde_json::json!({
                "verbose": false, "pedantic": false, "tls_required": false,
                "name": "fifo-broker central", "lang": "rust", "version": "0.1.0",
                "protocol": 1, "headers": true, "no_responders": true,
            })
        );
        let v = json(Auth::UserPass {
            user: "a\"b",
            pass: "p\\w",
        });
        assert_eq!(
            (v["user"].as_str(), v["pass"].as_str()),
            (Some("a\"b"), Some("p\\w"))
        );
        assert!(v.get("auth_token").is_none());
        let v = json(Auth::Token("tok"));
        assert_eq!(v["auth_token"], "tok");
        assert!(v.get("user").is_none());
        let v = json(Auth::Jwt {
            jwt: "eyJ.x.y",
            sig: "c2ln",
        });
        assert_eq!(
            (v["jwt"].as_str(), v["sig"].as_str()),
            (Some("eyJ.x.y"), Some("c2ln"))
        );
        assert_eq!(format!("{:?}", Auth::Token("tok")), "Token(<redacted>)");
    }

    #[test]
    fn publisher_names_messages() {
        let p = Publisher::new([0; 16]);
        assert_eq!(p.token(), "0000000000000000000000");
        let max = Publisher::new([0xff; 16]);
        assert_eq!(max.token().len(), 22);
        assert!(max.token().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(
            Publisher::new([1; 16]).token(),
            Publisher::new([2; 16]).token()
        );

        let mut out = Vec::new();
        p.encode_sub(1, &mut out);
        p.encode_publish("logs.alerts", 42, b"disk full", &mut out);
        let t = "0000000000000000000000";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "SUB _INBOX.{t}.* 1\r\n\
                 HPUB logs.alerts _INBOX.{t}.42 52 61\r\n\
                 NATS/1.0\r\nNats-Msg-Id: {t}-42\r\n\r\ndisk full\r\n"
            )
        );

        let mut out = Vec::new();
        max.encode_publish("s", u64::MAX, b"", &mut out);
        let reply = format!("_INBOX.{}.{}", max.token(), u64::MAX);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains(&format!(" {reply} ")));
        assert_eq!(max.ack_seq(reply.as_bytes()), Some(u64::MAX));

        let inbox = format!("_INBOX.{t}.");
        assert_eq!(p.ack_seq(format!("{inbox}7").as_bytes()), Some(7));
        for bad in [
            inbox.clone(),
            format!("{inbox}7x"),
            format!("{inbox}-1"),
            format!("{inbox}123456789012345678901"),
            "_INBOX.other.7".to_owned(),
            format!("_INBOX.{}.7", max.token()),
        ] {
            assert_eq!(p.ack_seq(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn subjects() {
        for ok in ["logs", "logs.alerts", "logs.my-input_1", "a.b.c.d"] {
            assert_eq!(check_subject(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("logs..a", "empty token"),
            (".logs", "empty token"),
            ("logs.", "empty token"),
            ("logs a", "whitespace"),
            ("logs\u{1}", "control"),
            ("logs.*", "wildcard"),
            ("logs.>", "wildcard"),
        ] {
            let err = check_subject(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(check_subject(&"a".repeat(1025))
            .unwrap_err()
            .contains("1024"));
        assert_eq!(check_subject(&"a".repeat(1024)), Ok(()));
    }

    #[test]
    fn server_ops_from_the_protocol_docs() {
        let info = b"INFO {\"server_id\":\"Zk0GQ3JBSrg3oyxCRRlE09\",\"version\":\"2.0.0\",\
                     \"proto\":1,\"go\":\"go1.11.10\",\"host\":\"0.0.0.0\",\"port\":4222,\
                     \"max_payload\":1048576,\"client_id\":2392}\r\n";
        let (parsed, used) = op(info);
        assert_eq!(used, info.len());
        let ServerOp::Info(json) = parsed else {
            panic!("expected INFO, got {parsed:?}")
        };
        assert_eq!(
            parse_info(json).unwrap(),
            ServerInfo {
                server_id: "Zk0GQ3JBSrg3oyxCRRlE09".into(),
                max_payload: 1048576,
                ..ServerInfo::default()
            }
        );

        let m = msg(b"MSG FOO.BAR 9 11\r\nHello World\r\n");
        assert_eq!(
            m,
            Msg {
                subject: b"FOO.BAR",
                sid: 9,
                reply: None,
                headers: None,
                payload: b"Hello World",
            }
        );
        let m = msg(b"MSG FOO.BAR 9 GREETING.34 11\r\nHello World\r\n");
        assert_eq!(
            (m.reply, m.payload),
            (Some(&b"GREETING.34"[..]), &b"Hello World"[..])
        );

        let m =
            msg(b"HMSG FOO.BAR 9 34 45\r\nNATS/1.0\r\nFoodGroup: vegetable\r\n\r\nHello World\r\n");
        assert_eq!(
            m.headers,
            Some(&b"NATS/1.0\r\nFoodGroup: vegetable\r\n\r\n"[..])
        );
        assert_eq!((m.sid, m.reply, m.payload), (9, None, &b"Hello World"[..]));
        let m = msg(b"HMSG FOO.BAR 9 BAZ.69 34 45\r\nNATS/1.0\r\nFoodGroup: vegetable\r\n\r\nHello World\r\n");
        assert_eq!(m.reply, Some(&b"BAZ.69"[..]));

        assert_eq!(op(b"PING\r\n"), (ServerOp::Ping, 6));
        assert_eq!(op(b"PONG\r\n"), (ServerOp::Pong, 6));
        assert_eq!(op(b"+OK\r\n"), (ServerOp::Ok, 5));
        assert_eq!(
            op(b"-ERR 'Unknown Protocol Operation'\r\n").0,
            ServerOp::Err(b"Unknown Protocol Operation")
        );
        assert_eq!(op(b"-ERR 'x\r\n").0, ServerOp::Err(b"'x"));
        assert_eq!(op(b"-ERR\r\n").0, ServerOp::Err(b""));
    }

    #[test]
    fn lenient_where_the_server_parser_is() {
        assert_eq!(op(b"ping\r\n").0, ServerOp::Ping);
        assert_eq!(op(b"Pong\n"), (ServerOp::Pong, 5));
        assert_eq!(op(b"+ok \r\n").0, ServerOp::Ok);
        let m = msg(b"msg\tFOO  9\t\t5 \r\nhello\r\n");
        assert_eq!(
            (m.subject, m.sid, m.payload),
            (&b"FOO"[..], 9, &b"hello"[..])
        );
        let m = msg(b"hmsg FOO 1 12 12\r\nNATS/1.0\r\n\r\n\r\n");
        assert_eq!(
            (m.headers, m.payload),
            (Some(&b"NATS/1.0\r\n\r\n"[..]), &b""[..])
        );
        assert_eq!(msg(b"MSG a 1 0\r\n\r\n").payload, b"");
    }

    #[test]
    fn several_ops_in_one_buffer() {
        let buf = b"PING\r\nMSG a 1 2\r\nhi\r\n-ERR 'x'\r\nPON";
        let mut rest = &buf[..];
        let mut seen = Vec::new();
        while let Some((parsed, used)) = parse(rest).unwrap() {
            seen.push(format!("{parsed:?}"));
            rest = &rest[used..];
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(rest, b"PON");
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let ops: [&[u8]; 6] = [
            b"INFO {\"server_id\":\"x\"}\r\n",
            b"MSG FOO.BAR 9 GREETING.34 11\r\nHello World\r\n",
            b"HMSG FOO.BAR 9 34 45\r\nNATS/1.0\r\nFoodGroup: vegetable\r\n\r\nHello World\r\n",
            b"PING\r\n",
            b"-ERR 'Authorization Violation'\r\n",
            b"+OK\r\n",
        ];
        for full in ops {
            for cut in 0..full.len() {
                let part = &full[..cut];
                // A prefix ending in the control line's \r\n may already
                // be a whole PING; everything else must wait.
                if let Ok(Some((_, used))) = parse(part) {
                    assert_eq!(used, full.len(), "{:?}", printable(part));
                }
                assert_eq!(check(part), Ok(None), "prefix {:?}", printable(part));
            }
            assert_eq!(check(full), Ok(Some(full.len())));
        }
    }

    #[test]
    fn bounds_are_checked_before_the_bytes_arrive() {
        // A control line without its \n: waiting is fine up to the bound.
        let long = vec![b'M'; MAX_CONTROL_LINE - 1];
        assert_eq!(check(&long), Ok(None));
        let too_long = vec![b'M'; MAX_CONTROL_LINE];
        assert_eq!(malformed(&too_long), "control line too long");
        let mut at_bound = b"-ERR '".to_vec();
        at_bound.resize(MAX_CONTROL_LINE - 2, b'x');
        at_bound.extend_from_slice(b"\r\n");
        assert!(matches!(op(&at_bound).0, ServerOp::Err(_)));
        at_bound.insert(6, b'x');
        assert_eq!(malformed(&at_bound), "control line too long");

        // INFO may be longer, up to its own bound.
        let mut info = b"INFO {\"server_id\":\"".to_vec();
        info.resize(MAX_INFO_LINE - 4, b'a');
        info.extend_from_slice(b"\"}\r\n");
        let ServerOp::Info(json) = op(&info).0 else {
            panic!("expected INFO")
        };
        assert_eq!(
            parse_info(json).unwrap().server_id.len(),
            MAX_INFO_LINE - 23
        );
        assert_eq!(check(&info[..MAX_INFO_LINE - 1]), Ok(None));
        info.insert(10, b'a');
        assert_eq!(malformed(&info), "control line too long");

        // A payload size over the bound is refused from the control line.
        let big = format!("MSG a 1 {}\r\n", MAX_PAYLOAD + 1);
        assert_eq!(malformed(big.as_bytes()), "payload too large");
        let ok = format!("MSG a 1 {}\r\n", MAX_PAYLOAD);
        assert_eq!(check(ok.as_bytes()), Ok(None));
        assert_eq!(
            malformed(b"HMSG a 1 2000000 2000001\r\n"),
            "payload too large"
        );
    }

    #[test]
    fn malformed_ops() {
        let cases: [(&[u8], &str); 19] = [
            (b"HELLO\r\n", "unknown operation"),
            (b"\r\n", "unknown operation"),
            (b"PINGX\r\n", "unknown operation"),
            (b"PING extra\r\n", "unexpected arguments"),
            (b"INFO\r\n", "INFO without JSON"),
            (b"INFO   \r\n", "INFO without JSON"),
            (b"MSG a 1\r\n", "wrong number of arguments"),
            (b"MSG a 1 r x 5\r\n", "wrong number of arguments"),
            (b"HMSG a 1 5\r\n", "wrong number of arguments"),
            (b"HMSG a 1 r s 5 5\r\n", "wrong number of arguments"),
            (b"MSG a 1 2 3 4 5 6\r\n", "too many arguments"),
            (b"MSG a 1 -5\r\n", "bad number"),
            (b"MSG a x 5\r\n", "bad number"),
            (b"MSG a 1 99999999999999999999\r\n", "bad number"),
            (b"MSG a 1 18446744073709551616\r\n", "bad number"),
            (b"MSG a 1 123456789012345678901\r\n", "bad number"),
            (b"HMSG a 1 6 5\r\n", "header size exceeds total size"),
            (b"MSG a 1 2\r\nhiXY", "payload not followed by CRLF"),
            (b"MSG a 1 2\r\nhi\n\r", "payload not followed by CRLF"),
        ];
        for (buf, why) in cases {
            assert_eq!(malformed(buf), why, "{:?}", printable(buf));
        }
        assert_eq!(
            malformed(b"MSG a 1 18446744073709551615\r\n"),
            "payload too large"
        );
    }

    #[test]
    fn info_fields() {
        let info = parse_info(
            br#"{"server_id":"S1","version":"2.9.10","max_payload":65536,"tls_required":true,
                "headers":true,"auth_required":true,"nonce":"abc_-","connect_urls":["x"],
                "jetstream":true,"proto":1}"#,
        )
        .unwrap();
        assert_eq!(
            info,
            ServerInfo {
                server_id: "S1".into(),
                max_payload: 65536,
                tls_required: true,
                headers: true,
                auth_required: true,
                nonce: Some("abc_-".into()),
            }
        );
        for bad in [
            &b"not json"[..],
            b"[1]",
            b"{\"max_payload\":-1}",
            b"{\"headers\":\"yes\"}",
        ] {
            let err = parse_info(bad).unwrap_err();
            assert!(err.starts_with("bad INFO from the NATS server: "), "{err}");
        }
    }

    fn ack(headers: Option<&[u8]>, payload: &[u8]) -> AckResult {
        parse_ack(&Msg {
            subject: b"_INBOX.t.1",
            sid: 1,
            reply: None,
            headers,
            payload,
        })
    }

    #[test]
    fn pub_acks() {
        assert_eq!(
            ack(None, br#"{"stream":"LOGS","seq":5}"#),
            AckResult::Ok {
                seq: 5,
                duplicate: false
            }
        );
        assert_eq!(
            ack(
                None,
                br#"{"stream":"LOGS","domain":"d","seq":5,"duplicate":true}"#
            ),
            AckResult::Ok {
                seq: 5,
                duplicate: true
            }
        );
        assert_eq!(
            ack(
                None,
                br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"LOGS"}"#
            ),
            AckResult::Err(
                "JetStream error 503 (err_code 10077): maximum messages exceeded".into()
            )
        );
        assert_eq!(
            ack(None, br#"{"error":{"description":"bad\nthing"}}"#),
            AckResult::Err("JetStream error: bad\u{fffd}thing".into())
        );
        assert_eq!(
            ack(Some(b"NATS/1.0 503\r\n\r\n"), b""),
            AckResult::NoResponders
        );
        assert_eq!(
            ack(Some(b"NATS/1.0 503 No Responders\r\n\r\n"), b""),
            AckResult::NoResponders
        );
        assert_eq!(
            ack(Some(b"NATS/1.0 408 Request Timeout\r\n\r\n"), b""),
            AckResult::Err("status 408 Request Timeout".into())
        );
        assert_eq!(
            ack(
                Some(b"NATS/1.0\r\nX: y\r\n\r\n"),
                br#"{"stream":"S","seq":1}"#
            ),
            AckResult::Ok {
                seq: 1,
                duplicate: false
            }
        );
        let err = |headers, payload| match ack(headers, payload) {
            AckResult::Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        assert!(err(Some(b"HTTP/1.1 200\r\n\r\n"), b"").contains("NATS/1.0"));
        assert!(err(None, b"").starts_with("bad PubAck"));
        assert!(err(None, b"+OK").starts_with("bad PubAck"));
        assert!(err(None, br#"{"seq":"x"}"#).starts_with("bad PubAck"));
        assert_eq!(
            err(None, br#"{"stream":"S"}"#),
            "PubAck without stream and seq"
        );
        assert_eq!(err(None, br#"{"seq":3}"#), "PubAck without stream and seq");
    }

    #[test]
    fn printable_text() {
        assert_eq!(
            printable(b"Authorization Violation"),
            "Authorization Violation"
        );
        assert_eq!(printable(b"a\x1b[31m\xffb"), "a\u{fffd}[31m\u{fffd}b");
        assert_eq!(printable(&[b'x'; 1000]).len(), 256);
    }

    /// A `.creds` file as `nsc generate creds` writes it.
    fn creds_text(jwt: &str, seed: &str) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        )
    }

    const JWT: &str = "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.eyJzdWIiOiJVIn0.c2ln-_";

    #[test]
    fn creds_parse_and_sign() {
        let user = nkeys::KeyPair::new_user();
        let seed = user.seed().unwrap();
        let creds = Creds::parse(&creds_text(JWT, &seed)).unwrap();
        assert_eq!(creds.jwt(), JWT);
        assert_eq!(creds.public_key(), user.public_key());
        assert!(!format!("{creds:?}").contains(&seed));

        let sig = creds.sign("nonce-from-INFO").unwrap();
        assert!(
            !sig.contains(['=', '+', '/']),
            "base64url without padding: {sig}"
        );
        let raw = data_encoding::BASE64URL_NOPAD
            .decode(sig.as_bytes())
            .unwrap();
        assert_eq!(raw.len(), 64);
        let public = nkeys::KeyPair::from_public_key(&user.public_key()).unwrap();
        public.verify(b"nonce-from-INFO", &raw).unwrap();
        assert!(public.verify(b"another nonce", &raw).is_err());

        // CRLF line ends and indentation are tolerated.
        let crlf = creds_text(JWT, &seed).replace('\n', "\r\n  ");
        assert_eq!(Creds::parse(&crlf).unwrap().jwt(), JWT);
    }

    #[test]
    fn creds_errors_never_show_the_seed() {
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let account_seed = nkeys::KeyPair::new_account().seed().unwrap();
        let mut bad_checksum = seed.clone().into_bytes();
        bad_checksum[10] = if bad_checksum[10] == b'A' { b'B' } else { b'A' };
        let bad_checksum = String::from_utf8(bad_checksum).unwrap();
        let cases = [
            (String::new(), "no -----BEGIN NATS USER JWT----- line"),
            (
                creds_text(JWT, &seed).replace("USER NKEY SEED-----\n", "SEED-----\n"),
                "no -----BEGIN USER NKEY SEED----- line",
            ),
            (creds_text("", &seed), "NATS USER JWT block is malformed"),
            (creds_text("a b", &seed), "NATS USER JWT block is malformed"),
            (
                creds_text(JWT, &seed).replace("------END USER NKEY SEED------", ""),
                "USER NKEY SEED block is malformed",
            ),
            (creds_text(JWT, "SUAA"), "not a valid nkey seed"),
            (creds_text(JWT, &bad_checksum), "not a valid nkey seed"),
            (creds_text(JWT, &account_seed), "not a user seed"),
            ("x".repeat(MAX_CREDS + 1), "at most 65536 bytes"),
        ];
        for (text, want) in cases {
            let err = Creds::parse(&text).unwrap_err();
            assert!(err.contains(want), "expected {want:?} in {err:?}");
            for secret in [&seed, &account_seed, &bad_checksum] {
                assert!(!err.contains(secret.as_str()), "{err}");
            }
        }
    }

    /// Deterministic pseudo-random bytes (xorshift), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn mutated_input_never_panics() {
        let seeds: [&[u8]; 5] = [
            b"INFO {\"server_id\":\"x\",\"nonce\":\"n\"}\r\nPING\r\n",
            b"MSG _INBOX.t.1 1 27\r\n{\"stream\":\"S\",\"seq\":1234}\r\n",
            b"HMSG _INBOX.t.2 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
            b"-ERR 'Maximum Payload Violation'\r\n+OK\r\nPONG\r\n",
            b"HMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        ];
        let alphabet = b" \t\r\n0123456789'{}\"-+MSGHINFOPONGERRK";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut buf = seeds[(rng.next() % seeds.len() as u64) as usize].to_vec();
            for _ in 0..=(rng.next() % 4) {
                let at = (rng.next() % buf.len() as u64) as usize;
                let b = if rng.next() % 2 == 0 {
                    alphabet[(rng.next() % alphabet.len() as u64) as usize]
                } else {
                    rng.next() as u8
                };
                match rng.next() % 3 {
                    0 => buf[at] = b,
                    1 => buf.insert(at, b),
                    _ => {
                        buf.remove(at);
                    }
                }
                if buf.is_empty() {
                    break;
                }
            }
            let mut rest = &buf[..];
            while let Ok(Some((parsed, used))) = parse(rest) {
                assert!(used > 0 && used <= rest.len());
                if let ServerOp::Msg(m) = parsed {
                    let _ = parse_ack(&m);
                }
                if let ServerOp::Info(json) = parsed {
                    let _ = parse_info(json);
                }
                rest = &rest[used..];
            }
        }
    }
}
