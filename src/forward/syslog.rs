//! RFC 5424 syslog messages in RFC 6587 octet-counting frames, for the
//! `syslog+tcp://` and `syslog+tls://` forwards.
//!
//! [`SyslogFormat`] holds what is fixed per forward (PRI, HOSTNAME, the
//! APP-NAME template, PROCID), checked and sanitized once; its
//! [`encode`](SyslogFormat::encode) appends one frame per line to a
//! caller's buffer with no allocation of its own. [`split_frames`] is the
//! reverse, for tests and fuzzing. Nothing here may do I/O or panic, and the
//! MSG part is never altered: it is the line without its `\n`, bytes as read.

use std::fmt;

use super::{decimal, push_decimal};

/// RFC 5424 §6.2.4: HOSTNAME is at most 255 PRINTUSASCII characters.
pub const MAX_HOSTNAME: usize = 255;
/// RFC 5424 §6.2.5: APP-NAME is at most 48 PRINTUSASCII characters.
pub const MAX_APP_NAME: usize = 48;
/// RFC 5424 §6.2.6: PROCID is at most 128 PRINTUSASCII characters.
const MAX_PROCID: usize = 128;
/// RFC 5424 §6.2.3: a TIMESTAMP is at most 32 characters
/// (`1985-04-12T19:20:50.123456-04:00`).
const MAX_TIMESTAMP: usize = 32;
/// The largest LEN [`split_frames`] accepts.
#[allow(dead_code)] // the decoder side: used by tests and the fuzz targets
pub const MAX_FRAME_LEN: usize = 16 << 20;
/// Decimal digits of [`MAX_FRAME_LEN`]: a longer LEN is malformed even
/// before its space arrives.
#[allow(dead_code)] // the decoder side: used by tests and the fuzz targets
const MAX_LEN_DIGITS: usize = 8;

/// What the `{input}` placeholder of `app_name` stands for.
const INPUT_PLACEHOLDER: &str = "{input}";

/// A syslog facility (RFC 5424 §6.2.1), 0..=23.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(u8);

/// Facility names as syslog.conf(5) and rsyslog spell them, with their codes.
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("security", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("audit", 13),
    ("console", 14),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl Default for Facility {
    fn default() -> Facility {
        Facility::USER
    }
}

impl Facility {
    /// `user`, the default.
    pub const USER: Facility = Facility(1);

    /// Parses a facility name (case-insensitive), or lists the valid ones.
    pub fn parse(name: &str) -> Result<Facility, String> {
        let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
        code_of(FACILITIES, name, "facility", &names.join(", ")).map(Facility)
    }

    /// The numeric code, 0..=23.
    pub fn code(self) -> u8 {
        self.0
    }
}

/// The code `name` has in `table` (case-insensitive), or a message that
/// lists `names`.
fn code_of(table: &[(&str, u8)], name: &str, what: &str, names: &str) -> Result<u8, String> {
    (table.iter())
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, code)| code)
        .ok_or_else(|| format!("unknown {what} {name:?}; use one of {names}"))
}

/// A syslog severity (RFC 5424 §6.2.1), 0 (emerg) ..= 7 (debug); also the
/// journal's `PRIORITY=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Severity(u8);

/// Severity names and their common aliases, with their codes.
const SEVERITIES: &[(&str, u8)] = &[
    ("emerg", 0),
    ("panic", 0),
    ("alert", 1),
    ("crit", 2),
    ("err", 3),
    ("error", 3),
    ("warning", 4),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

impl Default for Severity {
    fn default() -> Severity {
        Severity::NOTICE
    }
}

impl Severity {
    /// `notice`, the default.
    pub const NOTICE: Severity = Severity(5);

    /// Parses a severity name (case-insensitive), or lists the valid ones.
    pub fn parse(name: &str) -> Result<Severity, String> {
        let names = "emerg, alert, crit, err, warning, notice, info, debug";
        code_of(SEVERITIES, name, "severity", names).map(Severity)
    }

    /// The numeric code, 0..=7.
    pub fn code(self) -> u8 {
        self.0
    }
}

/// The header fields of every message a syslog forward sends.
#[derive(Clone, PartialEq, Eq)]
pub struct SyslogFormat {
    /// PRI: facility * 8 + severity (at most 191).
    pri: u8,
    /// HOSTNAME, sanitized: 1..=255 PRINTUSASCII bytes (`-` when empty).
    hostname: String,
    /// APP-NAME template split at each `{input}`; the pieces are already
    /// sanitized, so only the input's name needs checking per batch.
    app_name: Vec<String>,
    /// PROCID: the daemon's pid, in decimal.
    procid: String,
}

impl fmt::Debug for SyslogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SyslogFormat(<{}>1 {} {} {})",
            self.pri,
            self.hostname,
            self.app_name.join(INPUT_PLACEHOLDER),
            self.procid
        )
    }
}

impl SyslogFormat {
    /// Builds the header fields. `hostname` and `app_name` are sanitized as
    /// RFC 5424 asks (each character outside `!`..`~` becomes `_`, then cut
    /// to 255 and 48 characters; empty becomes `-`); every `{input}` in
    /// `app_name` stands for the input's name, the rest is taken literally.
    pub fn new(
        facility: Facility,
        severity: Severity,
        hostname: &str,
        app_name: &str,
        procid: u32,
    ) -> SyslogFormat {
        let mut hostname: String = hostname.chars().map(printable).take(MAX_HOSTNAME).collect();
        if hostname.is_empty() {
            hostname.push('-');
        }
        let app_name = app_name
            .split(INPUT_PLACEHOLDER)
            .map(|piece| piece.chars().map(printable).take(MAX_APP_NAME).collect())
            .collect();
        SyslogFormat {
            pri: facility.code() * 8 + severity.code(),
            hostname,
            app_name,
            procid: procid.to_string(),
        }
    }

    /// Appends one frame per line of `lines` to `out`:
    /// `LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG`, where MSG
    /// is the line without its `\n` and LEN the byte length of what follows
    /// the space. `lines` holds complete lines, each ending in `\n`; a
    /// trailing piece without one is sent as a line too. `timestamp` is
    /// written as given if it is 1..=32 PRINTUSASCII bytes (RFC 3339 with
    /// microseconds is 27), else as `-`. Returns the number of messages.
    pub fn encode(&self, lines: &[u8], input: &str, timestamp: &str, out: &mut Vec<u8>) -> u64 {
        let mut app = [0u8; MAX_APP_NAME];
        let app = self.render_app_name(input, &mut app);
        let timestamp = match timestamp.as_bytes() {
            t if (1..=MAX_TIMESTAMP).contains(&t.len())
                && t.iter().all(|&b| is_printusascii(b)) =>
            {
                t
            }
            _ => b"-",
        };
        let mut pri = [0u8; 20];
        let pri = decimal(u64::from(self.pri), &mut pri);
        let procid = &self.procid.as_bytes()[..self.procid.len().min(MAX_PROCID)];
        // "<" PRI ">1 " TIMESTAMP " " HOSTNAME " " APP-NAME " " PROCID " - - "
        let header_len = 1
            + pri.len()
            + 3
            + timestamp.len()
            + 1
            + self.hostname.len()
            + 1
            + app.len()
            + 1
            + procid.len()
            + 5;
        let mut messages = 0;
        for line in lines.split_inclusive(|&b| b == b'\n') {
            let msg = line.strip_suffix(b"\n").unwrap_or(line);
            push_decimal(out, (header_len + msg.len()) as u64);
            out.extend_from_slice(b" <");
            out.extend_from_slice(pri);
            out.extend_from_slice(b">1 ");
            out.extend_from_slice(timestamp);
            out.push(b' ');
            out.extend_from_slice(self.hostname.as_bytes());
            out.push(b' ');
            out.extend_from_slice(app);
            out.push(b' ');
            out.extend_from_slice(procid);
            out.extend_from_slice(b" - - ");
            out.extend_from_slice(msg);
            messages += 1;
        }
        messages
    }

    /// APP-NAME for `input`: the template with `{input}` filled in,
    /// sanitized and cut to 48 bytes, `-` when empty.
    fn render_app_name<'b>(&self, input: &str, buf: &'b mut [u8; MAX_APP_NAME]) -> &'b [u8] {
        let mut len = 0;
        let mut push = |c: char| {
            if len < MAX_APP_NAME {
                buf[len] = printable(c) as u8;
                len += 1;
            }
        };
        for (i, piece) in self.app_name.iter().enumerate() {
            if i > 0 {
                input.chars().for_each(&mut push);
            }
            piece.chars().for_each(&mut push);
        }
        if len == 0 {
            buf[0] = b'-';
            len = 1;
        }
        &buf[..len]
    }
}

/// PRINTUSASCII (RFC 5424 §6): `!` to `~`.
fn is_printusascii(b: u8) -> bool {
    (33..=126).contains(&b)
}

/// `c` if it is PRINTUSASCII, else `_`.
fn printable(c: char) -> char {
    if c.is_ascii() && is_printusascii(c as u8) {
        c
    } else {
        '_'
    }
}

/// Why [`split_frames`] gave up on a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(dead_code)] // the decoder side: used by tests and the fuzz targets
pub enum FrameError {
    /// LEN is not `NONZERO-DIGIT *DIGIT` followed by a space.
    #[error("malformed octet count")]
    BadLength,
    /// LEN exceeds [`MAX_FRAME_LEN`].
    #[error("frame of more than {MAX_FRAME_LEN} bytes")]
    TooLong,
}

/// Splits the first RFC 6587 octet-counted frame off `buf`: the message and
/// how many bytes of `buf` the frame used, `None` if it is not complete
/// yet, an error if it can never become valid.
#[allow(dead_code)] // the decoder side: used by tests and the fuzz targets
pub fn split_frames(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_LEN_DIGITS {
        return Err(FrameError::TooLong);
    }
    if buf.first() == Some(&b'0') {
        return Err(FrameError::BadLength);
    }
    match buf.get(digits) {
        None => return Ok(None),
        Some(b' ') if digits > 0 => {}
        Some(_) => return Err(FrameError::BadLength),
    }
    let len = buf[..digits]
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLong);
    }
    let start = digits + 1;
    Ok(buf.get(start..start + len).map(|msg| (msg, start + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2024-05-06T07:08:09.123456Z";

    fn format(host: &str, app: &str) -> SyslogFormat {
        SyslogFormat::new(
            Facility::parse("local3").unwrap(),
            Severity::parse("warning").unwrap(),
            host,
            app,
            4242,
        )
    }

    fn encode(f: &SyslogFormat, lines: &[u8], input: &str, ts: &str) -> (String, u64) {
        let mut out = b"previous".to_vec();
        let n = f.encode(lines, input, ts, &mut out);
        let out = out.strip_prefix(b"previous").expect("encode only appends");
        (String::from_utf8_lossy(out).into_owned(), n)
    }

    #[test]
    fn golden_frames() {
        let f = format("web1", "fb-{input}");
        let (out, n) = encode(&f, b"disk full\nsecond line\n", "alerts", TS);
        assert_eq!(n, 2);
        // local3 (19) * 8 + warning (4) = 156
        assert_eq!(
            out,
            "68 <156>1 2024-05-06T07:08:09.123456Z web1 fb-alerts 4242 - - disk full\
             70 <156>1 2024-05-06T07:08:09.123456Z web1 fb-alerts 4242 - - second line"
        );
    }

    #[test]
    fn msg_is_the_line_bytes_as_read() {
        let f = format("h", "{input}");
        let lines = b"\n  spaced \r\nutf8 \xc3\xa9 and \xff\x00 raw\nno newline";
        let mut out = Vec::new();
        assert_eq!(f.encode(lines, "in", TS, &mut out), 4);
        let mut rest = &out[..];
        let mut msgs = Vec::new();
        while let Some((msg, used)) = split_frames(rest).unwrap() {
            msgs.push(msg.to_vec());
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        let prefix = format!("<156>1 {TS} h in 4242 - - ").into_bytes();
        let want: [&[u8]; 4] = [
            b"",
            b"  spaced \r",
            b"utf8 \xc3\xa9 and \xff\x00 raw",
            b"no newline",
        ];
        for (msg, want) in msgs.iter().zip(want) {
            assert_eq!(&msg[..prefix.len()], &prefix[..]);
            assert_eq!(&msg[prefix.len()..], want);
        }
        assert_eq!(msgs.len(), 4);
    }

    #[test]
    fn nothing_for_no_lines() {
        let f = format("h", "a");
        assert_eq!(encode(&f, b"", "in", TS), (String::new(), 0));
    }

    #[test]
    fn header_fields_are_sanitized() {
        let f = format("", "");
        let (out, _) = encode(&f, b"x\n", "in", TS);
        let want = format!("<156>1 {TS} - - 4242 - - x");
        assert_eq!(out, format!("{} {want}", want.len()));

        let f = format("my host\u{e9}", "app {input}\u{e9}");
        let (out, _) = encode(&f, b"x\n", "in", "not a time stamp");
        assert!(
            out.ends_with(" <156>1 - my_host_ app_in_ 4242 - - x"),
            "{out}"
        );

        let long_ts = "2024-05-06T07:08:09.123456789+01:00";
        let (out, _) = encode(&f, b"x\n", "in", long_ts);
        assert!(out.contains("<156>1 - my_host_"), "{out}");
    }

    #[test]
    fn header_fields_are_truncated() {
        let f = format(&"h".repeat(300), &format!("{}{{input}}", "a".repeat(40)));
        let (out, _) = encode(&f, b"x\n", "0123456789", TS);
        let want_app = format!("{}01234567", "a".repeat(40));
        assert_eq!(want_app.len(), 48);
        let want = format!("<156>1 {TS} {} {want_app} 4242 - - x", "h".repeat(255));
        assert_eq!(out, format!("{} {want}", want.len()));
    }

    #[test]
    fn app_name_repeats_and_keeps_other_braces() {
        let f = format("h", "{input}-{x}-{input}");
        let (out, _) = encode(&f, b"m\n", "ab", TS);
        assert!(out.contains(" h ab-{x}-ab 4242 - - m"), "{out}");
    }

    #[test]
    fn names() {
        let pri = |fac: &str, sev: &str| {
            let f = SyslogFormat::new(
                Facility::parse(fac).unwrap(),
                Severity::parse(sev).unwrap(),
                "h",
                "a",
                1,
            );
            f.pri
        };
        assert_eq!(pri("kern", "emerg"), 0);
        assert_eq!(pri("user", "notice"), 13);
        assert_eq!(pri("daemon", "err"), 27);
        assert_eq!(pri("daemon", "error"), 27);
        assert_eq!(pri("auth", "warn"), 36);
        assert_eq!(pri("AuthPriv", "crit"), 82);
        assert_eq!(pri("syslog", "alert"), 41);
        assert_eq!(pri("mail", "info"), 22);
        assert_eq!(pri("cron", "debug"), 79);
        assert_eq!(pri("local0", "info"), 134);
        assert_eq!(pri("local7", "debug"), 191);
        assert_eq!(Facility::USER, Facility::parse("user").unwrap());
        assert_eq!(Severity::NOTICE, Severity::parse("notice").unwrap());
        let err = Facility::parse("local8").unwrap_err();
        assert!(err.contains("unknown facility \"local8\"") && err.contains("local7"));
        let err = Severity::parse("loud").unwrap_err();
        assert!(err.contains("unknown severity \"loud\"") && err.contains("debug"));
    }

    #[test]
    fn split_frames_cases() {
        assert_eq!(split_frames(b""), Ok(None));
        assert_eq!(split_frames(b"12"), Ok(None));
        assert_eq!(split_frames(b"5 abc"), Ok(None));
        assert_eq!(split_frames(b"5 abcde"), Ok(Some((&b"abcde"[..], 7))));
        assert_eq!(split_frames(b"3 abc4 next"), Ok(Some((&b"abc"[..], 5))));
        assert_eq!(split_frames(b"0 "), Err(FrameError::BadLength));
        assert_eq!(split_frames(b"05 abcde"), Err(FrameError::BadLength));
        assert_eq!(split_frames(b" 5 abcde"), Err(FrameError::BadLength));
        assert_eq!(split_frames(b"5x"), Err(FrameError::BadLength));
        assert_eq!(split_frames(b"<13>1 - - -"), Err(FrameError::BadLength));
        assert_eq!(split_frames(b"99999999 "), Err(FrameError::TooLong));
        assert_eq!(split_frames(b"123456789"), Err(FrameError::TooLong));
        assert_eq!(
            split_frames(b"99999999999999999999999999 x"),
            Err(FrameError::TooLong)
        );
        assert_eq!(split_frames(b"16777216 "), Ok(None));
    }
}
