//! Fuzz target `config`: the config loader on arbitrary text: no panic, every
//! error's line:col inside the file. The checks are
//! `fifo_broker::fuzzing::config`, which `cargo test` also replays over
//! fuzz/corpus/config.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fifo_broker::fuzzing::config(data));
