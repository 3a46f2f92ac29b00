#!/bin/sh
# Runs every fuzz target for SECONDS each (default 60), one after another,
# growing fuzz/corpus/TARGET (fuzz/regressions/TARGET, the inputs of past
# findings, seed it but are never rewritten); a crash stops the script and
# leaves the input in fuzz/artifacts/TARGET/ (fix it, then copy it into
# fuzz/regressions/TARGET/ under a name that says what it was). Afterwards
# each corpus is minimized (`cargo fuzz cmin`) and cut to its CORPUS_MAX
# (default 300) smallest files, so what is committed stays small;
# `cargo test` replays both directories.
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`).
set -eu
seconds=${1:-60}
max=${CORPUS_MAX:-300}
cd "$(dirname "$0")"
cargo +nightly fuzz build -O
for target in config framer format outbox nats syslog syslog_encode; do
    echo "== $target: ${seconds}s"
    mkdir -p "regressions/$target"
    cargo +nightly fuzz run -O "$target" "corpus/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 2>&1 |
        grep -E 'stat::number_of_executed_units|SUMMARY|panicked' || true
    if ls "artifacts/$target" 2>/dev/null | grep -q .; then
        echo "$target: finding in fuzz/artifacts/$target"
        exit 1
    fi
    cargo +nightly fuzz cmin -O "$target" "corpus/$target" -- -max_len=4096 >/dev/null 2>&1
    # Keep the smallest files.
    ls -S "corpus/$target" | grep -E '^[0-9a-f]{40}$' | head -n "-$max" |
        while read -r f; do rm -- "corpus/$target/$f"; done
    echo "   corpus: $(ls "corpus/$target" | wc -l) files"
done
echo "all targets ran ${seconds}s without a finding"
