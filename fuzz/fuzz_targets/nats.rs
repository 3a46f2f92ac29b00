//! Fuzz target `nats`: the NATS server-reply parser: no panic, consistent
//! sizes, no prefix of a complete reply is an error. The checks are
//! `fifo_broker::fuzzing::nats`, which `cargo test` also replays over
//! fuzz/corpus/nats.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fifo_broker::fuzzing::nats(data));
