//! The `url` of a forward, parsed into an [`Endpoint`]: which protocol, which
//! host and port, and (for NATS) which credentials ride in the URL.
//!
//! This file only reads a string. It must never resolve a name, open a
//! socket, or put a password or token into an error message, `Debug` or
//! `Display` output: those end up in logs and `--check` output.
//!
//! Accepted forms:
//!
//! - `syslog+tcp://HOST[:PORT]` — port 514 when omitted (the customary
//!   syslog port; RFC 6587 names none for TCP).
//! - `syslog+tls://HOST[:PORT]` — port 6514 when omitted (RFC 5425).
//! - `nats://[USER:PASS@|TOKEN@]HOST[:PORT]` — port 4222 when omitted. The
//!   user, password and token may be percent-encoded (`%40` for `@`).
//! - `journal` — the local systemd journal.
//!
//! HOST is a DNS name, an IPv4 address, or an IPv6 address in brackets
//! (`[::1]`). The scheme is case-insensitive; a single trailing `/` is
//! allowed, any other path, query or fragment is not.

use std::fmt;
use std::net::Ipv6Addr;

/// Default port of `syslog+tcp://`.
pub const SYSLOG_TCP_PORT: u16 = 514;
/// Default port of `syslog+tls://` (RFC 5425).
pub const SYSLOG_TLS_PORT: u16 = 6514;
/// Default port of `nats://`.
pub const NATS_PORT: u16 = 4222;

/// Longest DNS name (RFC 1035, without the trailing dot).
const MAX_HOST: usize = 253;
/// Longest user, password or token taken from a URL (decoded).
const MAX_SECRET: usize = 4096;

/// Where a forward sends its lines.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// RFC 5424 messages over TCP or TLS, octet-counted (RFC 6587).
    Syslog {
        /// Plain TCP or TLS.
        transport: Transport,
        /// Name or address to connect to; an IPv6 address without brackets.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// JetStream publish over the NATS client protocol.
    Nats {
        /// Name or address to connect to; an IPv6 address without brackets.
        host: String,
        /// TCP port.
        port: u16,
        /// Credentials given in the URL itself.
        auth: UrlAuth,
    },
    /// The local systemd journal's native protocol.
    Journal,
}

/// How a syslog forward talks to its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `syslog+tcp://`
    Tcp,
    /// `syslog+tls://`
    Tls,
}

/// Credentials carried in a `nats://` URL.
#[derive(Clone, PartialEq, Eq)]
pub enum UrlAuth {
    /// No user information in the URL.
    None,
    /// `nats://USER:PASS@host`
    UserPass {
        /// The user name, percent-decoded.
        user: String,
        /// The password, percent-decoded.
        pass: String,
    },
    /// `nats://TOKEN@host`
    Token(String),
}

impl fmt::Debug for UrlAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlAuth::None => f.write_str("None"),
            UrlAuth::UserPass { user, .. } => write!(f, "UserPass({user:?}, <redacted>)"),
            UrlAuth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Nats { auth, .. } => write!(f, "Endpoint({self}, {auth:?})"),
            _ => write!(f, "Endpoint({self})"),
        }
    }
}

/// The URL as it can be logged: secrets replaced by `***`, ports explicit.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        match self {
            Endpoint::Syslog {
                transport,
                host: h,
                port,
            } => {
                let scheme = match transport {
                    Transport::Tcp => "syslog+tcp",
                    Transport::Tls => "syslog+tls",
                };
                write!(f, "{scheme}://{}:{port}", host(h))
            }
            Endpoint::Nats {
                host: h,
                port,
                auth,
            } => {
                let user = match auth {
                    UrlAuth::None => String::new(),
                    UrlAuth::UserPass { user, .. } => format!("{user}:***@"),
                    UrlAuth::Token(_) => "***@".to_owned(),
                };
                write!(f, "nats://{user}{}:{port}", host(h))
            }
            Endpoint::Journal => f.write_str("journal"),
        }
    }
}

impl Endpoint {
    /// Parses a forward's `url`, or says what is wrong with it (without
    /// repeating the URL, which may hold a password).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        if url == "journal" {
            return Ok(Endpoint::Journal);
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(
                "expected syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT, nats://HOST:PORT \
                 or journal"
                    .into(),
            );
        };
        let scheme = scheme.to_ascii_lowercase();
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(i) = rest.find(['/', '?', '#']) {
            let what = match rest.as_bytes()[i] {
                b'/' => "a path",
                b'?' => "a query",
                _ => "a fragment",
            };
            return Err(format!("{scheme}:// URLs may not have {what}"));
        }
        match scheme.as_str() {
            "syslog+tcp" | "syslog+tls" => {
                if rest.contains('@') {
                    return Err(format!("{scheme}:// takes no user information"));
                }
                let (transport, default) = if scheme == "syslog+tcp" {
                    (Transport::Tcp, SYSLOG_TCP_PORT)
                } else {
                    (Transport::Tls, SYSLOG_TLS_PORT)
                };
                let (host, port) = host_port(rest, default)?;
                Ok(Endpoint::Syslog {
                    transport,
                    host,
                    port,
                })
            }
            "nats" => {
                let (auth, hostport) = match rest.rsplit_once('@') {
                    None => (UrlAuth::None, rest),
                    Some((userinfo, hostport)) => (user_info(userinfo)?, hostport),
                };
                let (host, port) = host_port(hostport, NATS_PORT)?;
                Ok(Endpoint::Nats { host, port, auth })
            }
            "syslog" | "tcp" | "udp" | "syslog+udp" => Err(format!(
                "unsupported scheme {scheme}://; use syslog+tcp:// or syslog+tls://"
            )),
            "tls" => Err("unsupported scheme tls://; use nats:// with tls = true".into()),
            _ => Err(format!(
                "unknown scheme {scheme:?}; use syslog+tcp://, syslog+tls://, nats:// or journal"
            )),
        }
    }

    /// The host to connect to (an IPv6 address without brackets), if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            Endpoint::Syslog { host, .. } | Endpoint::Nats { host, .. } => Some(host),
            Endpoint::Journal => None,
        }
    }
}

/// Splits `HOST[:PORT]` / `[V6][:PORT]`, checking both parts.
fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = s.strip_prefix('[') {
        let Some((addr, after)) = bracketed.split_once(']') else {
            return Err("unclosed '[' in the host".into());
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{addr:?} in brackets is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the IPv6 address"))?,
            ),
        };
        (addr, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("an IPv6 address must be written in brackets, e.g. [::1]:514".into())
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if host.len() > MAX_HOST {
        return Err(format!("the host is longer than {MAX_HOST} characters"));
    }
    if !host.contains(':') {
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!("{c:?} is not allowed in a host name"));
        }
    }
    let port = match port {
        None => default_port,
        Some("") => return Err("the port after ':' is missing".into()),
        Some(p) => parse_port(p)?,
    };
    Ok((host.to_owned(), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {p:?} is not a number from 1 to 65535"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {p} is not a number from 1 to 65535")),
        Ok(n) => Ok(n),
    }
}

/// `USER:PASS` or `TOKEN` before the `@` of a `nats://` URL.
fn user_info(s: &str) -> Result<UrlAuth, String> {
    match s.split_once(':') {
        Some((user, pass)) => {
            let user = percent_decode(user, "user name")?;
            let pass = percent_decode(pass, "password")?;
            if user.is_empty() {
                return Err("the user name before ':' is empty".into());
            }
            Ok(UrlAuth::UserPass { user, pass })
        }
        None => {
            let token = percent_decode(s, "token")?;
            if token.is_empty() {
                return Err("the token before '@' is empty".into());
            }
            Ok(UrlAuth::Token(token))
        }
    }
}

/// Decodes `%XX` escapes; `what` names the part in errors, whose text
/// never contains the secret itself.
fn percent_decode(s: &str, what: &str) -> Result<String, String> {
    if s.len() > MAX_SECRET {
        return Err(format!("the {what} is longer than {MAX_SECRET} bytes"));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
                match (hex(bytes.next()), hex(bytes.next())) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(format!("bad %-escape in the {what}")),
                }
            }
            b'@' | b'/' | b'[' | b']' => {
                return Err(format!(
                    "the {what} contains {:?}; write it %-encoded",
                    b as char
                ))
            }
            b if b.is_ascii_control() || b == b' ' => {
                return Err(format!("the {what} contains a space or control character"))
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {what} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syslog(transport: Transport, host: &str, port: u16) -> Endpoint {
        Endpoint::Syslog {
            transport,
            host: host.into(),
            port,
        }
    }

    fn nats(host: &str, port: u16, auth: UrlAuth) -> Endpoint {
        Endpoint::Nats {
            host: host.into(),
            port,
            auth,
        }
    }

    #[test]
    fn syslog_urls() {
        let ok = [
            (
                "syslog+tcp://logs.example.com:514",
                syslog(Transport::Tcp, "logs.example.com", 514),
            ),
            (
                "syslog+tcp://10.0.0.1",
                syslog(Transport::Tcp, "10.0.0.1", 514),
            ),
            (
                "syslog+tls://logs.example.com",
                syslog(Transport::Tls, "logs.example.com", 6514),
            ),
            ("SYSLOG+TLS://h:10514/", syslog(Transport::Tls, "h", 10514)),
            (
                "syslog+tcp://[::1]:1514",
                syslog(Transport::Tcp, "::1", 1514),
            ),
            (
                "syslog+tls://[fe80::1]",
                syslog(Transport::Tls, "fe80::1", 6514),
            ),
        ];
        for (url, want) in ok {
            assert_eq!(Endpoint::parse(url), Ok(want), "{url}");
        }
    }

    #[test]
    fn nats_urls() {
        let ok = [
            ("nats://127.0.0.1", nats("127.0.0.1", 4222, UrlAuth::None)),
            ("nats://n1:4333", nats("n1", 4333, UrlAuth::None)),
            ("nats://[::1]", nats("::1", 4222, UrlAuth::None)),
            (
                "nats://s3cr3t@n1",
                nats("n1", 4222, UrlAuth::Token("s3cr3t".into())),
            ),
            (
                "nats://alice:p%40ss%3a@[2001:db8::2]:4000",
                nats(
                    "2001:db8::2",
                    4000,
                    UrlAuth::UserPass {
                        user: "alice".into(),
                        pass: "p@ss:".into(),
                    },
                ),
            ),
            (
                "nats://bob:@n1",
                nats(
                    "n1",
                    4222,
                    UrlAuth::UserPass {
                        user: "bob".into(),
                        pass: String::new(),
                    },
                ),
            ),
        ];
        for (url, want) in ok {
            assert_eq!(Endpoint::parse(url), Ok(want), "{url}");
        }
    }

    #[test]
    fn journal() {
        assert_eq!(Endpoint::parse("journal"), Ok(Endpoint::Journal));
        assert_eq!(Endpoint::Journal.to_string(), "journal");
        assert_eq!(Endpoint::Journal.host(), None);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let bad = [
            ("", "expected syslog+tcp://"),
            ("logs.example.com:514", "expected syslog+tcp://"),
            ("http://h:80", "unknown scheme \"http\""),
            ("syslog://h", "use syslog+tcp://"),
            ("syslog+udp://h", "use syslog+tcp://"),
            ("tls://h", "nats:// with tls = true"),
            ("syslog+tcp://", "host is missing"),
            ("syslog+tcp://:514", "host is missing"),
            ("syslog+tcp://h:", "port after ':' is missing"),
            ("syslog+tcp://h:0", "port 0 is not a number"),
            ("syslog+tcp://h:65536", "port 65536 is not"),
            ("syslog+tcp://h:99999999", "is not a number"),
            ("syslog+tcp://h:+1", "is not a number"),
            ("syslog+tcp://h:x", "is not a number"),
            ("syslog+tcp://h/x", "may not have a path"),
            ("nats://h?x=1", "may not have a query"),
            ("nats://h#f", "may not have a fragment"),
            ("syslog+tcp://u@h", "no user information"),
            ("syslog+tcp://::1:514", "must be written in brackets"),
            ("syslog+tcp://[::1", "unclosed '['"),
            ("syslog+tcp://[nope]:1", "is not an IPv6 address"),
            ("syslog+tcp://[::1]x", "after the IPv6 address"),
            ("syslog+tcp://h st", "' ' is not allowed in a host"),
            ("nats://@h", "token before '@' is empty"),
            ("nats://:pw@h", "user name before ':' is empty"),
            ("nats://a:b%zz@h", "bad %-escape in the password"),
            ("nats://a:b%4@h", "bad %-escape in the password"),
            ("nats://a:%ff@h", "not UTF-8"),
        ];
        for (url, want) in bad {
            let err = Endpoint::parse(url).expect_err(url);
            assert!(err.contains(want), "{url}: expected {want:?} in {err:?}");
        }
        let long = format!("syslog+tcp://{}:1", "a".repeat(254));
        assert!(Endpoint::parse(&long)
            .unwrap_err()
            .contains("longer than 253"));
    }

    #[test]
    fn secrets_never_show() {
        for url in [
            "nats://alice:hunter2@h:1",
            "nats://hunter2@h",
            "nats://a:hunter2%zz@h",
        ] {
            let shown = match Endpoint::parse(url) {
                Ok(e) => format!("{e} {e:?}"),
                Err(e) => e,
            };
            assert!(!shown.contains("hunter2"), "{url} shown as {shown}");
        }
        let e = Endpoint::parse("nats://alice:hunter2@[::1]").unwrap();
        assert_eq!(e.to_string(), "nats://alice:***@[::1]:4222");
        assert_eq!(
            Endpoint::parse("syslog+tls://h").unwrap().to_string(),
            "syslog+tls://h:6514"
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        for url in [
            "nats://@",
            "nats://%",
            "nats://[",
            "nats://]",
            "nats://[]:",
            "syslog+tcp://[::1]:",
            "://",
            "nats:///",
            "nats://a@b@c",
            "nats://\u{e9}",
            "nats://h:\u{e9}",
        ] {
            let _ = Endpoint::parse(url);
        }
    }
}
