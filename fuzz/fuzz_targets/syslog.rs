//! Fuzz target `syslog`: the syslog octet-counting frame splitter: exact
//! frames, no prefix of a frame is an error. The checks are
//! `fifo_broker::fuzzing::syslog`, which `cargo test` also replays over
//! fuzz/corpus/syslog.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fifo_broker::fuzzing::syslog(data));
