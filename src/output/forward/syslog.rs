//! The syslog side of a forward: records from the outbox become RFC 5424
//! messages in RFC 6587 octet-counting frames, many per `write()`. The
//! server never answers; what the kernel took when a connection resets may
//! be lost (documented in docs/forwarding.md: use NATS where that matters).

use super::{split_record, Wire};
use crate::config::ForwardConfig;
use crate::forward::syslog::SyslogFormat;
use crate::outbox::Outbox;

/// Header fields of every message.
pub(super) struct Session {
    format: SyslogFormat,
}

impl Session {
    pub(super) fn new(config: &ForwardConfig) -> Session {
        Session {
            format: SyslogFormat::new(
                config.facility,
                config.severity,
                &config.hostname,
                &config.app_name,
                std::process::id(),
            ),
        }
    }

    /// Moves whole records from `outbox` into `wire` as frames, until the
    /// wire batch is full or the outbox empty.
    pub(super) fn fill(&mut self, outbox: &mut Outbox, wire: &mut Wire) {
        let format = &self.format;
        let _ = outbox.flush(|records| {
            let mut used = 0;
            for end in memchr::memchr_iter(b'\n', records) {
                if wire.is_full() {
                    break;
                }
                let (time, input, line) = split_record(&records[used..=end]);
                format.encode(line, input, time, wire.buf());
                wire.end_message();
                used = end + 1;
            }
            Ok(used)
        });
    }
}
