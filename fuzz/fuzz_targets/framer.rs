//! Fuzz target `framer`: the input line framer on arbitrary chunks and
//! max_line_bytes: lines, truncation and tail exactly as the input split at
//! newlines. The checks are `fifo_broker::fuzzing::framer`, which `cargo
//! test` also replays over fuzz/corpus/framer.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fifo_broker::fuzzing::framer(data));
