//! Forwards (SPEC §7): outputs that send lines beyond the host, to a syslog
//! server, a NATS JetStream, or the local journal.
//!
//! The files here are the protocol pieces, independent of the event loop:
//! they parse configuration strings, encode into caller-provided `Vec<u8>`s
//! and parse server replies from caller-provided byte buffers. None of them
//! may do I/O, block, panic on any input, or allocate without a bound; the
//! loop owns sockets, timers and queues.
//!
//! - [`url`] — a forward's `url` into an [`url::Endpoint`].
//! - [`syslog`] — RFC 5424 messages in RFC 6587 octet-counting frames.
//! - [`nats`] — the NATS client protocol for JetStream publish: CONNECT,
//!   HPUB, SUB, PING/PONG out; INFO, MSG/HMSG, PubAcks, -ERR in.
//! - [`journal`] — systemd's native journal protocol.

pub mod journal;
pub mod nats;
pub mod syslog;
pub mod url;

/// `n` in decimal, in the last bytes of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            return &buf[i..];
        }
    }
}

/// Appends `n` in decimal, without the allocation of `format!`.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 4096, u64::MAX] {
            push_decimal(&mut out, n);
            out.push(b' ');
        }
        assert_eq!(out, b"0 7 10 4096 18446744073709551615 ");
    }
}
