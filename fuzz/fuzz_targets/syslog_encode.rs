//! Fuzz target `syslog_encode`: the syslog encoder a forward runs, on
//! arbitrary header settings and lines: one well-formed RFC 5424 message
//! per line in RFC 6587 frames, the line intact. The checks are
//! `fifo_broker::fuzzing::syslog_encode`, which `cargo test` also replays
//! over fuzz/corpus/syslog_encode.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fifo_broker::fuzzing::syslog_encode(data));
