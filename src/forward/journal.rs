//! systemd's native journal protocol, for `url = "journal"` forwards: one
//! entry is one datagram of fields, encoded here into a caller's buffer.
//!
//! This file only encodes; it must never open or write the socket. Sending
//! is the loop's job: each entry goes as one datagram to
//! `/run/systemd/journal/socket`. An entry larger than the socket accepts
//! (`sendmsg` fails with `EMSGSIZE`) has to go the way sd_journal_sendv(3)
//! does it instead: written into a sealed memfd whose descriptor is passed
//! with `SCM_RIGHTS` on an empty datagram; `output::forward::journal` does
//! that with the entry encoded here, unchanged.
//!
//! Wire format (systemd's `JOURNAL_NATIVE_PROTOCOL`): `KEY=value\n` when the
//! value has no `\n`, else `KEY\n`, the value's length as a little-endian
//! u64, the value, `\n`.

/// Longest field name journald accepts.
const MAX_FIELD_NAME: usize = 64;

/// The field of one entry that holds the line.
pub const MESSAGE: &str = "MESSAGE";
/// Syslog severity, `0`..`7`.
pub const PRIORITY: &str = "PRIORITY";
/// The entry's identifier, from `app_name`.
pub const SYSLOG_IDENTIFIER: &str = "SYSLOG_IDENTIFIER";
/// The name of the input the line came from.
pub const INPUT: &str = "FIFO_BROKER_INPUT";

/// Whether journald accepts `name` as a field name written by a client:
/// 1..=64 of `A-Z`, `0-9`, `_`, not starting with `_` (trusted fields) or
/// a digit.
pub fn valid_field_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_FIELD_NAME
        && !b[0].is_ascii_digit()
        && b[0] != b'_'
        && b.iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// Appends one journal entry made of `fields` to `out`. If a field name is
/// invalid, nothing is appended and the error names it.
pub fn encode(fields: &[(&str, &[u8])], out: &mut Vec<u8>) -> Result<(), String> {
    if let Some((name, _)) = fields.iter().find(|(n, _)| !valid_field_name(n)) {
        return Err(format!(
            "invalid journal field name {name:?}: use A-Z, 0-9 and _, not first _ or a digit, \
             at most {MAX_FIELD_NAME} characters"
        ));
    }
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        if memchr::memchr(b'\n', value).is_none() {
            out.push(b'=');
        } else {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_simple_entry() {
        let mut out = Vec::new();
        encode(
            &[
                (MESSAGE, b"disk full"),
                (PRIORITY, b"5"),
                (SYSLOG_IDENTIFIER, b"alerts"),
                (INPUT, b"alerts"),
            ],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            b"MESSAGE=disk full\nPRIORITY=5\nSYSLOG_IDENTIFIER=alerts\nFIFO_BROKER_INPUT=alerts\n"
        );
    }

    #[test]
    fn golden_binary_safe_value() {
        let mut out = b"X=1\n".to_vec();
        encode(&[(MESSAGE, b"a\nb\x00\xff"), (PRIORITY, b"")], &mut out).unwrap();
        let mut want = b"X=1\nMESSAGE\n".to_vec();
        want.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(b"a\nb\x00\xff\nPRIORITY=\n");
        assert_eq!(out, want);
    }

    #[test]
    fn field_names() {
        for ok in ["MESSAGE", "A", "FIFO_BROKER_INPUT", "X_1", &"A".repeat(64)] {
            assert!(valid_field_name(ok), "{ok}");
        }
        for bad in [
            "",
            "_PID",
            "1A",
            "message",
            "MESSAGE=",
            "A-B",
            "É",
            &"A".repeat(65),
        ] {
            assert!(!valid_field_name(bad), "{bad}");
        }
        let mut out = b"kept".to_vec();
        let err = encode(&[(MESSAGE, b"m"), ("_PID", b"1")], &mut out).unwrap_err();
        assert!(err.contains("\"_PID\""), "{err}");
        assert_eq!(out, b"kept", "nothing appended on error");
    }
}
