//! Fuzz target `outbox`: the per-output queue against a model: whole lines
//! only, order kept, every line and byte accounted for. The checks are
//! `fifo_broker::fuzzing::outbox`, which `cargo test` also replays over
//! fuzz/corpus/outbox.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fifo_broker::fuzzing::outbox(data));
