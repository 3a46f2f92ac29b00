//! Fuzz target `format`: the format renderer: one output line per input line,
//! and {json} always parses as JSON holding what went in. The checks are
//! `fifo_broker::fuzzing::format`, which `cargo test` also replays over
//! fuzz/corpus/format.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fifo_broker::fuzzing::format(data));
