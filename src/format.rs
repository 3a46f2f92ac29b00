//! Output line templates: `{line}`, `{input}`, `{time}`, `{host}` and
//! `{json}`, with `{{`/`}}` for literal braces.
//!
//! A [`Format`] renders a whole batch of complete lines at once into a reused
//! buffer, so the hot path allocates nothing per line. The plain `{line}`
//! format is recognised so the broker can hand the input bytes on untouched.

use std::fmt;

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub struct Format {
    /// The template as written in the config.
    source: String,
    /// The template split into literal text and placeholders.
    pieces: Vec<Piece>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Piece {
    Literal(String),
    Line,
    Input,
    Time,
    Host,
    Json,
}

/// What a line is rendered with besides itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The input's name.
    pub(crate) input: &'a str,
    /// When the batch was read (`{time}`), if the format uses it.
    pub(crate) time: &'a str,
    /// The host's name.
    pub(crate) host: &'a str,
}

/// `{json}`: one object per line; `line` is lossily decoded (invalid UTF-8
/// becomes U+FFFD) and escaped by serde_json.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    host: &'a str,
    input: &'a str,
    line: Lossy<'a>,
}

/// Bytes as a JSON string, invalid UTF-8 as U+FFFD, written straight into
/// the output (no `String` per line, as `from_utf8_lossy` would make).
struct Lossy<'a>(&'a [u8]);

impl serde::Serialize for Lossy<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => serializer.collect_str(self),
        }
    }
}

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({:?})", self.source)
    }
}

impl Format {
    /// Parses a template, or says what is wrong with it.
    pub fn parse(source: &str) -> Result<Format, String> {
        if source.contains(['\n', '\r']) {
            return Err("a format may not contain a line break".into());
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err("unmatched '}' (write '}}' for a literal brace)".into());
            }
            let Some(end) = tail.find('}') else {
                return Err("unclosed '{' (write '{{' for a literal brace)".into());
            };
            let piece = match &tail[..=end] {
                "{line}" => Piece::Line,
                "{input}" => Piece::Input,
                "{time}" => Piece::Time,
                "{host}" => Piece::Host,
                "{json}" => Piece::Json,
                other => {
                    return Err(format!(
                        "unknown placeholder {other}; use {{line}}, {{input}}, {{time}}, \
                         {{host}} or {{json}}"
                    ))
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            rest = &tail[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Format {
            source: source.to_string(),
            pieces,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True if lines pass through unchanged, so a batch can be forwarded as is.
    pub fn is_verbatim(&self) -> bool {
        self.pieces == [Piece::Line]
    }

    /// True if rendering needs the current time.
    pub fn uses_time(&self) -> bool {
        self.pieces.contains(&Piece::Time) || self.pieces.contains(&Piece::Json)
    }

    /// Appends `lines` (complete lines, each ending in `\n`) rendered through
    /// this template to `out`.
    pub(crate) fn render(&self, lines: &[u8], cx: Context<'_>, out: &mut Vec<u8>) {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', lines) {
            let line = &lines[start..end];
            for piece in &self.pieces {
                match piece {
                    Piece::Literal(s) => out.extend_from_slice(s.as_bytes()),
                    Piece::Line => out.extend_from_slice(line),
                    Piece::Input => out.extend_from_slice(cx.input.as_bytes()),
                    Piece::Time => out.extend_from_slice(cx.time.as_bytes()),
                    Piece::Host => out.extend_from_slice(cx.host.as_bytes()),
                    Piece::Json => {
                        let json = JsonLine {
                            time: cx.time,
                            host: cx.host,
                            input: cx.input,
                            line: Lossy(line),
                        };
                        // Writing a struct of strings into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut *out, &json);
                    }
                }
            }
            out.push(b'\n');
            start = end + 1;
        }
    }
}

/// The host's name (`uname -n`): `{host}`, and the default syslog HOSTNAME.
pub(crate) fn host_name() -> String {
    let uname = rustix::system::uname();
    uname.nodename().to_string_lossy().into_owned()
}

/// The `{time}` stamp: RFC 3339, UTC, microseconds.
pub fn timestamp(now: std::time::SystemTime) -> String {
    humantime::format_rfc3339_micros(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: &str, lines: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let cx = Context {
            input: "alerts",
            time: "T",
            host: "h",
        };
        Format::parse(format).unwrap().render(lines, cx, &mut out);
        out
    }

    #[test]
    fn renders_every_line_with_its_newline() {
        assert_eq!(
            render("{time} {input} {line}", b"a\n\xffb\n"),
            b"T alerts a\nT alerts \xffb\n"
        );
        assert_eq!(render("{{{line}}}", b"x\n"), b"{x}\n");
        assert_eq!(render("[{input}]", b"x\n"), b"[alerts]\n");
    }

    #[test]
    fn host_and_json() {
        assert_eq!(render("{host}:{line}", b"x\n"), b"h:x\n");
        let out = render("{json}", b"a \"q\"\\\n\xffz\n");
        let lines: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["line"], "a \"q\"\\");
        assert_eq!(lines[0]["host"], "h");
        assert_eq!(lines[0]["input"], "alerts");
        assert_eq!(lines[0]["time"], "T");
        assert_eq!(lines[1]["line"], "\u{fffd}z");
    }

    #[test]
    fn verbatim_is_only_the_bare_line() {
        assert!(Format::parse("{line}").unwrap().is_verbatim());
        assert!(!Format::parse("{line} ").unwrap().is_verbatim());
        assert!(Format::parse("{time}").unwrap().uses_time());
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Format::parse("{nope}").unwrap_err().contains("{nope}"));
        assert!(Format::parse("{line").unwrap_err().contains("unclosed"));
        assert!(Format::parse("line}").unwrap_err().contains("unmatched"));
        assert!(Format::parse("a\nb").is_err());
    }

    #[test]
    fn timestamp_is_rfc3339_utc_micros() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123456Z");
    }
}
