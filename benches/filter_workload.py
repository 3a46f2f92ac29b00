#!/usr/bin/env python3
"""The filter workload of issue 13, beside the unfiltered run in the same
invocation: 1 input -> 4 `block` subscribers (read by `cat`) + 1 `{line}`
sink, 2,000,000 lines of 100 bytes in 64 KiB writes (`dd`); in the filtered
run, two of the four subscribers have `match = '^\\d{7}7'` (10 % of lines).
Rate = lines / time from the first write until the sink holds every byte.

    cargo build --release && python3 benches/filter_workload.py [RUNS]

FIFO_BROKER_BIN=PATH runs another build (to compare two commits).
Scratch files go to a temp dir under /dev/shm. Prints one line per run and
the median ratio filtered / unfiltered.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("FIFO_BROKER_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "fifo-broker"
)
LINES = 2_000_000


def run(tmp, match):
    d, log = os.path.join(tmp, "d"), os.path.join(tmp, "l")
    for p in (d, log):
        shutil.rmtree(p, ignore_errors=True)
        os.mkdir(p, 0o755)
    m = f"match = '{match}'" if match else ""
    subs = "".join(
        f'[subscribers.s{i}]\nfrom = ["in"]\nwhen_full = "block"\n{m if i < 2 else ""}\n' for i in range(4)
    )
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write(
            f'[broker]\ndir = "{d}"\nlog_dir = "{log}"\n[inputs.in]\n{subs}'
            '[sinks.k]\npath = "k.log"\nfrom = ["in"]\nformat = "{line}"\nmax_bytes = 0\nwhen_full = "block"\n'
        )
    daemon = subprocess.Popen([BIN, "--config", cfg], stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(os.path.join(d, "s3")):
            time.sleep(0.01)
        cats = [subprocess.Popen(["cat", os.path.join(d, f"s{i}")], stdout=subprocess.DEVNULL) for i in range(4)]
        time.sleep(0.2)
        sink = os.path.join(log, "k.log")
        start = time.time()
        subprocess.run(["dd", f"if={os.path.join(tmp, 'data')}", f"of={os.path.join(d, 'in')}", "bs=64k", "status=none"], check=True)
        deadline = start + 120
        while (not os.path.exists(sink) or os.path.getsize(sink) < LINES * 100) and time.time() < deadline:
            time.sleep(0.002)
        elapsed = time.time() - start
        stat = open(f"/proc/{daemon.pid}/stat").read().split()
        cpu = (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")
    finally:
        daemon.terminate()
        daemon.wait()
    for c in cats:
        c.wait()
    return LINES / elapsed, cpu


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="fb-filter-", dir=base) as tmp:
        with open(os.path.join(tmp, "data"), "wb") as f:
            f.write(b"".join(b"%08d" % i + b"x" * 91 + b"\n" for i in range(LINES)))
        ratios = []
        for r in range(runs):
            plain = run(tmp, None)
            filtered = run(tmp, r"^\d{7}7")
            ratios.append(filtered[0] / plain[0])
            print(
                f"run {r + 1}: unfiltered {plain[0] / 1e6:.2f} M lines/s (cpu {plain[1]:.2f} s), "
                f"filtered {filtered[0] / 1e6:.2f} M lines/s (cpu {filtered[1]:.2f} s), ratio {ratios[-1]:.2f}"
            )
        print(f"median ratio filtered / unfiltered: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
