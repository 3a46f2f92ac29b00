//! Integration tests: each test runs the real `fifo-broker` binary against a
//! config in its own temp dir and checks the contract of SPEC.md from the
//! outside, the way a shell user or systemd would see it.

mod util;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::process::Signal;

use util::{
    contains, control_connect, count_newlines, data_lines, eventually, flush_with_markers,
    join_within, json_counter, open_fifo_writer, quote, require_root, sh, split_lines, status_json,
    status_run, status_with_ready, text_lines, Cat, Counters, Daemon, Received, Setup, SlowReader,
    TIMEOUT,
};

// ---------------------------------------------------------------------------
// Small helpers local to these tests.

/// Permission bits (including setuid/setgid/sticky) of `path`, not following
/// symlinks.
fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Asserts `path` is a FIFO with exactly `mode`.
fn assert_fifo(path: &Path, mode: u32) {
    let md = fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("expected FIFO at {}, got error {e}", path.display()));
    assert!(
        md.file_type().is_fifo(),
        "expected {} to be a FIFO, got {:?}",
        path.display(),
        md.file_type()
    );
    assert_eq!(
        md.mode() & 0o7777,
        mode,
        "mode of {}: expected {mode:04o}, got {:04o}",
        path.display(),
        md.mode() & 0o7777
    );
}

fn assert_absent(path: &Path, why: &str) {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(md) => panic!(
            "{why}: expected {} to be gone, found {:?}",
            path.display(),
            md.file_type()
        ),
        Err(e) => panic!("{why}: stat {}: {e}", path.display()),
    }
}

fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

/// Waits until the file at `path` holds at least `n` data (non-probe) lines.
fn wait_file_lines(path: &Path, n: usize) -> Vec<String> {
    eventually(TIMEOUT, || {
        let data = fs::read(path).unwrap_or_default();
        let lines = text_lines(&data);
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(format!(
                "expected at least {n} data lines in {}, got {}: {lines:?}",
                path.display(),
                lines.len()
            ))
        }
    })
}

/// Waits until reader `r` has received at least `n` data (non-probe) lines;
/// `what` names it in the failure message.
fn wait_text_lines(r: &dyn Received, n: usize, timeout: Duration, what: &str) -> Vec<String> {
    eventually(timeout, || {
        let got = text_lines(&r.bytes());
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!("{what}: expected {n} lines, got {}", got.len()))
        }
    })
}

/// Creates the broker dir beforehand with a safe mode (0755).
fn make_dir(s: &Setup) {
    fs::create_dir(&s.dir).expect("creating dir");
    fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
}

/// Writes `lines` numbered `0..count` as `"{prefix}{i}\n"` into `file`,
/// `per_write` lines per `write()`.
fn write_numbered(file: &mut File, prefix: &str, count: usize, per_write: usize) {
    let mut i = 0;
    while i < count {
        let end = (i + per_write).min(count);
        let batch: String = (i..end).map(|n| format!("{prefix}{n}\n")).collect();
        file.write_all(batch.as_bytes()).expect("writing batch");
        i = end;
    }
}

/// Asserts `lines` is exactly `"{prefix}0" .. "{prefix}{count-1}"` in order.
fn assert_numbered(lines: &[String], prefix: &str, count: usize, what: &str) {
    let got: Vec<&String> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
    for (i, l) in got.iter().enumerate() {
        assert_eq!(
            **l,
            format!("{prefix}{i}"),
            "{what}: line {i} out of order or missing"
        );
    }
    assert_eq!(
        got.len(),
        count,
        "{what}: expected {count} lines {prefix}N, got {}",
        got.len()
    );
}

// ---------------------------------------------------------------------------
// Delivery.

const TWO_SUBS_AND_SINK: &str = r#"
[inputs.alerts]

[subscribers."alerts.a"]
from = ["alerts"]

[subscribers."alerts.b"]
from = ["alerts"]

[sinks.archive]
path = "archive.log"
from = ["alerts"]
"#;

#[test]
fn shell_echo_reaches_two_subscribers_and_a_sink() {
    let d = Daemon::start(TWO_SUBS_AND_SINK);
    let a = Cat::on(&d, "alerts.a", "a");
    let b = Cat::on(&d, "alerts.b", "b");
    d.attach("alerts", &[&a, &b]);

    sh(&format!("echo 'disk full' > {}", quote(&d.path("alerts"))));

    for (name, r) in [("alerts.a", &a), ("alerts.b", &b)] {
        r.wait_data_lines(1);
        assert_eq!(
            text_lines(&r.bytes()),
            ["disk full"],
            "subscriber {name}: expected exactly the echoed line"
        );
    }
    let sink = wait_file_lines(&d.log_path("archive.log"), 1);
    assert_eq!(sink.len(), 1, "sink: expected one data line, got {sink:?}");
    assert!(
        sink[0].ends_with(" alerts disk full"),
        "sink: expected `<time> alerts disk full`, got {:?}",
        sink[0]
    );
}

const ONE_SUB_RAW_SINK: &str = r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]

[sinks.raw]
path = "raw.log"
from = ["alerts"]
format = "{line}"
"#;

#[test]
fn unterminated_tail_is_delivered_with_newline_when_writer_closes() {
    let d = Daemon::start(ONE_SUB_RAW_SINK);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);

    sh(&format!("printf 'tail' > {}", quote(&d.path("alerts"))));

    r.wait_data_lines(1);
    let got = r.bytes();
    assert!(
        got.ends_with(b"\ntail\n"),
        "subscriber: expected output to end with \"tail\\n\", got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(text_lines(&got), ["tail"]);
    wait_file_lines(&d.log_path("raw.log"), 1);
    let sink = fs::read(d.log_path("raw.log")).unwrap();
    assert!(
        sink.ends_with(b"\ntail\n"),
        "sink: expected file to end with \"tail\\n\", got {:?}",
        String::from_utf8_lossy(&sink)
    );
}

#[test]
fn non_utf8_and_nul_bytes_pass_through_unchanged() {
    let d = Daemon::start(ONE_SUB_RAW_SINK);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);

    let line: &[u8] = b"\xff\xfe caf\xe9 \x00nul\x00 \xc3\x28 \x80end\r";
    let mut msg = line.to_vec();
    msg.push(b'\n');
    d.write("alerts", &msg);

    r.wait_data_lines(1);
    assert_eq!(
        data_lines(&r.bytes()),
        [line.to_vec()],
        "subscriber: expected the bytes unchanged"
    );
    eventually(TIMEOUT, || {
        let sink = fs::read(d.log_path("raw.log")).unwrap_or_default();
        if data_lines(&sink) == [line.to_vec()] {
            Ok(())
        } else {
            Err(format!(
                "sink: expected {line:?}, got {:?}",
                data_lines(&sink)
            ))
        }
    });
}

#[test]
fn order_is_preserved_per_input_to_every_output() {
    let d = Daemon::start(
        r#"
[inputs.a]
[inputs.b]

[subscribers.both]
from = ["a", "b"]
format = "{input} {line}"
when_full = "block"

[sinks.both_log]
path = "both.log"
from = ["a", "b"]
format = "{input} {line}"
"#,
    );
    let r = Cat::on(&d, "both", "r");
    d.attach("a", &[&r]);

    const N: usize = 10_000;
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|input| {
            let mut f = d.open_writer(input);
            thread::spawn(move || write_numbered(&mut f, "n", N, 50))
        })
        .collect();
    for w in writers {
        join_within(w, TIMEOUT, "writer");
    }

    let sub = r.wait_data_lines(2 * N);
    let sub: Vec<String> = sub
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let sink = wait_file_lines(&d.log_path("both.log"), 2 * N);
    for (what, lines) in [("subscriber", &sub), ("sink", &sink)] {
        for input in ["a", "b"] {
            let of_input: Vec<String> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{input} ")).map(str::to_owned))
                .collect();
            assert_numbered(&of_input, "n", N, &format!("{what}, input {input}"));
        }
    }
}

/// One line of the concurrent-writer test: `w:seq:len:` then filler up to
/// `len` bytes including the newline.
fn torn_test_line(w: usize, seq: usize) -> Vec<u8> {
    let len = if seq % 997 == 0 {
        4096
    } else {
        24 + (seq * 7 + w * 13) % 200
    };
    let mut line = format!("{w}:{seq}:{len}:").into_bytes();
    let fill = b'a' + ((w * 31 + seq) % 26) as u8;
    line.resize(len - 1, fill);
    line.push(b'\n');
    line
}

#[test]
fn concurrent_writers_lines_arrive_untorn_and_in_per_writer_order() {
    const WRITERS: usize = 8;
    const LINES: usize = 20_000;
    let d = Daemon::start(
        r#"
[inputs.shared]

[subscribers.c1]
from = ["shared"]
when_full = "block"

[subscribers.c2]
from = ["shared"]
when_full = "block"
"#,
    );
    let r1 = Cat::on(&d, "c1", "r");
    let r2 = Cat::on(&d, "c2", "r");
    d.attach("shared", &[&r1, &r2]);

    let total_bytes: usize = (0..WRITERS)
        .flat_map(|w| (0..LINES).map(move |s| torn_test_line(w, s).len()))
        .sum();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut f = d.open_writer("shared");
            thread::spawn(move || {
                for seq in 0..LINES {
                    // One write() of at most PIPE_BUF bytes: atomic on a pipe.
                    f.write_all(&torn_test_line(w, seq)).expect("writing line");
                }
            })
        })
        .collect();
    for w in writers {
        join_within(w, Duration::from_secs(90), "concurrent writer");
    }

    for (name, r) in [("c1", &r1), ("c2", &r2)] {
        let data = eventually(Duration::from_secs(60), || {
            if r.len() < total_bytes as u64 {
                return Err(format!(
                    "subscriber {name}: expected >= {total_bytes} bytes, got {}",
                    r.len()
                ));
            }
            let data = r.bytes();
            if count_newlines(&data) >= WRITERS * LINES {
                Ok(data)
            } else {
                Err(format!(
                    "subscriber {name}: expected >= {total_bytes} bytes / {} lines, got {} / {}",
                    WRITERS * LINES,
                    data.len(),
                    count_newlines(&data)
                ))
            }
        });
        let mut next = [0usize; WRITERS];
        for line in data_lines(&data) {
            let text = String::from_utf8_lossy(&line);
            let mut parts = text.splitn(4, ':');
            let parsed = (|| {
                let w: usize = parts.next()?.parse().ok()?;
                let seq: usize = parts.next()?.parse().ok()?;
                Some((w, seq))
            })();
            let Some((w, seq)) = parsed.filter(|(w, _)| *w < WRITERS) else {
                panic!(
                    "subscriber {name}: torn or foreign line {:?}",
                    &text[..text.len().min(80)]
                );
            };
            let mut expected = torn_test_line(w, seq);
            expected.pop();
            assert!(
                line == expected,
                "subscriber {name}: line w{w} seq{seq} torn: expected {} bytes, got {} ({:?}...)",
                expected.len(),
                line.len(),
                &text[..text.len().min(80)]
            );
            assert_eq!(
                seq, next[w],
                "subscriber {name}: writer {w} out of order: expected seq {}, got {seq}",
                next[w]
            );
            next[w] += 1;
        }
        assert_eq!(
            next, [LINES; WRITERS],
            "subscriber {name}: expected {LINES} lines from every writer"
        );
    }
}

#[test]
fn globs_select_inputs_and_format_names_the_input() {
    let d = Daemon::start(
        r#"
[inputs.alpha]
[inputs.alps]
[inputs.beta]

[subscribers."watch.al"]
from = ["al*"]
format = "{input}: {line}"

[subscribers."watch.eta"]
from = ["?eta"]
format = "<{input}> {line}"
"#,
    );
    let al = Cat::on(&d, "watch.al", "r");
    let eta = Cat::on(&d, "watch.eta", "r");
    d.attach("alpha", &[&al]);
    d.attach("beta", &[&eta]);

    d.write("alpha", b"one\n");
    d.write("beta", b"two\n");
    d.write("alps", b"three\n");

    eta.wait_data_lines(1);
    assert_eq!(text_lines(&eta.bytes()), ["<beta> two"], "watch.eta (?eta)");
    // "two" has been routed by now; a later alpha line marks the end.
    d.write("alpha", b"end\n");
    eventually(TIMEOUT, || {
        let got = text_lines(&al.bytes());
        if got.iter().any(|l| l == "alpha: end") {
            Ok(())
        } else {
            Err(format!("watch.al: expected `alpha: end`, got {got:?}"))
        }
    });
    let got: BTreeSet<String> = text_lines(&al.bytes()).into_iter().collect();
    let want: BTreeSet<String> = ["alpha: one", "alps: three", "alpha: end"]
        .map(String::from)
        .into();
    assert_eq!(
        got, want,
        "watch.al (al*): expected alpha and alps lines only"
    );
}

#[test]
fn default_sink_format_is_rfc3339_utc_micros_input_line() {
    let d = Daemon::start(
        r#"
[inputs.alerts]

[sinks.archive]
path = "archive.log"
from = ["alerts"]
"#,
    );
    let before = SystemTime::now();
    d.write("alerts", b"hello world\n");
    let lines = wait_file_lines(&d.log_path("archive.log"), 1);
    assert_eq!(lines.len(), 1, "expected one sink line, got {lines:?}");
    let (time, rest) = lines[0]
        .split_once(' ')
        .unwrap_or_else(|| panic!("expected `{{time}} {{input}} {{line}}`, got {:?}", lines[0]));
    assert_eq!(rest, "alerts hello world", "sink line after the time");
    // 2026-11-23T15:36:13.123456Z
    let shape_ok = time.len() == 27
        && time.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            26 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "expected RFC 3339 UTC time with microseconds like 2026-11-23T15:36:13.123456Z, got {time:?}"
    );
    let t = humantime::parse_rfc3339(time)
        .unwrap_or_else(|e| panic!("time {time:?} does not parse as RFC 3339: {e}"));
    let skew = match t.duration_since(before) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(
        skew < Duration::from_secs(60),
        "time {time:?} is {skew:?} away from when the line was written"
    );
}

#[test]
fn oversize_line_is_truncated_and_counted() {
    let d = Daemon::start(
        r#"max_line_bytes = 100

[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]
"#,
    );
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);

    let mut msg = vec![b'x'; 250];
    msg.extend_from_slice(b"\nshort\n");
    d.write("alerts", &msg);

    r.wait_data_lines(2);
    let got = data_lines(&r.bytes());
    assert_eq!(got.len(), 2, "expected 2 lines, got {got:?}");
    assert_eq!(
        got[0],
        vec![b'x'; 100],
        "expected the long line cut to 100 bytes + newline, got {} bytes",
        got[0].len()
    );
    assert_eq!(got[1], b"short", "the line after the long one");
    let c = d.wait_counters("input alerts truncated=1", |c| {
        c.input("alerts", "truncated") >= 1
    });
    assert_eq!(c.input("alerts", "truncated"), 1, "truncated counter:\n{c}");
    assert!(
        d.stderr().to_lowercase().contains("truncat"),
        "expected a truncation warning in the log:\n{}",
        d.stderr()
    );
}

#[test]
fn subscriber_without_reader_discards_and_late_reader_gets_only_new_lines() {
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]
"#,
    );
    d.write("alerts", b"early-0\nearly-1\nearly-2\nearly-3\nearly-4\n");
    let c = d.wait_counters("5 lines in and discarded", |c| {
        c.input("alerts", "lines_in") >= 5 && c.subscriber("alerts.tail", "discarded") >= 5
    });
    assert_eq!(
        c.subscriber("alerts.tail", "discarded"),
        5,
        "discarded:\n{c}"
    );
    assert_eq!(
        c.subscriber("alerts.tail", "lines_out"),
        0,
        "lines_out:\n{c}"
    );
    assert!(!c.attached("alerts.tail"), "expected attached=no:\n{c}");

    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    d.write("alerts", b"late\n");
    r.wait_data_lines(1);
    let got = r.bytes();
    assert!(
        !contains(&got, b"early"),
        "late reader must not get lines from before it attached, got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(text_lines(&got), ["late"]);
    let c = d.counters();
    assert!(c.attached("alerts.tail"), "expected attached=yes:\n{c}");
}

#[test]
fn killed_reader_leaves_daemon_and_other_subscribers_unaffected() {
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers.s1]
from = ["alerts"]

[subscribers.s2]
from = ["alerts"]
when_full = "block"
"#,
    );
    let mut r1 = Cat::on(&d, "s1", "r1");
    let r2 = Cat::on(&d, "s2", "r2");
    d.attach("alerts", &[&r1, &r2]);

    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        let mut f = d.open_writer("alerts");
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let batch: String = (n..n + 20).map(|i| format!("n{i}\n")).collect();
                f.write_all(batch.as_bytes()).expect("writing");
                n += 20;
                written.store(n, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    r1.wait_data_lines(500);
    r1.kill();
    let at_kill = written.load(Ordering::SeqCst);
    eventually(TIMEOUT, || {
        let n = written.load(Ordering::SeqCst);
        if n >= at_kill + 3000 {
            Ok(())
        } else {
            Err(format!(
                "expected the writer to go on after the kill, wrote {n}"
            ))
        }
    });
    stop.store(true, Ordering::SeqCst);
    join_within(writer, TIMEOUT, "writer");
    let total = written.load(Ordering::SeqCst) as usize;

    let got = r2.wait_data_lines(total);
    let got: Vec<String> = got
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert_numbered(
        &got,
        "n",
        total,
        "subscriber s2 while s1's reader was killed",
    );
    d.assert_running("after killing a reader");

    let r3 = Cat::on(&d, "s1", "r3");
    d.attach("alerts", &[&r3]);
    d.write("alerts", b"after\n");
    r3.wait_data_lines(1);
    assert_eq!(
        text_lines(&r3.bytes()),
        ["after"],
        "new reader on s1: expected only lines after it attached"
    );
}

/// `{seq:06}:` then filler to 48 bytes plus newline.
fn paced_line(seq: usize) -> String {
    format!("{seq:06}:{}\n", "p".repeat(41))
}

/// Checks every data line is a whole `paced_line` and sequence numbers
/// increase; returns the sequence numbers.
fn whole_increasing(lines: &[String], what: &str) -> Vec<usize> {
    let mut seqs = Vec::new();
    for l in lines.iter().filter(|l| !l.starts_with("end-")) {
        let seq: usize = l
            .get(..6)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: torn line {l:?}"));
        assert_eq!(
            format!("{l}\n"),
            paced_line(seq),
            "{what}: line {seq} is not whole"
        );
        if let Some(&prev) = seqs.last() {
            assert!(seq > prev, "{what}: line {seq} came after {prev}");
        }
        seqs.push(seq);
    }
    seqs
}

#[test]
fn block_subscriber_is_lossless_while_drop_newest_subscriber_drops() {
    const N: usize = 20_000;
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."slow.block"]
from = ["alerts"]
when_full = "block"
buffer_bytes = 4096

[subscribers."slow.drop"]
from = ["alerts"]
when_full = "drop-newest"
buffer_bytes = 4096
"#,
    );
    let slow = SlowReader::start(&d.path("slow.block"), 4096, Duration::from_millis(2));
    let stalled = SlowReader::start(&d.path("slow.drop"), 65536, Duration::ZERO);
    d.attach("alerts", &[&slow, &stalled]);
    stalled.pause();
    // Probes written before a reader attached were discarded; count from here.
    let discarded_before = d.counters().subscriber("slow.block", "discarded");

    let mut f = d.open_writer("alerts");
    let writer = thread::spawn(move || {
        for chunk in (0..N).collect::<Vec<_>>().chunks(20) {
            let batch: String = chunk.iter().map(|&i| paced_line(i)).collect();
            f.write_all(batch.as_bytes()).expect("writing");
        }
    });
    join_within(
        writer,
        Duration::from_secs(60),
        "writer into a blocking input",
    );

    let all = wait_text_lines(&slow, N, Duration::from_secs(60), "slow.block");
    let seqs = whole_increasing(&all, "slow.block");
    assert_eq!(
        seqs,
        (0..N).collect::<Vec<_>>(),
        "slow.block lost or reordered lines"
    );

    stalled.resume();
    flush_with_markers(&d, "alerts", &stalled);
    let kept = whole_increasing(&text_lines(&stalled.bytes()), "slow.drop");
    assert!(
        kept.len() < N,
        "slow.drop: expected a stalled drop-newest reader to lose lines, got all {N}"
    );
    assert_eq!(kept.first(), Some(&0), "drop-newest keeps the oldest lines");

    let c = d.counters();
    assert!(
        c.subscriber("slow.drop", "dropped") > 0,
        "slow.drop dropped=0:\n{c}"
    );
    assert_eq!(
        c.subscriber("slow.block", "dropped"),
        0,
        "slow.block dropped:\n{c}"
    );
    assert_eq!(
        c.subscriber("slow.block", "discarded"),
        discarded_before,
        "slow.block discarded lines while its reader was attached:\n{c}"
    );
    let received = split_lines(&stalled.bytes()).len() as u64;
    assert_eq!(
        c.subscriber("slow.drop", "lines_out"),
        received,
        "slow.drop lines_out should equal lines its reader got:\n{c}"
    );
    let lines_in = c.input("alerts", "lines_in");
    let accounted = c.subscriber("slow.drop", "lines_out")
        + c.subscriber("slow.drop", "dropped")
        + c.subscriber("slow.drop", "discarded");
    assert_eq!(
        accounted, lines_in,
        "slow.drop: lines_out + dropped + discarded should equal input lines_in:\n{c}"
    );
}

#[test]
fn drop_oldest_keeps_whole_lines_and_the_newest() {
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers.old]
from = ["alerts"]
when_full = "drop-oldest"
buffer_bytes = 4096
"#,
    );
    let r = SlowReader::start(&d.path("old"), 65536, Duration::ZERO);
    d.attach("alerts", &[&r]);
    r.pause();

    // Lines of varying length (not aligned to the buffer or the pipe).
    let line = |seq: usize| {
        let len = 20 + (seq * 37) % 280;
        let mut l = format!("{seq:06}:{len:03}:");
        let fill = char::from(b'a' + (seq % 26) as u8);
        while l.len() < len {
            l.push(fill);
        }
        l
    };
    const N: usize = 5_000;
    let mut f = d.open_writer("alerts");
    let writer = thread::spawn(move || {
        for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
            let batch: String = chunk.iter().map(|&i| format!("{}\n", line(i))).collect();
            f.write_all(batch.as_bytes()).expect("writing");
        }
    });
    join_within(writer, TIMEOUT, "writer (drop-oldest never blocks)");
    // Make sure the daemon has taken every line before the reader resumes.
    d.wait_counters("every line read from the input", |c| {
        c.input("alerts", "lines_in") >= N as u64
    });

    r.resume();
    flush_with_markers(&d, "alerts", &r);
    let got = text_lines(&r.bytes());
    let mut prev: Option<usize> = None;
    let mut seqs = Vec::new();
    for l in got.iter().filter(|l| !l.starts_with("end-")) {
        let seq: usize = l
            .get(..6)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("drop-oldest: torn line {l:?}"));
        assert_eq!(*l, line(seq), "drop-oldest: line {seq} is not whole");
        assert!(prev.is_none_or(|p| seq > p), "line {seq} after {prev:?}");
        prev = Some(seq);
        seqs.push(seq);
    }
    assert!(
        seqs.len() < N,
        "expected drops with a stalled reader, got all {N}"
    );
    assert_eq!(
        seqs.last(),
        Some(&(N - 1)),
        "drop-oldest must keep the newest line"
    );
    let c = d.counters();
    assert!(c.subscriber("old", "dropped") > 0, "dropped=0:\n{c}");
}

// ---------------------------------------------------------------------------
// Resources.

#[test]
fn reader_attach_detach_cycles_keep_fd_count_flat() {
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]
"#,
    );
    let sub = d.path("alerts.tail");
    let cycle = |i: usize| {
        let p = sub.clone();
        let reader = thread::spawn(move || {
            let mut f = File::open(&p).expect("opening subscriber");
            let mut buf = [0u8; 4096];
            let _ = f.read(&mut buf);
        });
        eventually(TIMEOUT, || {
            d.write("alerts", b"cycle\n");
            if reader.is_finished() {
                Ok(())
            } else {
                Err(format!("cycle {i}: reader did not get a line"))
            }
        });
        reader.join().expect("reader thread");
    };
    // Let the daemon notice the last reader left, then count.
    let settled_fds = || {
        d.write("alerts", b"settle\n");
        d.counters();
        d.steady_fd_count()
    };

    for i in 0..10 {
        cycle(i);
    }
    let baseline = settled_fds();
    for i in 10..200 {
        cycle(i);
    }
    let after = settled_fds();
    assert!(
        after <= baseline + 3,
        "fd count grew over 190 attach/detach cycles: expected <= {}, got {after} (baseline {baseline})",
        baseline + 3
    );
    d.assert_running("after attach/detach cycles");
}

#[test]
fn idle_daemon_uses_no_cpu() {
    let d = Daemon::start(ONE_SUB_RAW_SINK);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    d.write("alerts", b"warm\n");
    r.wait_data_lines(1);

    let before = d.cpu_ticks();
    thread::sleep(Duration::from_secs(3));
    let after = d.cpu_ticks();
    assert!(
        after - before <= 1,
        "idle daemon (pid {}) used CPU: expected utime+stime to grow by <= 1 tick over 3 s, got {}",
        d.pid(),
        after - before
    );
}

// ---------------------------------------------------------------------------
// Files and permissions.

const MODES: &str = r#"
[inputs.alerts]
mode = 0o620

[inputs.events]

[inputs.open]
mode = 0o666

[subscribers."alerts.tail"]
from = ["alerts"]
mode = 0o640

[subscribers."events.tail"]
from = ["events"]

[subscribers."open.tail"]
from = ["open"]
mode = 0o604
"#;

fn check_modes_under_umask(umask: &str) {
    let d = Setup::new(MODES).umask(umask).start();
    for (name, mode) in [
        ("alerts", 0o620),
        ("events", 0o620),
        ("open", 0o666),
        ("alerts.tail", 0o640),
        ("events.tail", 0o640),
        ("open.tail", 0o604),
    ] {
        assert_fifo(&d.path(name), mode);
    }
    assert_eq!(
        mode_of(&d.setup.dir),
        0o755,
        "dir created by the daemon under umask {umask}: expected 0755"
    );
}

#[test]
fn fifo_modes_are_exact_under_umask_077() {
    check_modes_under_umask("077");
}

#[test]
fn fifo_modes_are_exact_under_umask_000() {
    check_modes_under_umask("000");
}

#[test]
fn ready_is_sent_only_when_every_fifo_exists() {
    let d = Daemon::start(MODES);
    for name in [
        "alerts",
        "events",
        "open",
        "alerts.tail",
        "events.tail",
        "open.tail",
    ] {
        let md = fs::symlink_metadata(d.path(name))
            .unwrap_or_else(|e| panic!("after READY=1, {name} is missing: {e}"));
        assert!(
            md.file_type().is_fifo(),
            "after READY=1, {name} is not a FIFO"
        );
    }
}

#[test]
fn group_is_applied_to_every_fifo() {
    if !require_root("group_is_applied_to_every_fifo") {
        return;
    }
    // Any non-root group that exists here will do.
    let groups = fs::read_to_string("/etc/group").unwrap_or_default();
    let Some((name, gid)) = groups.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let gid: u32 = f.get(2)?.parse().ok()?;
        (gid != 0).then(|| (f[0].to_owned(), gid))
    }) else {
        eprintln!("skipping group_is_applied_to_every_fifo: no non-root group in /etc/group");
        return;
    };
    let d = Daemon::start(&format!("group = \"{name}\"\n{MODES}"));
    for fifo in [
        "alerts",
        "events",
        "open",
        "alerts.tail",
        "events.tail",
        "open.tail",
    ] {
        let md = fs::symlink_metadata(d.path(fifo)).unwrap();
        assert_eq!(md.gid(), gid, "group of {fifo}: expected {name} ({gid})");
    }
    assert_fifo(&d.path("alerts"), 0o620);
    assert_fifo(&d.path("alerts.tail"), 0o640);
}

const SIMPLE: &str = r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]
"#;

/// Starts a daemon that must refuse with 73 and name `path` in stderr.
/// Returns the exited daemon, which keeps the temp dir alive for checks.
fn assert_refused_73(s: Setup, path: &Path, what: &str) -> Daemon {
    let d = s.spawn();
    d.assert_exit_code(73, what);
    let err = d.stderr();
    assert!(
        err.contains(&path.display().to_string()),
        "{what}: expected stderr to name {}, got:\n{err}",
        path.display()
    );
    d
}

#[test]
fn regular_file_at_fifo_name_is_refused_with_73_and_left_untouched() {
    let s = Setup::new(SIMPLE);
    make_dir(&s);
    let target = s.dir.join("alerts");
    fs::write(&target, "precious\n").unwrap();
    let before = fs::metadata(&target).unwrap();

    let _d = assert_refused_73(s, &target, "regular file at an input name");

    let after = fs::symlink_metadata(&target).expect("the file must survive");
    assert!(after.file_type().is_file(), "expected still a regular file");
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "precious\n",
        "content changed"
    );
    assert_eq!(
        after.modified().unwrap(),
        before.modified().unwrap(),
        "mtime changed"
    );
    assert_eq!(after.ino(), before.ino(), "file replaced");
}

#[test]
fn symlink_at_fifo_name_is_refused_with_73_and_target_untouched() {
    let s = Setup::new(SIMPLE);
    make_dir(&s);
    let outside = s.root.join("outside.txt");
    fs::write(&outside, "outside\n").unwrap();
    let before = fs::metadata(&outside).unwrap();
    let link = s.dir.join("alerts.tail");
    std::os::unix::fs::symlink(&outside, &link).unwrap();

    let _d = assert_refused_73(s, &link, "symlink at a subscriber name");

    let md = fs::symlink_metadata(&link).expect("the symlink must survive");
    assert!(md.file_type().is_symlink(), "expected still a symlink");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        outside,
        "symlink target changed"
    );
    let after = fs::symlink_metadata(&outside).unwrap();
    assert!(
        after.file_type().is_file(),
        "target is no longer a regular file"
    );
    assert_eq!(
        fs::read_to_string(&outside).unwrap(),
        "outside\n",
        "target content changed"
    );
    assert_eq!(
        after.modified().unwrap(),
        before.modified().unwrap(),
        "target mtime changed"
    );
    assert_eq!(
        mode_of(&outside),
        before.mode() & 0o7777,
        "target mode changed"
    );
}

#[test]
fn directory_at_fifo_name_is_refused_with_73_and_left_untouched() {
    let s = Setup::new(SIMPLE);
    make_dir(&s);
    let target = s.dir.join("alerts");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), "keep\n").unwrap();
    let before = fs::metadata(&target).unwrap();

    let _d = assert_refused_73(s, &target, "directory at an input name");

    let after = fs::symlink_metadata(&target).expect("the directory must survive");
    assert!(after.file_type().is_dir(), "expected still a directory");
    assert_eq!(
        after.modified().unwrap(),
        before.modified().unwrap(),
        "mtime changed"
    );
    assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "keep\n");
}

#[test]
fn group_or_world_writable_dir_is_refused_with_73() {
    for mode in [0o775, 0o757, 0o1777] {
        let s = Setup::new(SIMPLE);
        fs::create_dir(&s.dir).unwrap();
        fs::set_permissions(&s.dir, fs::Permissions::from_mode(mode)).unwrap();
        let dir = s.dir.clone();
        let _d = assert_refused_73(s, &dir, &format!("dir with mode {mode:04o}"));
        assert_eq!(
            mode_of(&dir),
            mode,
            "the daemon must not chmod a refused dir"
        );
        assert_absent(&dir.join("alerts"), "nothing is created in a refused dir");
    }
}

#[test]
fn dir_that_is_a_symlink_is_refused_with_73() {
    let s = Setup::new(SIMPLE);
    let real = s.root.join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&real, &s.dir).unwrap();
    let dir = s.dir.clone();

    let _d = assert_refused_73(s, &dir, "dir is a symlink");

    assert!(fs::symlink_metadata(&dir).unwrap().file_type().is_symlink());
    let entries: Vec<_> = fs::read_dir(&real).unwrap().collect();
    assert!(
        entries.is_empty(),
        "nothing may be created through a symlinked dir, found {entries:?}"
    );
}

#[test]
fn dir_owned_by_another_user_is_refused_with_73() {
    if !require_root("dir_owned_by_another_user_is_refused_with_73") {
        return;
    }
    let s = Setup::new(SIMPLE);
    make_dir(&s);
    std::os::unix::fs::chown(&s.dir, Some(65534), Some(65534)).unwrap();
    let dir = s.dir.clone();
    let _d = assert_refused_73(s, &dir, "dir owned by uid 65534");
    assert_absent(&dir.join("alerts"), "nothing is created in a refused dir");
}

#[test]
fn stale_fifo_is_replaced_by_a_fresh_inode_without_stale_data() {
    let s = Setup::new(SIMPLE);
    make_dir(&s);
    let path = s.dir.join("alerts");
    rustix::fs::mkfifoat(CWD, &path, Mode::from_raw_mode(0o600)).unwrap();
    // Keep the old inode alive (so its number cannot be reused) and put
    // stale data and a stale writer on it.
    let old_reader = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(&path)
        .unwrap();
    let mut old_writer = open_fifo_writer(&path);
    old_writer.write_all(b"stale\n").unwrap();
    let old_ino = old_reader.metadata().unwrap().ino();

    let d = s.start();
    assert_fifo(&path, 0o620);
    assert_ne!(
        inode(&path),
        old_ino,
        "expected a fresh inode at {}",
        path.display()
    );

    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    d.write("alerts", b"fresh\n");
    r.wait_data_lines(1);
    assert_eq!(
        text_lines(&r.bytes()),
        ["fresh"],
        "stale data must not be delivered"
    );
    drop(old_writer);
}

#[test]
fn second_instance_on_same_dir_exits_75_and_first_keeps_working() {
    let d = Daemon::start(SIMPLE);
    let inodes = [inode(&d.path("alerts")), inode(&d.path("alerts.tail"))];
    let cfg = d.setup.config.to_str().unwrap().to_owned();

    let out = d.setup.run(&["--config", &cfg]);
    out.assert_code(75, "second instance on the same dir");

    d.assert_running("after a second instance was refused");
    assert_eq!(
        [inode(&d.path("alerts")), inode(&d.path("alerts.tail"))],
        inodes,
        "the second instance must not touch the first one's FIFOs"
    );
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    d.write("alerts", b"still here\n");
    r.wait_data_lines(1);
    assert_eq!(text_lines(&r.bytes()), ["still here"]);
}

// ---------------------------------------------------------------------------
// Config checking and command line.

/// Runs `--check` on `body` and asserts exit 78 with `CONFIG:LINE:COL:` for
/// the line containing one of `offending`, and `key` named in stderr.
fn assert_config_error(body: &str, offending: &[&str], key: &str) {
    let s = Setup::new(body);
    let lines: Vec<usize> = offending.iter().map(|o| s.line_of(o)).collect();
    let out = s.check();
    out.assert_code(78, &format!("--check on config with bad {key}"));
    let cfg = s.config.display().to_string();
    let located = lines.iter().any(|line| {
        let prefix = format!("{cfg}:{line}:");
        out.stderr.match_indices(&prefix).any(|(i, m)| {
            let rest = &out.stderr[i + m.len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with(':')
        })
    });
    assert!(
        located,
        "expected stderr to locate the error as {cfg}:LINE:COL: with LINE in {lines:?}, got:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(key),
        "expected stderr to name {key:?}, got:\n{}",
        out.stderr
    );
}

#[test]
fn check_rejects_unknown_key() {
    assert_config_error(
        "[inputs.alerts]\nmode = 0o620\ncolour = \"red\"\n",
        &["colour"],
        "colour",
    );
}

#[test]
fn check_rejects_unknown_broker_key() {
    assert_config_error(
        "max_line_byte = 10\n[inputs.alerts]\n",
        &["max_line_byte"],
        "max_line_byte",
    );
}

#[test]
fn check_rejects_wrong_type() {
    assert_config_error(
        "[inputs.alerts]\n\n[subscribers.t]\nfrom = [\"alerts\"]\nbuffer_bytes = \"big\"\n",
        &["buffer_bytes"],
        "buffer_bytes",
    );
}

#[test]
fn check_rejects_mode_with_special_bits() {
    assert_config_error("[inputs.alerts]\nmode = 0o1777\n", &["mode ="], "mode");
}

#[test]
fn check_rejects_symbolic_mode_string() {
    assert_config_error(
        "[inputs.alerts]\n\n[subscribers.t]\nfrom = [\"alerts\"]\nmode = \"rw\"\n",
        &["mode ="],
        "mode",
    );
}

#[test]
fn check_rejects_from_naming_no_input() {
    assert_config_error(
        "[inputs.alerts]\n\n[subscribers.t]\nfrom = [\"nosuch\"]\n",
        &["nosuch"],
        "nosuch",
    );
}

#[test]
fn check_rejects_empty_from() {
    assert_config_error(
        "[inputs.alerts]\n\n[sinks.s]\npath = \"s.log\"\nfrom = []\n",
        &["from = []"],
        "from",
    );
}

#[test]
fn check_rejects_bad_name() {
    assert_config_error("[inputs.\"a/b\"]\n", &["a/b"], "a/b");
}

#[test]
fn check_rejects_same_name_for_input_and_subscriber() {
    assert_config_error(
        "[inputs.alerts]\n\n[subscribers.alerts]\nfrom = [\"alerts\"]\n",
        &["[inputs.alerts]", "[subscribers.alerts]"],
        "alerts",
    );
}

#[test]
fn check_rejects_invalid_toml_syntax() {
    let s = Setup::new("[inputs.alerts]\nmode = 0o620 oops\n");
    let line = s.line_of("oops");
    let out = s.check();
    out.assert_code(78, "--check on invalid TOML");
    let want = format!("{}:{line}:", s.config.display());
    assert!(
        out.stderr.contains(&want),
        "expected stderr to contain {want:?}, got:\n{}",
        out.stderr
    );
}

#[test]
fn running_with_invalid_config_exits_78() {
    let s = Setup::new("[inputs.alerts]\nbogus = 1\n");
    let d = s.spawn();
    d.assert_exit_code(78, "running with an unknown key");
    assert!(
        d.stderr().contains("bogus"),
        "stderr should name the key:\n{}",
        d.stderr()
    );
    assert_absent(&d.setup.dir.join("alerts"), "no FIFO for an invalid config");
}

#[test]
fn glob_matching_nothing_is_only_a_warning() {
    let s = Setup::new(
        r#"
[inputs.alerts]

[subscribers.z]
from = ["zz*"]
"#,
    );
    let out = s.check();
    out.assert_code(0, "--check with a glob that matches nothing");
    assert!(
        out.stderr.contains("zz*") || out.stdout.contains("zz*"),
        "expected a warning naming the glob zz*, got:\n{out}"
    );
    let d = s.start();
    d.assert_running("with a glob that matches nothing");
}

#[test]
fn check_on_good_config_names_every_fifo_and_creates_nothing() {
    let s = Setup::new(
        r#"
[inputs.alpha]
mode = 0o600

[inputs.beta]

[subscribers.watch]
from = ["alpha"]
mode = 0o644

[sinks.archive]
path = "archive.log"
from = ["*"]
"#,
    );
    let out = s.check();
    out.assert_code(0, "--check on a good config");
    let line_with = |needle: &str| -> &str {
        out.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("expected a --check line containing {needle:?}, got:\n{out}"))
    };
    line_with(&format!("dir: {}", s.dir.display()));
    line_with(&format!("log_dir: {}", s.log_dir.display()));
    for (name, mode) in [("alpha", "0600"), ("beta", "0620"), ("watch", "0644")] {
        let l = line_with(&s.dir.join(name).display().to_string());
        assert!(
            l.contains(mode),
            "--check line for {name}: expected mode {mode}, got {l:?}"
        );
    }
    let watch = line_with(&s.dir.join("watch").display().to_string());
    assert!(
        watch.contains("alpha"),
        "--check line for watch should show its route: {watch:?}"
    );
    line_with(&s.log_dir.join("archive.log").display().to_string());
    assert_absent(&s.dir, "--check must not create the dir");
}

#[test]
fn bad_command_line_exits_64() {
    for args in [
        &["--bogus"][..],
        &["--config"][..],
        &["--check", "--config"][..],
        &["stray-argument"][..],
    ] {
        let out = util::run_binary(args, TIMEOUT);
        out.assert_code(64, &format!("fifo-broker {args:?}"));
    }
}

#[test]
fn version_and_help_exit_0() {
    let out = util::run_binary(&["--version"], TIMEOUT);
    out.assert_code(0, "--version");
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version should print {}, got:\n{out}",
        env!("CARGO_PKG_VERSION")
    );
    let out = util::run_binary(&["--help"], TIMEOUT);
    out.assert_code(0, "--help");
    assert!(
        out.stdout.contains("--config"),
        "--help should mention --config:\n{out}"
    );
}

#[test]
fn missing_config_file_is_reported_by_name() {
    let s = Setup::new("");
    let missing = s.root.join("nope.toml");
    let missing = missing.to_str().unwrap();
    for args in [
        &["--config", missing][..],
        &["--check", "--config", missing][..],
    ] {
        let out = s.run(args);
        assert!(
            matches!(out.status.code(), Some(78) | Some(1)),
            "fifo-broker {args:?}: expected exit 78 (or 1), got:\n{out}"
        );
        assert!(
            out.stderr.contains(missing),
            "fifo-broker {args:?}: stderr should name {missing}:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Stopping.

#[test]
fn sigterm_exits_0_and_removes_every_fifo() {
    let d = Daemon::start(MODES);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);

    d.signal(Signal::TERM);
    d.wait_notify("STOPPING=1", TIMEOUT);
    d.assert_exit_code(0, "SIGTERM");
    for name in [
        "alerts",
        "events",
        "open",
        "alerts.tail",
        "events.tail",
        "open.tail",
    ] {
        assert_absent(&d.path(name), "after SIGTERM");
    }
    let mut r = r;
    eventually(TIMEOUT, || {
        if r.exited() {
            Ok(())
        } else {
            Err("expected an attached reader to get EOF when the daemon stops".to_owned())
        }
    });
}

#[test]
fn sigint_exits_0_and_removes_every_fifo() {
    let d = Daemon::start(SIMPLE);
    d.signal(Signal::INT);
    d.assert_exit_code(0, "SIGINT");
    assert_absent(&d.path("alerts"), "after SIGINT");
    assert_absent(&d.path("alerts.tail"), "after SIGINT");
}

#[test]
fn fifo_paths_replaced_behind_the_daemon_are_left_alone_on_stop() {
    let d = Daemon::start(
        r#"
[inputs.alerts]
[inputs.events]

[subscribers."alerts.tail"]
from = ["alerts"]
"#,
    );
    let tail = d.path("alerts.tail");
    fs::remove_file(&tail).unwrap();
    fs::write(&tail, "mine\n").unwrap();
    let events = d.path("events");
    fs::remove_file(&events).unwrap();
    rustix::fs::mkfifoat(CWD, &events, Mode::from_raw_mode(0o600)).unwrap();
    let events_ino = inode(&events);

    d.signal(Signal::TERM);
    d.assert_exit_code(0, "SIGTERM");

    assert_eq!(
        fs::read_to_string(&tail).unwrap_or_else(|e| panic!("{} was removed: {e}", tail.display())),
        "mine\n",
        "a regular file at a FIFO's path must be left alone"
    );
    assert_eq!(
        inode(&events),
        events_ino,
        "someone else's FIFO at an input's path must be left alone"
    );
    assert_absent(&d.path("alerts"), "the daemon's own FIFO");
}

/// ext4 gives a freed inode number to the next file at once: a FIFO
/// someone else made at a subscriber's path right after removing the
/// daemon's may have the same number. It is still not the daemon's: no line
/// is written into it and it is left alone at stop.
#[test]
fn a_foreign_fifo_that_reuses_the_inode_number_is_not_taken_for_ours() {
    let d = Daemon::start("[inputs.a]\n[subscribers.s2]\nfrom = [\"a\"]\n");
    let s2 = d.path("s2");
    let old = inode(&s2);
    fs::remove_file(&s2).unwrap();
    rustix::fs::mkfifoat(CWD, &s2, Mode::from_raw_mode(0o644)).unwrap();
    let reused = inode(&s2) == old;
    println!("inode number reused by the foreign FIFO: {reused}");
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&s2)
        .unwrap();
    d.write("a", b"secret\n");
    d.wait_counters("the line routed", |c| c.get("input", "a", "lines_in") == 1);
    thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    let _ = reader.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "a line went into someone else's FIFO: {got:?}"
    );
    d.signal(Signal::TERM);
    d.assert_exit_code(0, "SIGTERM");
    assert!(
        s2.exists(),
        "someone else's FIFO must be left alone at stop"
    );
}

#[test]
fn sink_rotates_at_max_bytes_and_keeps_at_most_keep_files() {
    let d = Daemon::start(
        r#"
[inputs.alerts]

[sinks.archive]
path = "archive.log"
from = ["alerts"]
format = "{line}"
max_bytes = 1000
keep = 2
"#,
    );
    const N: usize = 100;
    let line = |i: usize| format!("line-{i:03}-{}", "r".repeat(40));
    for i in 0..N {
        d.write("alerts", format!("{}\n", line(i)).as_bytes());
    }
    let files: Vec<PathBuf> = ["archive.log.2", "archive.log.1", "archive.log"]
        .iter()
        .map(|n| d.log_path(n))
        .collect();
    let read_all = || -> Vec<String> {
        files
            .iter()
            .flat_map(|f| text_lines(&fs::read(f).unwrap_or_default()))
            .collect()
    };
    eventually(TIMEOUT, || {
        let all = read_all();
        if all.last() == Some(&line(N - 1)) {
            Ok(())
        } else {
            Err(format!(
                "expected the last line in the sink files, got {:?}",
                all.last()
            ))
        }
    });
    d.wait_counters("sink wrote every line", |c| {
        c.sink("archive", "lines_out") >= N as u64
    });
    assert!(
        fs::metadata(&files[0]).is_ok(),
        "expected archive.log.2 after rotation"
    );
    assert!(
        fs::metadata(&files[1]).is_ok(),
        "expected archive.log.1 after rotation"
    );
    assert_absent(&d.log_path("archive.log.3"), "keep = 2");
    for f in &files {
        let len = fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        assert!(
            len <= 1000 + 60,
            "{}: expected about max_bytes (1000), got {len}",
            f.display()
        );
    }
    // What is kept is an unbroken, ordered tail of what was written.
    let all = read_all();
    let first: usize = all[0][5..8].parse().expect("line number");
    let want: Vec<String> = (first..N).map(line).collect();
    assert_eq!(
        all, want,
        "rotated files should hold lines {first}..{N} in order"
    );
}

#[test]
fn sigterm_delivers_every_line_written_before_it() {
    const N: usize = 50_000;
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]
when_full = "block"

[sinks.raw]
path = "raw.log"
from = ["alerts"]
format = "{line}"
"#,
    );
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    {
        let mut f = d.open_writer("alerts");
        write_numbered(&mut f, "n", N, 100);
    }
    d.signal(Signal::TERM);
    d.assert_exit_code(0, "SIGTERM with lines in flight");

    let sink = text_lines(&fs::read(d.log_path("raw.log")).unwrap_or_default());
    assert_numbered(&sink, "n", N, "sink after SIGTERM");
    let sub = r.wait_data_lines(N);
    let sub: Vec<String> = sub
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert_numbered(&sub, "n", N, "attached subscriber after SIGTERM");
}

/// A writer that never stops cannot hold a stop: the last reads take what
/// the pipe holds, then the read end closes and the writer gets EPIPE.
#[test]
fn sigterm_with_a_writer_that_never_stops_still_exits_promptly() {
    let d = Daemon::start(
        "[inputs.alerts]\n[sinks.raw]\npath = \"raw.log\"\nfrom = [\"alerts\"]\nformat = \"{line}\"\n",
    );
    let mut w = d.open_writer("alerts");
    let flood = thread::spawn(move || {
        let chunk = "flood line of some forty bytes or so...\n".repeat(1000);
        let mut writes = 0u64;
        while w.write_all(chunk.as_bytes()).is_ok() {
            writes += 1;
        }
        writes
    });
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    d.signal(Signal::TERM);
    let status = d.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "a flooding writer held the stop for {:?}",
        signalled.elapsed()
    );
    let writes = join_within(flood, TIMEOUT, "the writer, which should get EPIPE");
    assert!(writes > 0, "the writer wrote nothing");
    // Whole lines; the last may be the start of one (a write of more than
    // PIPE_BUF bytes is not atomic, and an unterminated tail at the stop
    // becomes a line of its own).
    let sink = fs::read(d.log_path("raw.log")).expect("reading the sink");
    let line: &[u8] = b"flood line of some forty bytes or so...";
    let lines: Vec<&[u8]> = sink.split_inclusive(|&b| b == b'\n').collect();
    let (last, whole) = lines.split_last().expect("the sink holds lines");
    assert!(
        whole.iter().all(|l| *l == [line, b"\n"].concat()),
        "the sink holds whole lines only"
    );
    assert!(
        last.ends_with(b"\n") && line.starts_with(&last[..last.len() - 1]),
        "the last line is the start of a flood line: {:?}",
        String::from_utf8_lossy(last)
    );
}

// ---------------------------------------------------------------------------
// Reload, watchdog, journal.

#[test]
fn sighup_with_invalid_config_keeps_the_old_config_running() {
    let mut d = Daemon::start(SIMPLE);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);

    d.rewrite_config("[inputs.alerts]\nmode = 0o620 oops\n");
    let line = d.setup.line_of("oops");
    let located = format!("{}:{line}:", d.setup.config.display());
    d.signal(Signal::HUP);
    d.wait_notify("RELOADING=1", TIMEOUT);
    eventually(TIMEOUT, || {
        if d.stderr().contains(&located) {
            Ok(())
        } else {
            Err(format!(
                "expected the reload error located at {located} in the log"
            ))
        }
    });
    d.assert_running("after a reload with an invalid config");
    eventually(TIMEOUT, || {
        let notes = d.notes();
        if notes
            .iter()
            .any(|n| n.contains("STATUS=") && n.contains(&format!(":{line}:")))
        {
            Ok(())
        } else {
            Err(format!(
                "expected STATUS= to carry the error at line {line}, got {notes:?}"
            ))
        }
    });

    d.write("alerts", b"still routed\n");
    r.wait_data_lines(1);
    assert_eq!(
        text_lines(&r.bytes()),
        ["still routed"],
        "old config after a failed reload"
    );
    assert_fifo(&d.path("alerts"), 0o620);
}

#[test]
fn sighup_applies_added_removed_and_changed_fifos_keeping_unchanged_ones_open() {
    let mut d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]

[subscribers."old.tail"]
from = ["alerts"]
"#,
    );
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    let kept = [inode(&d.path("alerts")), inode(&d.path("alerts.tail"))];

    d.rewrite_config(
        r#"
[inputs.alerts]
[inputs.events]

[subscribers."alerts.tail"]
from = ["alerts", "events"]
mode = 0o600

[subscribers."events.tail"]
from = ["events"]
"#,
    );
    d.signal(Signal::HUP);
    d.wait_notify("RELOADING=1", TIMEOUT);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    let reloading = d
        .notes()
        .into_iter()
        .find(|n| n.lines().any(|l| l == "RELOADING=1"))
        .unwrap();
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "RELOADING=1 should come with MONOTONIC_USEC=, got {reloading:?}"
    );

    assert_fifo(&d.path("events"), 0o620);
    assert_fifo(&d.path("events.tail"), 0o640);
    assert_absent(&d.path("old.tail"), "subscriber removed by reload");
    assert_fifo(&d.path("alerts.tail"), 0o600);
    assert_eq!(
        [inode(&d.path("alerts")), inode(&d.path("alerts.tail"))],
        kept,
        "unchanged FIFOs must be kept, not recreated"
    );
    // The reader attached before the reload stays attached, and the new
    // route is live.
    d.write("alerts", b"from alerts\n");
    d.write("events", b"from events\n");
    r.wait_data_lines(2);
    let got: BTreeSet<String> = text_lines(&r.bytes()).into_iter().collect();
    assert_eq!(
        got,
        ["from alerts", "from events"].map(String::from).into(),
        "reader attached before the reload"
    );
}

#[test]
fn sighup_reopens_sink_files_after_logrotate_moved_them() {
    let d = Daemon::start(ONE_SUB_RAW_SINK);
    d.write("alerts", b"before\n");
    wait_file_lines(&d.log_path("raw.log"), 1);
    let moved = d.log_path("raw.log.moved");
    fs::rename(d.log_path("raw.log"), &moved).unwrap();

    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    d.write("alerts", b"after\n");
    let now = wait_file_lines(&d.log_path("raw.log"), 1);
    assert_eq!(now, ["after"], "new raw.log after SIGHUP");
    assert_eq!(
        text_lines(&fs::read(&moved).unwrap()),
        ["before"],
        "the moved file keeps only what was written before the reopen"
    );
}

#[test]
fn sighup_with_a_broken_config_still_reopens_sink_files() {
    // logrotate's postrotate sends HUP whatever state the config is in.
    let mut d = Daemon::start(ONE_SUB_RAW_SINK);
    d.write("alerts", b"before\n");
    wait_file_lines(&d.log_path("raw.log"), 1);
    let moved = d.log_path("raw.log.1");
    fs::rename(d.log_path("raw.log"), &moved).unwrap();
    d.rewrite_config(&format!("{ONE_SUB_RAW_SINK}bogus = 1\n"));

    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    d.write("alerts", b"after\n");
    let now = wait_file_lines(&d.log_path("raw.log"), 1);
    assert_eq!(
        now,
        ["after"],
        "a new raw.log after SIGHUP, though the reload failed"
    );
    assert_eq!(
        text_lines(&fs::read(&moved).unwrap()),
        ["before"],
        "the rotated file keeps only what was written before the reopen"
    );
    assert!(
        d.stderr().contains("reload failed"),
        "the failed reload is logged:\n{}",
        d.stderr()
    );
}

#[test]
fn reload_lowering_max_line_bytes_under_a_line_in_progress() {
    // Keys before the first table belong to [broker].
    let with_max = |max: usize| format!("max_line_bytes = {max}\n{ONE_SUB_RAW_SINK}");
    let mut d = Daemon::start(&with_max(100_000));
    let mut w = d.open_writer("alerts");
    // 90,000 bytes of a line that has not ended yet.
    w.write_all(&vec![b'a'; 90_000]).unwrap();
    d.wait_counters("the partial line was read", |c| {
        c.input("alerts", "bytes_in") >= 90_000
    });
    d.rewrite_config(&with_max(100));
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    w.write_all(&vec![b'b'; 70_000]).unwrap();
    w.write_all(b"\nnext\n").unwrap();
    drop(w);
    let lines = wait_file_lines(&d.log_path("raw.log"), 2);
    assert_eq!(
        (lines[0].len(), lines[0].bytes().all(|b| b == b'a')),
        (100, true),
        "the long line is cut to the new max_line_bytes"
    );
    assert_eq!(lines[1], "next");
    d.assert_running("after lowering max_line_bytes under a line in progress");
}

#[test]
fn sighup_recreates_a_fifo_deleted_behind_the_daemons_back() {
    let d = Daemon::start(SIMPLE);
    fs::remove_file(d.path("alerts.tail")).unwrap();
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    assert_fifo(&d.path("alerts.tail"), 0o640);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
}

#[test]
fn watchdog_is_pinged_when_systemd_asks() {
    let d = Setup::new(SIMPLE).env("WATCHDOG_USEC", "200000").start();
    let first = d.notes().len();
    d.wait_notify_n("WATCHDOG=1", 2, TIMEOUT);
    assert!(
        d.notes().len() > first,
        "expected WATCHDOG=1 pings after READY=1"
    );
}

/// Sends SIGHUP `n` times, each once the previous reload is logged as done,
/// so that none coalesce; `done` is how many were logged before.
fn reload_one_by_one(d: &Daemon, done: usize, n: usize) {
    for k in done + 1..=done + n {
        d.signal(Signal::HUP);
        eventually(TIMEOUT, || {
            d.assert_running("reloading while nobody reads the notify socket");
            let logged = d.stderr().matches("reloaded: ").count();
            if logged >= k {
                Ok(())
            } else {
                Err(format!(
                    "expected reload {k} to be logged, {logged} were: is the loop stuck?"
                ))
            }
        });
    }
}

#[test]
fn a_supervisor_that_stops_reading_notifications_never_stalls_the_daemon() {
    // Every reload sends two datagrams; the notify socket queues only
    // net.unix.max_dgram_qlen (10 by default) of them, and nobody reads it
    // from here on: start() already read READY=1.
    const RELOADS: usize = 40;
    let qlen: usize = fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(10);
    let d = Daemon::start(SIMPLE);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    reload_one_by_one(&d, 0, RELOADS);

    d.write("alerts", b"after the reloads\n");
    assert_eq!(
        wait_text_lines(&r, 1, TIMEOUT, "subscriber after the reloads"),
        ["after the reloads"],
        "lines still flow while systemd does not read"
    );
    d.assert_running("after the reloads");

    if 2 * RELOADS > qlen {
        assert!(
            d.stderr().contains("not reading notifications"),
            "expected a warning about the full notify socket\n--- stderr ---\n{}",
            d.stderr()
        );
        // Once systemd reads again, what waited arrives in one datagram:
        // the latest RELOADING=1, then the latest READY=1.
        eventually(TIMEOUT, || {
            d.wait_notify("READY=1", TIMEOUT); // reads what is queued
            let notes = d.notes();
            let merged = notes.iter().any(|n| {
                let lines: Vec<&str> = n.lines().collect();
                let at = |l| lines.iter().position(|&x| x == l);
                matches!((at("RELOADING=1"), at("READY=1")), (Some(a), Some(b)) if a < b)
            });
            if merged {
                Ok(())
            } else {
                Err(format!(
                    "expected one datagram with RELOADING=1 then READY=1 once the \
                     socket is read again, got {notes:?}"
                ))
            }
        });
    }

    // Full again, and SIGTERM's STOPPING=1 finds it full.
    reload_one_by_one(&d, RELOADS, qlen.min(RELOADS));
    d.signal(Signal::TERM);
    let status = d.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM while nobody reads the notify socket: expected exit 0, got {status:?}\n\
         --- stderr ---\n{}",
        d.stderr()
    );
}

#[test]
fn journal_stream_gives_priority_prefixes_and_no_timestamps() {
    let d = Setup::new(SIMPLE).journal_stream().start();
    d.counters();
    let err = d.stderr();
    for line in err.lines().filter(|l| !l.is_empty()) {
        let b = line.as_bytes();
        let prefixed = b.len() > 3 && b[0] == b'<' && b[1].is_ascii_digit() && b[2] == b'>';
        assert!(
            prefixed,
            "under JOURNAL_STREAM every log line should start with <N>: {line:?}"
        );
        let rest = &line[3..];
        let stamped = rest.starts_with('[') && rest[1..].starts_with(|c: char| c.is_ascii_digit());
        assert!(
            !stamped,
            "under JOURNAL_STREAM lines carry no timestamp: {line:?}"
        );
    }
}

#[test]
fn reader_waiting_in_open_gets_the_very_next_line() {
    let d = Daemon::start(SIMPLE);
    for round in 0..3 {
        let r = Cat::on(&d, "alerts.tail", &format!("r{round}"));
        if !r.wait_open_or_waiting(&d.path("alerts.tail")) {
            eprintln!(
                "skipping reader_waiting_in_open_gets_the_very_next_line: \
                 cannot see cat blocked in open() through /proc/PID/wchan"
            );
            return;
        }
        let line = format!("first-{round}");
        d.write("alerts", format!("{line}\n").as_bytes());
        r.wait_data_lines(1);
        assert_eq!(
            text_lines(&r.bytes()),
            [line],
            "round {round}: a reader waiting in open() must get the next line routed \
             (after the previous reader was killed)"
        );
        drop(r);
    }
}

#[test]
fn empty_lines_and_carriage_returns_are_delivered_as_lines() {
    let d = Daemon::start(ONE_SUB_RAW_SINK);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    d.write("alerts", b"a\n\nb\r\n\n");
    r.wait_data_lines(4);
    assert_eq!(
        data_lines(&r.bytes()),
        [&b"a"[..], b"", b"b\r", b""],
        "empty lines are lines too"
    );
}

#[test]
fn line_split_across_writes_and_writers_is_joined_until_last_writer_closes() {
    let d = Daemon::start(ONE_SUB_RAW_SINK);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);

    let bytes_before = d.counters().input("alerts", "bytes_in");
    let mut a = d.open_writer("alerts");
    a.write_all(b"one ").unwrap();
    a.write_all(b"line\npar").unwrap();
    // Writer b closes while a still holds the input open: "par" is not yet
    // a finished tail.
    d.write("alerts", b"t");
    d.wait_counters("13 more bytes read", |c| {
        c.input("alerts", "bytes_in") >= bytes_before + 13
    });
    a.write_all(b"ial\n").unwrap();
    drop(a);
    r.wait_data_lines(2);
    assert_eq!(
        text_lines(&r.bytes()),
        ["one line", "partial"],
        "a line written in pieces (by several writers) is one line"
    );
}

#[test]
fn long_line_over_default_limit_is_cut_to_65536_bytes() {
    let d = Daemon::start(ONE_SUB_RAW_SINK);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    let mut msg = vec![b'L'; 300_000];
    msg.extend_from_slice(b"\nafter\n");
    d.write("alerts", &msg);
    r.wait_data_lines(2);
    let got = data_lines(&r.bytes());
    assert_eq!(got.len(), 2, "expected the cut line and `after`");
    assert_eq!(got[0].len(), 65536, "default max_line_bytes is 65536");
    assert!(got[0].iter().all(|&b| b == b'L'), "cut line content");
    assert_eq!(got[1], b"after");
}

#[test]
fn sink_path_may_be_absolute() {
    let s = Setup::new("");
    let abs = s.root.join("elsewhere.log");
    let body = format!(
        "[inputs.alerts]\n\n[sinks.abs]\npath = \"{}\"\nfrom = [\"alerts\"]\nformat = \"{{line}}\"\n",
        abs.display()
    );
    let d = Setup::new(&body).start();
    d.write("alerts", b"absolute\n");
    assert_eq!(wait_file_lines(&abs, 1), ["absolute"]);
    assert_absent(
        &d.log_path("elsewhere.log"),
        "absolute path is not under log_dir",
    );
}

// ---------------------------------------------------------------------------
// Lifecycle under load: reloads, stop, restart, resources, systemd protocol.

/// The config of reload `k` in the reload-churn test. Input `stream`, its
/// subscriber `stream.tail` and its sink `raw` are in every one; around
/// them, other inputs, subscribers and a (moving) sink come and go.
/// `stream.tail` is `block` on every even `k`; on odd `k` it uses a drop
/// policy with a queue bigger than the whole stream, so nothing can be
/// dropped there either.
fn churn_config(k: usize) -> String {
    let (when_full, buffer_bytes) = match k % 4 {
        0 => ("block", 4096),
        1 => ("drop-newest", 2 << 20),
        2 => ("block", 65536),
        _ => ("drop-oldest", 4 << 20),
    };
    let mut c = format!(
        r#"
[inputs.stream]

[subscribers."stream.tail"]
from = ["stream"]
when_full = "{when_full}"
buffer_bytes = {buffer_bytes}

[sinks.raw]
path = "raw.log"
from = ["stream"]
format = "{{line}}"
when_full = "block"
"#
    );
    if k % 2 == 1 {
        c.push_str("\n[inputs.extra_a]\n\n[subscribers.\"extra_a.tail\"]\nfrom = [\"extra_a\"]\n");
    }
    if k % 3 != 0 {
        c.push_str(&format!(
            "\n[inputs.extra_b]\n\n[sinks.other]\npath = \"other-{}.log\"\n\
             from = [\"extra_b\", \"stream\"]\n",
            k % 2
        ));
    }
    if k % 4 == 2 {
        c.push_str("\n[subscribers.\"stream.idle\"]\nfrom = [\"stream\"]\nmode = 0o600\n");
    }
    c
}

/// Where `lines` first differs from `000000`, `000001`, ... `{n-1:06}`
/// (each exactly once, in order), naming the line; None if it does not.
fn first_seq_problem(lines: &[String], n: usize) -> Option<String> {
    for (pos, l) in lines.iter().enumerate() {
        let want = format!("{pos:06}");
        if *l == want {
            continue;
        }
        return Some(match l.parse::<usize>() {
            Ok(got) if l.len() == 6 && got < pos => format!(
                "line {l} duplicated or out of order: it came again at position {pos}, \
                 where {want} was expected"
            ),
            Ok(got) if l.len() == 6 => format!(
                "line {want} missing: position {pos} holds {l} ({} lines skipped)",
                got - pos
            ),
            _ => format!("foreign or torn line {l:?} at position {pos}, where {want} was expected"),
        });
    }
    match lines.len() {
        len if len < n => Some(format!(
            "lines {len:06}..={:06} missing: got only {len} of {n}",
            n - 1
        )),
        len if len > n => Some(format!("{} lines after the last one expected", len - n)),
        _ => None,
    }
}

/// Data lines of `data` without the end marker.
fn stream_lines(data: &[u8], end: &str) -> Vec<String> {
    text_lines(data).into_iter().filter(|l| l != end).collect()
}

#[test]
fn twenty_reloads_under_load_lose_no_line() {
    const N: usize = 100_000;
    const RELOADS: usize = 20;
    const BATCH: usize = 50;
    const END: &str = "end-of-stream";
    let started = Instant::now();
    let mut d = Daemon::start(&churn_config(0));
    let r = Cat::on(&d, "stream.tail", "r");
    d.attach("stream", &[&r]);

    // The writer is paced and kept at most two segments ahead of the
    // reloads, so every SIGHUP lands while lines are being written.
    let segment = N / (RELOADS + 1);
    let written = Arc::new(AtomicUsize::new(0));
    let reloads_done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (written, reloads_done) = (written.clone(), reloads_done.clone());
        let mut f = d.open_writer("stream");
        thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if i >= (reloads_done.load(Ordering::SeqCst) + 2) * segment {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let end = (i + BATCH).min(N);
                // One write() of whole lines (350 bytes): atomic on a pipe.
                let batch: String = (i..end).map(|n| format!("{n:06}\n")).collect();
                f.write_all(batch.as_bytes()).expect("writing into stream");
                i = end;
                written.store(i, Ordering::SeqCst);
                thread::sleep(Duration::from_micros(200));
            }
        })
    };

    let mut invalid = 0;
    let mut written_at_hup = Vec::new();
    for k in 1..=RELOADS {
        eventually(TIMEOUT, || {
            let w = written.load(Ordering::SeqCst);
            if w >= k * segment || writer.is_finished() {
                Ok(())
            } else {
                Err(format!(
                    "reload {k}: expected the writer past line {}, it wrote {w}",
                    k * segment
                ))
            }
        });
        let body = match k {
            7 => format!(
                "{}\n[subscribers.bad]\nfrom = [\"nosuch\"]\n",
                churn_config(k)
            ),
            14 => format!("{}bogus_key = 1\n", churn_config(k)),
            19 => format!("{}\n[inputs.broken\n", churn_config(k)),
            _ => churn_config(k),
        };
        if matches!(k, 7 | 14 | 19) {
            invalid += 1;
        }
        d.rewrite_config(&body);
        written_at_hup.push(written.load(Ordering::SeqCst));
        d.signal(Signal::HUP);
        d.wait_notify_n("READY=1", k + 1, TIMEOUT);
        reloads_done.store(k, Ordering::SeqCst);
        d.assert_running(&format!("after reload {k}"));
        let status = status_with_ready(&d, k + 1);
        assert_eq!(
            status.contains("reload failed"),
            matches!(k, 7 | 14 | 19),
            "reload {k}: STATUS= should say \"reload failed\" exactly for the invalid configs, \
             got {status:?}"
        );
    }
    join_within(writer, Duration::from_secs(30), "writer into stream");
    d.write("stream", format!("{END}\n").as_bytes());

    let marker = format!("\n{END}\n");
    let sink_path = d.log_path("raw.log");
    for (what, read) in [
        (
            "subscriber stream.tail",
            &(|| r.bytes()) as &dyn Fn() -> Vec<u8>,
        ),
        ("sink raw", &|| fs::read(&sink_path).unwrap_or_default()),
    ] {
        eventually(Duration::from_secs(30), || {
            let data = read();
            if data.ends_with(marker.as_bytes()) {
                return Ok(());
            }
            let lines = stream_lines(&data, END);
            Err(format!(
                "{what}: expected every line then {END:?}; got {} lines; first problem: {}",
                lines.len(),
                first_seq_problem(&lines, N).unwrap_or_else(|| "none yet".to_owned())
            ))
        });
        let lines = stream_lines(&read(), END);
        if let Some(problem) = first_seq_problem(&lines, N) {
            panic!(
                "{what}: expected lines 000000..{:06} exactly once and in order across \
                 {RELOADS} reloads, got {} lines: {problem}",
                N - 1,
                lines.len()
            );
        }
    }
    let c = d.counters();
    assert_eq!(
        c.subscriber("stream.tail", "dropped"),
        0,
        "stream.tail dropped:\n{c}"
    );
    assert_eq!(c.sink("raw", "dropped"), 0, "sink raw dropped:\n{c}");
    println!(
        "twenty_reloads_under_load_lose_no_line: {N} lines x {RELOADS} reloads \
         ({invalid} invalid; HUPs sent after lines {:?}): \
         subscriber and sink each got {N}, lost 0, duplicated 0, in {:?}",
        written_at_hup,
        started.elapsed()
    );
}

#[test]
fn stop_out_of_time_still_gives_the_sink_what_a_stuck_block_reader_held_back() {
    let d = Daemon::start(
        r#"shutdown_timeout = 0.3

[inputs.alerts]

[subscribers.stuck]
from = ["alerts"]
when_full = "block"
buffer_bytes = 4096

[sinks.raw]
path = "raw.log"
from = ["alerts"]
format = "{line}"
"#,
    );
    let stuck = SlowReader::start(&d.path("stuck"), 4096, Duration::ZERO);
    d.attach("alerts", &[&stuck]);
    stuck.pause();
    let probes = d.counters().input("alerts", "lines_in");
    // Write until the stuck reader's pipe, its queue and the input pipe are
    // full and the daemon holds the writer back; every line written is in
    // the input pipe or beyond.
    let w = OpenOptions::new()
        .write(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(d.path("alerts"))
        .expect("opening the input");
    let mut written = 0usize;
    let mut idle_since = Instant::now();
    while idle_since.elapsed() < Duration::from_millis(300) {
        match (&w).write(format!("held-{written:07}\n").as_bytes()) {
            Ok(13) => {
                written += 1;
                idle_since = Instant::now();
            }
            Ok(n) => panic!("a 13-byte write to a pipe is atomic, got {n}"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("writing: {e}"),
        }
        assert!(written < 1_000_000, "the daemon never held the writer back");
    }
    let c = d.counters();
    assert!(
        c.input("alerts", "lines_in") < probes + written as u64,
        "precondition: lines wait in the input pipe behind the stuck reader:\n{c}"
    );

    d.signal(Signal::TERM);
    d.assert_exit_code(0, "SIGTERM with a stuck block reader");
    let sink = text_lines(&fs::read(d.log_path("raw.log")).unwrap_or_default());
    let held: Vec<&String> = sink.iter().filter(|l| l.starts_with("held-")).collect();
    assert_eq!(
        held.len(),
        written,
        "every line written before the stop reaches the sink, even those a stuck \
         `block` reader held back in the input pipe"
    );
    for (i, line) in held.iter().enumerate() {
        assert_eq!(**line, format!("held-{i:07}"), "sink line {i}");
    }
    // The stuck subscriber's books still balance: what it did not get is
    // dropped (read at the very end) or discarded (its queue at exit).
    let c = Counters::parse(&d.stderr());
    let lines_in = c.input("alerts", "lines_in");
    assert_eq!(lines_in, probes + written as u64, "{c}");
    let books = ["lines_out", "dropped", "discarded"]
        .map(|k| c.subscriber("stuck", k))
        .iter()
        .sum::<u64>();
    assert_eq!(
        books, lines_in,
        "stuck: lines_out + dropped + discarded = in:\n{c}"
    );
    drop(stuck);
}

#[test]
fn sigterm_delivers_lines_queued_for_a_slow_reader() {
    const N: usize = 3_000;
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."alerts.slow"]
from = ["alerts"]
buffer_bytes = 1048576

[sinks.raw]
path = "raw.log"
from = ["alerts"]
format = "{line}"
"#,
    );
    // About 1 KiB per 5 ms, at most ~200 KiB/s: the ~147 KiB written below
    // take the reader at least 0.7 s, so a queue builds up, yet it drains
    // well within the default 2 s shutdown timeout.
    let slow = SlowReader::start(&d.path("alerts.slow"), 1024, Duration::from_millis(5));
    d.attach("alerts", &[&slow]);
    let lines_before = d.counters().input("alerts", "lines_in");
    {
        let mut f = d.open_writer("alerts");
        for chunk in (0..N).collect::<Vec<_>>().chunks(20) {
            let batch: String = chunk.iter().map(|&i| paced_line(i)).collect();
            f.write_all(batch.as_bytes()).expect("writing");
        }
    }
    d.wait_counters("every line read from the input", |c| {
        c.input("alerts", "lines_in") >= lines_before + N as u64
    });
    let got_before = text_lines(&slow.bytes()).len();
    assert!(
        got_before < N,
        "precondition: expected lines still queued for the slow reader at SIGTERM, \
         but it already had all {N}"
    );

    let signalled = Instant::now();
    d.signal(Signal::TERM);
    let limit = Duration::from_secs(3);
    d.wait_notify("STOPPING=1", limit);
    let st = d.wait_exit(limit.saturating_sub(signalled.elapsed()));
    let took = signalled.elapsed();
    assert_eq!(
        st.code(),
        Some(0),
        "SIGTERM with a queue for a slow reader: expected exit 0, got {st:?}\n--- stderr ---\n{}",
        d.stderr()
    );
    assert!(
        took <= limit,
        "expected exit within {limit:?} of SIGTERM, took {took:?}"
    );

    // The reader still drains what is in the pipe, then sees EOF.
    let what = format!("slow reader after the stop (had {got_before} at SIGTERM)");
    let got = wait_text_lines(&slow, N, TIMEOUT, &what);
    assert_eq!(
        whole_increasing(&got, "slow reader"),
        (0..N).collect::<Vec<_>>(),
        "slow reader after SIGTERM: lost or reordered lines"
    );
    let sink = text_lines(&fs::read(d.log_path("raw.log")).unwrap_or_default());
    assert_eq!(
        whole_increasing(&sink, "sink raw"),
        (0..N).collect::<Vec<_>>(),
        "sink after SIGTERM: lost or reordered lines"
    );
    let left: Vec<String> = fs::read_dir(&d.setup.dir)
        .expect("reading the FIFO dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "expected every FIFO gone after the stop, found {left:?}"
    );
    println!(
        "sigterm_delivers_lines_queued_for_a_slow_reader: {} of {N} lines queued at SIGTERM, \
         all delivered, exit after {took:?}",
        N - got_before
    );
}

#[test]
fn sigkill_then_restart_works() {
    let first = Daemon::start(ONE_SUB_RAW_SINK);
    first.signal(Signal::KILL);
    let st = first.wait_exit(TIMEOUT);
    assert_eq!(st.code(), None, "expected death by SIGKILL, got {st:?}");

    // The killed daemon left its FIFOs behind. Keep the stale inodes alive
    // (so their numbers cannot be reused) while the second daemon starts.
    let fifos = [("alerts", 0o620), ("alerts.tail", 0o640)];
    let stale: Vec<(File, u64)> = fifos
        .iter()
        .map(|(name, _)| {
            let path = first.path(name);
            let md = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("expected a stale FIFO at {}: {e}", path.display()));
            assert!(md.file_type().is_fifo(), "{} is not a FIFO", path.display());
            let pin = OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NONBLOCK.bits() as i32)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening stale {}: {e}", path.display()));
            (pin, md.ino())
        })
        .collect();

    let d = first.setup.clone().start();
    for ((name, mode), (_, old_ino)) in fifos.iter().zip(&stale) {
        assert_fifo(&d.path(name), *mode);
        assert_ne!(
            inode(&d.path(name)),
            *old_ino,
            "{name}: expected a fresh inode after restart, got the stale one"
        );
    }
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    d.write("alerts", b"after restart\n");
    r.wait_data_lines(1);
    assert_eq!(
        text_lines(&r.bytes()),
        ["after restart"],
        "subscriber after restart"
    );
    assert_eq!(
        wait_file_lines(&d.log_path("raw.log"), 1),
        ["after restart"],
        "sink after restart"
    );
    drop(stale);
}

const FDS_SMALL: &str = r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]
"#;

const FDS_BIG: &str = r#"
[inputs.alerts]
[inputs.events]

[subscribers."alerts.tail"]
from = ["alerts", "events"]

[subscribers."events.tail"]
from = ["events"]

[sinks.archive]
path = "archive.log"
from = ["alerts", "events"]
"#;

#[test]
fn fd_count_is_flat_after_twenty_reloads() {
    let mut d = Daemon::start(FDS_SMALL);
    let r = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&r]);
    let settled_fds = |d: &Daemon| {
        d.counters();
        d.steady_fd_count()
    };
    let mut readies = 1;
    let mut reload = |d: &mut Daemon, body: &str| {
        d.rewrite_config(body);
        d.signal(Signal::HUP);
        readies += 1;
        d.wait_notify_n("READY=1", readies, TIMEOUT);
        d.write("alerts", format!("after reload {readies}\n").as_bytes());
    };

    reload(&mut d, FDS_SMALL);
    let baseline = settled_fds(&d);
    let baseline_targets = d.fd_targets();
    for i in 0..20 {
        reload(&mut d, if i % 2 == 0 { FDS_BIG } else { FDS_SMALL });
    }
    let after = settled_fds(&d);
    assert_eq!(
        after,
        baseline,
        "fd count after 20 reloads (alternating configs, ending on the first one) should \
         equal the count after the first identical reload\nbefore: {baseline_targets:#?}\n\
         after: {:#?}",
        d.fd_targets()
    );
    assert!(
        !d.path("events").exists(),
        "events removed by the last reload"
    );
    r.wait_data_lines(21);
    println!("fd_count_is_flat_after_twenty_reloads: {baseline} fds before, {after} after");
}

#[test]
fn watchdog_pings_at_about_half_of_watchdog_usec() {
    let d = Setup::new(SIMPLE).env("WATCHDOG_USEC", "200000").start();
    let is_ping = |n: &str| n.lines().any(|l| l == "WATCHDOG=1");
    // Pings that arrived while nobody polled the socket are stamped late:
    // use only those received while the wait below polls (and not the
    // first of them, which may have been queued before it began).
    let skip = d.notes().iter().filter(|n| is_ping(n)).count() + 1;
    d.wait_notify_n("WATCHDOG=1", skip + 7, TIMEOUT);
    let times: Vec<_> = d
        .timed_notes()
        .into_iter()
        .filter(|(_, n)| is_ping(n))
        .map(|(t, _)| t)
        .skip(skip)
        .take(7)
        .collect();
    let mut intervals: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    intervals.sort();
    let median = intervals[intervals.len() / 2];
    assert!(
        (Duration::from_millis(60)..=Duration::from_millis(190)).contains(&median),
        "WATCHDOG_USEC=200000: expected WATCHDOG=1 about every 100 ms, median interval \
         {median:?} (sorted intervals {intervals:?})"
    );
    println!("watchdog_pings_at_about_half_of_watchdog_usec: median {median:?} of {intervals:?}");
}

#[test]
fn reload_status_names_the_error_and_recovers() {
    let mut d = Daemon::start(SIMPLE);
    d.rewrite_config(&format!(
        "{SIMPLE}\n[subscribers.\"bad.tail\"]\nfrom = [\"alerts\"]\nmode = \"rw-r-----\"\n"
    ));
    let line = d.setup.line_of("rw-r-----");
    let located = format!("{}:{line}:", d.setup.config.display());
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    let failed = status_with_ready(&d, 2);
    assert!(
        failed.contains("reload failed") && failed.contains(&located),
        "after an invalid reload, expected STATUS= with \"reload failed\" and {located:?}, \
         got {failed:?}"
    );
    d.assert_running("after an invalid reload");

    let after_failure = d.notes().len();
    d.rewrite_config(&format!(
        "{SIMPLE}\n[subscribers.\"good.tail\"]\nfrom = [\"alerts\"]\n"
    ));
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 3, TIMEOUT);
    let recovered = status_with_ready(&d, 3);
    assert!(
        !recovered.contains("reload failed"),
        "after a valid reload, expected STATUS= without \"reload failed\", got {recovered:?}"
    );
    for note in &d.notes()[after_failure..] {
        for status in note.lines().filter_map(|l| l.strip_prefix("STATUS=")) {
            assert!(
                !status.contains("reload failed"),
                "STATUS= after the valid reload still says the reload failed: {status:?}"
            );
        }
    }
    assert_fifo(&d.path("good.tail"), 0o640);
}

#[test]
fn sigusr1_logs_one_counter_line_per_input_and_output() {
    let d = Daemon::start(
        r#"
[inputs.alerts]
[inputs.events]

[subscribers."alerts.tail"]
from = ["alerts"]

[subscribers."all.tail"]
from = ["alerts", "events"]

[sinks.raw]
path = "raw.log"
from = ["alerts"]
format = "{line}"
"#,
    );
    d.write("alerts", b"one\ntwo\n");
    d.wait_counters("2 lines through alerts", |c| {
        c.input("alerts", "lines_in") == 2 && c.sink("raw", "lines_out") == 2
    });

    let offset = d.stderr().len();
    d.signal(Signal::USR1);
    eventually(TIMEOUT, || {
        let n = d.stderr()[offset..].matches("counters: ").count();
        if n >= 5 {
            Ok(())
        } else {
            Err(format!(
                "expected 5 `counters:` lines after SIGUSR1, got {n}"
            ))
        }
    });
    // A reload round trip: whatever SIGUSR1 logs is in the log by then.
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);

    let log = d.stderr()[offset..].to_owned();
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.find("counters: ").map(|at| &l[at + "counters: ".len()..]))
        .collect();
    let mut heads: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    heads.sort();
    assert_eq!(
        heads,
        [
            "input alerts",
            "input events",
            "sink raw",
            "subscriber alerts.tail",
            "subscriber all.tail",
        ],
        "one SIGUSR1: expected exactly one counters line per input and output, got:\n{log}"
    );
    let keys = |l: &str| -> Vec<String> {
        l.split_whitespace()
            .skip(2)
            .filter_map(|w| w.split_once('=').map(|(k, _)| k.to_owned()))
            .collect()
    };
    for l in &lines {
        let want: &[&str] = match l.split_whitespace().next() {
            Some("input") => &["lines_in", "bytes_in", "truncated", "errors"],
            Some("subscriber") => &[
                "attached",
                "lines_out",
                "bytes_out",
                "discarded",
                "dropped",
                "filtered",
                "errors",
            ],
            _ => &[
                "lines_out",
                "bytes_out",
                "discarded",
                "dropped",
                "filtered",
                "errors",
            ],
        };
        assert_eq!(keys(l), want, "counter fields of {l:?}");
    }
    let c = util::Counters::parse(&log);
    assert_eq!(c.input("alerts", "lines_in"), 2, "{c}");
    assert_eq!(c.input("alerts", "bytes_in"), 8, "{c}");
    assert_eq!(c.input("events", "lines_in"), 0, "{c}");
    assert_eq!(
        c.subscriber("alerts.tail", "discarded"),
        2,
        "no reader: {c}"
    );
    assert!(!c.attached("alerts.tail"), "no reader: {c}");
    assert_eq!(c.sink("raw", "lines_out"), 2, "{c}");
    assert_eq!(c.sink("raw", "bytes_out"), 8, "{c}");
}

// ---------------------------------------------------------------------------
// Reloads never lose what a writer already wrote into an input a `block`
// output holds back.

const LOSS_LINES: usize = 5_000;

/// Long enough that 5,000 lines fill the subscriber pipe, its queue and
/// the input pipe, so the writer is blocked when the reload comes.
fn loss_prefix() -> String {
    format!("loss-{}-", "p".repeat(80))
}

/// Starts a writer of [`LOSS_LINES`] numbered lines into `input` behind a
/// paused `block` reader, and waits until the writer is held back (its
/// count stops moving short of the end). Returns the writer's thread.
fn blocked_writer(d: &Daemon, input: &str) -> thread::JoinHandle<()> {
    let written = Arc::new(AtomicUsize::new(0));
    let mut f = d.open_writer(input);
    let (count, prefix) = (written.clone(), loss_prefix());
    let writer = thread::spawn(move || {
        for i in 0..LOSS_LINES {
            f.write_all(format!("{prefix}{i}\n").as_bytes())
                .expect("writing");
            count.store(i + 1, Ordering::SeqCst);
        }
    });
    let mut last = (usize::MAX, Instant::now());
    eventually(TIMEOUT, || {
        let now = written.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
        if now < LOSS_LINES && last.1.elapsed() > Duration::from_millis(300) {
            Ok(())
        } else {
            Err(format!(
                "expected the writer to block before {LOSS_LINES} lines, at {now}"
            ))
        }
    });
    writer
}

#[test]
fn reload_removing_an_input_held_back_by_a_full_block_output_loses_no_line() {
    let mut d = Daemon::start(
        r#"
[inputs.alerts]
[inputs.other]

[subscribers."slow.block"]
from = ["alerts", "other"]
when_full = "block"
buffer_bytes = 4096
"#,
    );
    let slow = SlowReader::start(&d.path("slow.block"), 4096, Duration::ZERO);
    d.attach("alerts", &[&slow]);
    slow.pause();
    let writer = blocked_writer(&d, "alerts");

    d.rewrite_config(
        r#"
[inputs.other]

[subscribers."slow.block"]
from = ["other"]
when_full = "block"
buffer_bytes = 4096
"#,
    );
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    assert_absent(&d.path("alerts"), "input removed by the reload");
    slow.resume();
    join_within(writer, TIMEOUT, "writer into the removed input");

    let prefix = loss_prefix();
    let lines = eventually(TIMEOUT, || {
        let lines = text_lines(&slow.bytes());
        let n = lines.iter().filter(|l| l.starts_with(&prefix)).count();
        if n >= LOSS_LINES {
            Ok(lines)
        } else {
            Err(format!(
                "expected {LOSS_LINES} lines after the reload, got {n}"
            ))
        }
    });
    assert_numbered(&lines, &prefix, LOSS_LINES, "slow.block after the reload");
    d.write("other", b"still routed\n");
    wait_text_lines(&slow, lines.len() + 1, TIMEOUT, "slow.block, a kept input");
    d.assert_running("after draining a removed input");
}

#[test]
fn reload_recreating_a_deleted_input_fifo_reads_the_old_pipe_first() {
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."slow.block"]
from = ["alerts"]
when_full = "block"
buffer_bytes = 4096
"#,
    );
    let slow = SlowReader::start(&d.path("slow.block"), 4096, Duration::ZERO);
    d.attach("alerts", &[&slow]);
    slow.pause();
    let kept = inode(&d.path("alerts"));
    let writer = blocked_writer(&d, "alerts");

    fs::remove_file(d.path("alerts")).unwrap();
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    assert_fifo(&d.path("alerts"), 0o620);
    assert_ne!(
        inode(&d.path("alerts")),
        kept,
        "the deleted FIFO is recreated"
    );
    slow.resume();
    join_within(writer, TIMEOUT, "writer into the deleted FIFO");
    d.write("alerts", b"after the reload\n");

    let prefix = loss_prefix();
    let lines = eventually(TIMEOUT, || {
        let lines = text_lines(&slow.bytes());
        if lines.iter().any(|l| l == "after the reload") {
            Ok(lines)
        } else {
            Err(format!(
                "expected the new FIFO's line, got {} lines",
                lines.len()
            ))
        }
    });
    assert_numbered(&lines, &prefix, LOSS_LINES, "slow.block, old pipe");
    let last_old = lines.iter().rposition(|l| l.starts_with(&prefix));
    let new = lines.iter().position(|l| l == "after the reload");
    assert!(
        last_old < new,
        "the old pipe's lines must come before the new FIFO's"
    );
}

// ---------------------------------------------------------------------------
// Filters and formats (SPEC §8).

/// Line `i` of the filter workload: five kinds, one of them not UTF-8.
fn filter_line(i: usize) -> Vec<u8> {
    match i % 5 {
        0 => format!("ERROR {i}\n").into_bytes(),
        1 => format!("DEBUG {i}\n").into_bytes(),
        2 => format!("DEBUG ERROR {i}\n").into_bytes(),
        3 => [format!("INFO {i} ").as_bytes(), b"\xff\xfe\n"].concat(),
        _ => format!("WARN {i}\n").into_bytes(),
    }
}

/// Writes `ERROR attach` lines (which pass every filter of these tests)
/// until every reader got one.
fn attach_filtered(d: &Daemon, input: &str, readers: &[&dyn Received]) {
    eventually(TIMEOUT, || {
        d.write(input, b"ERROR attach\n");
        let missing = readers
            .iter()
            .filter(|r| !contains(&r.bytes(), b"ERROR attach\n"))
            .count();
        match missing {
            0 => Ok(()),
            n => Err(format!("{n} readers got no attach line yet")),
        }
    });
}

/// The lines after the attach lines, up to and without `ERROR end`.
fn between_attach_and_end(r: &dyn Received) -> Vec<Vec<u8>> {
    let lines = eventually(TIMEOUT, || {
        let lines = split_lines(&r.bytes());
        match lines.iter().any(|l| l == b"ERROR end") {
            true => Ok(lines),
            false => Err(format!("no end marker yet in {} lines", lines.len())),
        }
    });
    let lines: Vec<Vec<u8>> = lines
        .into_iter()
        .skip_while(|l| l == b"ERROR attach")
        .collect();
    lines
        .into_iter()
        .take_while(|l| l != b"ERROR end")
        .collect()
}

#[test]
fn match_and_exclude_give_each_subscriber_exactly_its_lines_in_order() {
    const N: usize = 10_000;
    let d = Daemon::start(
        r#"
[inputs.app]

[subscribers.errors]
from = ["app"]
match = "ERROR"
when_full = "block"

[subscribers.nodebug]
from = ["app"]
exclude = "^DEBUG"
when_full = "block"

[subscribers.both]
from = ["app"]
match = "ERROR"
exclude = "^DEBUG"
when_full = "block"
"#,
    );
    let readers = ["errors", "nodebug", "both"].map(|n| Cat::on(&d, n, n));
    attach_filtered(&d, "app", &[&readers[0], &readers[1], &readers[2]]);
    let before = d.counters();

    let mut w = d.open_writer("app");
    for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
        let batch: Vec<u8> = chunk.iter().flat_map(|&i| filter_line(i)).collect();
        w.write_all(&batch).expect("writing");
    }
    w.write_all(b"ERROR end\n").expect("writing the end marker");
    drop(w);

    let keeps: [fn(usize) -> bool; 3] = [
        |i| i % 5 == 0 || i % 5 == 2,
        |i| !matches!(i % 5, 1 | 2),
        |i| i % 5 == 0,
    ];
    for (r, keep) in readers.iter().zip(keeps) {
        let want: Vec<Vec<u8>> = (0..N)
            .filter(|&i| keep(i))
            .map(|i| {
                let mut l = filter_line(i);
                l.pop();
                l
            })
            .collect();
        let got = between_attach_and_end(r);
        assert_eq!(got.len(), want.len(), "line count of one subscriber");
        assert!(got == want, "a subscriber got other lines or another order");
    }
    let c = d.counters();
    for (name, kept) in [
        ("errors", 2 * N / 5),
        ("nodebug", 3 * N / 5),
        ("both", N / 5),
    ] {
        let filtered = c.subscriber(name, "filtered") - before.subscriber(name, "filtered");
        let out = c.subscriber(name, "lines_out") - before.subscriber(name, "lines_out");
        assert_eq!(
            out,
            kept as u64 + 1,
            "{name}: lines_out (+ the end marker)\n{c}"
        );
        assert_eq!(filtered, (N - kept) as u64, "{name}: filtered\n{c}");
    }
}

#[test]
fn json_format_lines_parse_and_round_trip_the_line() {
    let d = Daemon::start(
        r#"
[inputs.app]

[subscribers.json]
from = ["app"]
format = "{json}"

[sinks.hosted]
path = "hosted.log"
from = ["app"]
format = "{host} {input}: {line}"
"#,
    );
    let r = Cat::on(&d, "json", "json");
    d.attach("app", &[&r]);
    let sent: [&[u8]; 4] = [
        b"plain",
        "quotes \" and \\ and tab\t and é".as_bytes(),
        b"bad \xff\xfe bytes",
        b"",
    ];
    for line in sent {
        d.write("app", &[line, b"\n"].concat());
    }
    let lines = wait_text_lines(&r, 4, TIMEOUT, "json subscriber");
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| !l.contains(util::PROBE))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    assert_eq!(objects.len(), 4, "{lines:?}");
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    for (obj, line) in objects.iter().zip(sent) {
        assert_eq!(obj["line"], String::from_utf8_lossy(line).as_ref(), "{obj}");
        assert_eq!(obj["input"], "app");
        assert_eq!(obj["host"], host.as_str());
        let time = obj["time"].as_str().expect("time is a string");
        assert!(
            time.ends_with('Z') && time.len() == 27,
            "RFC 3339 micros: {time}"
        );
    }
    assert_eq!(objects[2]["line"], "bad \u{fffd}\u{fffd} bytes");
    let sink = wait_file_lines(&d.log_path("hosted.log"), 4);
    assert!(
        sink.iter().any(|l| *l == format!("{host} app: plain")),
        "{{host}} {{input}}: {{line}} gave {sink:?}"
    );
}

#[test]
fn check_rejects_an_invalid_match_regex() {
    assert_config_error(
        "[inputs.a]\n[subscribers.s]\nfrom = [\"a\"]\nmatch = \"(unclosed\"\n",
        &["match ="],
        "subscribers.s.match",
    );
}

#[test]
fn check_rejects_a_regex_over_the_size_limit() {
    let huge = "(a|b|c|d|e){1000}".repeat(20);
    let body =
        format!("[inputs.a]\n[sinks.s]\npath = \"s.log\"\nfrom = [\"a\"]\nexclude = \"{huge}\"\n");
    assert_config_error(&body, &["exclude ="], "sinks.s.exclude");
    let out = Setup::new(&body).check();
    assert!(out.stderr.contains("too large"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// servers_harness: self-tests of tests/util/servers.rs, the throwaway rsyslog
// and nats-server that forward tests talk to. Each test skips, printing why,
// when its server is not installed (under CI=true that is a failure).

mod servers_harness {
    use std::io::Write;
    use std::net::TcpStream;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::util::servers::{port_open, require_binary, NatsServer, Rsyslog, TlsFiles};

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("fb-servers-")
            .tempdir()
            .expect("creating temp dir")
    }

    /// `msg` in RFC 6587 octet-counting framing.
    fn frame(msg: &str) -> String {
        format!("{} {msg}", msg.len())
    }

    const MSG1: &str = "<156>1 2024-05-06T07:08:09.123456Z web1 fb-alerts 4242 - - disk | full";
    const MSG2: &str = "<13>1 2024-05-06T07:08:10.000001Z web1 fb-events 4242 - - caf\u{e9}";

    #[test]
    fn rsyslog_receives_octet_counted_rfc5424_and_restarts() {
        if require_binary("rsyslog_receives_octet_counted_rfc5424", "rsyslogd").is_none() {
            return;
        }
        let tmp = tmp();
        let mut rsyslog = Rsyslog::start(tmp.path(), None);
        assert_eq!(
            rsyslog.url(),
            format!("syslog+tcp://127.0.0.1:{}", rsyslog.port())
        );
        let mut conn = TcpStream::connect(("127.0.0.1", rsyslog.port())).expect("connecting");
        conn.write_all(format!("{}{}", frame(MSG1), frame(MSG2)).as_bytes())
            .expect("sending two frames");
        let records = rsyslog.wait_records(2);
        let r = &records[0];
        assert_eq!(
            (r.version.as_str(), r.pri.as_str(), r.hostname.as_str()),
            ("1", "156", "web1"),
            "{r:?}"
        );
        assert_eq!(
            (r.app_name.as_str(), r.procid.as_str(), r.msgid.as_str()),
            ("fb-alerts", "4242", "-"),
            "{r:?}"
        );
        assert_eq!(r.structured_data, "-", "{r:?}");
        assert_eq!(r.timestamp, "2024-05-06T07:08:09.123456Z", "{r:?}");
        assert_eq!(r.msg, "disk | full", "{r:?}");
        assert_eq!(
            (records[1].pri.as_str(), records[1].msg.as_str()),
            ("13", "caf\u{e9}"),
            "{:?}",
            records[1]
        );

        drop(conn);
        rsyslog.kill();
        assert!(!port_open(rsyslog.port()), "killed rsyslogd still listens");
        rsyslog.restart();
        let mut conn = TcpStream::connect(("127.0.0.1", rsyslog.port())).expect("reconnecting");
        conn.write_all(frame(MSG1).as_bytes()).expect("sending");
        let records = rsyslog.wait_records(3);
        assert_eq!(records.len(), 3, "the output file is kept: {records:?}");
        assert_eq!(records[2].msg, "disk | full");
    }

    #[test]
    fn rsyslog_over_tls_with_a_test_ca() {
        let test = "rsyslog_over_tls_with_a_test_ca";
        if require_binary(test, "rsyslogd").is_none() || require_binary(test, "openssl").is_none() {
            return;
        }
        let tmp = tmp();
        let tls = TlsFiles::generate(tmp.path());
        for f in [
            &tls.ca,
            &tls.cert,
            &tls.key,
            &tls.client_cert,
            &tls.client_key,
        ] {
            assert!(f.is_file(), "{} was not made", f.display());
        }
        let rsyslog = Rsyslog::start(tmp.path(), Some(&tls));
        assert!(rsyslog.url().starts_with("syslog+tls://127.0.0.1:"));
        // openssl s_client verifies the server against the test CA and
        // sends stdin; at its end it closes the connection.
        let mut client = Command::new("openssl")
            .args(["s_client", "-quiet", "-no_ign_eof", "-verify_return_error"])
            .args(["-servername", "localhost", "-connect"])
            .arg(format!("127.0.0.1:{}", rsyslog.port()))
            .arg("-CAfile")
            .arg(&tls.ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning openssl s_client");
        let mut stdin = client.stdin.take().expect("s_client stdin");
        stdin.write_all(frame(MSG1).as_bytes()).expect("writing");
        let records = rsyslog.wait_records(1);
        drop(stdin);
        let out = client.wait_with_output().expect("waiting for s_client");
        assert_eq!(records[0].msg, "disk | full", "{records:?}");
        assert!(
            out.status.success(),
            "s_client: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn nats_jetstream_stores_dedupes_and_survives_restart() {
        if require_binary("nats_jetstream_stores_dedupes", "nats-server").is_none() {
            return;
        }
        let tmp = tmp();
        let mut nats = NatsServer::start(tmp.path());
        assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
        let mut c = nats.client();
        c.create_stream("LOGS", &["logs.>"], Duration::from_secs(120));

        let ack = c.publish("logs.alerts", Some("id-1"), b"disk full").json();
        assert_eq!(
            (ack["stream"].as_str(), ack["seq"].as_u64()),
            (Some("LOGS"), Some(1))
        );
        assert!(ack.get("duplicate").is_none(), "{ack}");
        let ack = c.publish("logs.alerts", Some("id-1"), b"disk full").json();
        assert_eq!(
            (ack["seq"].as_u64(), ack["duplicate"].as_bool()),
            (Some(1), Some(true))
        );
        let ack = c.publish("logs.events", Some("id-2"), b"").json();
        assert_eq!(ack["seq"].as_u64(), Some(2), "{ack}");
        assert_eq!(c.wait_stream_messages("LOGS", 2), 2);

        let m = c.get_message("LOGS", 1);
        assert_eq!(
            (m.subject.as_str(), &m.data[..]),
            ("logs.alerts", &b"disk full"[..])
        );
        assert_eq!(m.header("nats-msg-id"), Some("id-1"), "{m:?}");
        assert_eq!(c.get_message("LOGS", 2).data, b"");

        // No stream captures the subject: a 503 status, not silence.
        let none = c.publish("other.subject", Some("id-3"), b"x");
        let status = none.headers.as_deref().unwrap_or_default();
        assert!(status.starts_with("NATS/1.0 503"), "{none:?}");

        drop(c);
        nats.kill();
        nats.restart();
        let mut c = nats.client();
        assert_eq!(c.stream_messages("LOGS"), 2, "the store dir is kept");
        let ack = c.publish("logs.alerts", Some("id-1"), b"disk full").json();
        assert_eq!(
            ack["duplicate"].as_bool(),
            Some(true),
            "dedupe survives a restart: {ack}"
        );
        assert_eq!(c.stream_messages("LOGS"), 2, "{}", nats.log());
    }
}

// ---------------------------------------------------------------------------
// Forwards (SPEC §7), against real rsyslog and nats-server on loopback.

mod forwards {
    use std::fs;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::unix::net::UnixDatagram;
    use std::thread;
    use std::time::{Duration, Instant};

    use rustix::process::Signal;

    use super::util::servers::{free_port, require_binary, NatsServer, Rsyslog, TlsFiles};
    use super::util::{eventually, join_within, Counters, Daemon, Setup, TIMEOUT};
    use super::write_numbered;

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("fb-fwd-")
            .tempdir()
            .expect("creating temp dir")
    }

    /// Accepts one connection, or panics after `TIMEOUT` (never hangs).
    fn accept_within(listener: &TcpListener, what: &str) -> std::net::TcpStream {
        listener.set_nonblocking(true).unwrap();
        let conn = eventually(TIMEOUT, || match listener.accept() {
            Ok((conn, _)) => Ok(conn),
            Err(e) => Err(format!("{what}: no connection yet ({e})")),
        });
        conn.set_nonblocking(false).unwrap();
        conn
    }

    /// Accepts the forward's connection on `server` and reads until `want`
    /// arrived (or `TIMEOUT`); returns what came.
    fn receive_until(server: &TcpListener, want: &[u8], what: &str) -> Vec<u8> {
        let mut conn = accept_within(server, what);
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while !super::contains(&got, want) && Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    }

    fn host() -> String {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }

    /// Writes `n` numbered lines `"{prefix}{i}"` into `input` from a thread.
    fn stream(d: &Daemon, input: &str, prefix: &'static str, n: usize) -> thread::JoinHandle<()> {
        let mut w = d.open_writer(input);
        thread::spawn(move || write_numbered(&mut w, prefix, n, 100))
    }

    /// Waits until rsyslog wrote a record whose MSG is `last`.
    fn wait_msg(rsyslog: &Rsyslog, last: &str, timeout: Duration) -> Vec<String> {
        eventually(timeout, || {
            let records = rsyslog.records();
            match records.iter().any(|r| r.msg == last) {
                true => Ok(records.into_iter().map(|r| r.msg).collect()),
                false => Err(format!(
                    "rsyslog has {} records, not {last:?} yet",
                    records.len()
                )),
            }
        })
    }

    fn syslog_config(url: &str, extra: &str) -> String {
        format!(
            r#"
[inputs.app]

[forwards.central]
url = "{url}"
from = ["app"]
when_full = "block"
{extra}
"#
        )
    }

    #[test]
    fn syslog_tcp_forward_delivers_every_line_to_rsyslog_intact() {
        const N: usize = 100_000;
        if require_binary("syslog_tcp_forward", "rsyslogd").is_none() {
            return;
        }
        let tmp = tmp();
        let rsyslog = Rsyslog::start(tmp.path(), None);
        let d = Daemon::start(&syslog_config(&rsyslog.url(), ""));
        d.write("app", "with | pipe and \u{e9}\n".as_bytes());
        join_within(stream(&d, "app", "n", N), TIMEOUT, "writer");
        wait_msg(&rsyslog, &format!("n{}", N - 1), Duration::from_secs(60));
        let records = rsyslog.records();
        assert_eq!(records.len(), N + 1, "exactly the lines written");
        let first = &records[0];
        assert_eq!(first.msg, "with | pipe and \u{e9}", "{first:?}");
        assert_eq!(
            (first.version.as_str(), first.app_name.as_str()),
            ("1", "app"),
            "{first:?}"
        );
        assert_eq!(first.procid, d.pid().to_string(), "{first:?}");
        assert_eq!(first.hostname, host(), "{first:?}");
        assert_eq!(first.pri, "13", "user.notice by default: {first:?}");
        assert!(first.timestamp.ends_with('Z'), "{first:?}");
        for (i, r) in records[1..].iter().enumerate() {
            assert_eq!(r.msg, format!("n{i}"), "record {i} out of order or changed");
        }
        let c = d.counters();
        assert!(c.raw("forward", "central", "state") == "connected", "{c}");
        assert_eq!(
            c.get("forward", "central", "lines_out"),
            N as u64 + 1,
            "{c}"
        );
    }

    #[test]
    fn syslog_tls_forward_verifies_the_server_with_a_test_ca() {
        const N: usize = 100_000;
        if require_binary("syslog_tls_forward", "rsyslogd").is_none() {
            return;
        }
        let tmp = tmp();
        let tls = TlsFiles::generate(tmp.path());
        let rsyslog = Rsyslog::start(tmp.path(), Some(&tls));
        let url = format!("syslog+tls://127.0.0.1:{}", rsyslog.port());
        let extra = format!(
            "ca_file = \"{}\"\nserver_name = \"localhost\"\nseverity = \"err\"\nfacility = \"local3\"\napp_name = \"fb-{{input}}\"",
            tls.ca.display()
        );
        let d = Daemon::start(&syslog_config(&url, &extra));
        join_within(stream(&d, "app", "t", N), TIMEOUT, "writer");
        let msgs = wait_msg(&rsyslog, &format!("t{}", N - 1), Duration::from_secs(60));
        let want: Vec<String> = (0..N).map(|i| format!("t{i}")).collect();
        assert_eq!(msgs, want, "every line once, in order, over TLS");
        let r = &rsyslog.records()[0];
        assert_eq!(
            (r.pri.as_str(), r.app_name.as_str()),
            ("155", "fb-app"),
            "{r:?}"
        );
    }

    #[test]
    fn syslog_tls_forward_refuses_a_server_its_ca_does_not_sign() {
        if require_binary("syslog_tls_refuses", "rsyslogd").is_none() {
            return;
        }
        let tmp = tmp();
        let tls = TlsFiles::generate(tmp.path());
        let other = TlsFiles::generate(&tmp.path().join("other"));
        let rsyslog = Rsyslog::start(tmp.path(), Some(&tls));
        let url = format!("syslog+tls://127.0.0.1:{}", rsyslog.port());
        let extra = format!("ca_file = \"{}\"", other.ca.display());
        let d = Daemon::start(&syslog_config(&url, &extra).replace("block", "drop-newest"));
        d.write("app", b"secret\n");
        d.wait_counters("forward errors after a bad certificate", |c| {
            c.get("forward", "central", "errors") > 0
        });
        thread::sleep(Duration::from_millis(300));
        assert!(
            rsyslog.records().is_empty(),
            "nothing reaches an unverified server"
        );
        assert!(d.stderr().contains("forward central"), "{}", d.stderr());
    }

    /// Lines queued while TLS handshakes fail (a server that answers
    /// garbage) are not lost: TLS takes no line before its handshake is
    /// done, so they are all delivered once the real server is back.
    #[test]
    fn syslog_tls_forward_loses_nothing_to_failed_handshakes() {
        if require_binary("syslog_tls_failed_handshakes", "rsyslogd").is_none() {
            return;
        }
        let tmp = tmp();
        let tls = TlsFiles::generate(tmp.path());
        let mut rsyslog = Rsyslog::start(tmp.path(), Some(&tls));
        let url = format!("syslog+tls://127.0.0.1:{}", rsyslog.port());
        let extra = format!("ca_file = \"{}\"", tls.ca.display());
        let d = Daemon::start(&syslog_config(&url, &extra));
        d.write("app", b"before\n");
        wait_msg(&rsyslog, "before", Duration::from_secs(30));
        rsyslog.kill();
        let impostor = TcpListener::bind(("127.0.0.1", rsyslog.port())).expect("taking the port");
        d.write("app", b"queued 1\nqueued 2\nqueued 3\n");
        impostor.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        let mut refused = 0;
        while Instant::now() < until {
            if let Ok((mut conn, _)) = impostor.accept() {
                let _ = conn.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
                refused += 1;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            refused >= 2,
            "the forward kept trying ({refused} handshakes)"
        );
        drop(impostor);
        rsyslog.restart();
        d.write("app", b"after\n");
        let msgs = wait_msg(&rsyslog, "after", Duration::from_secs(60));
        for n in 1..=3 {
            let line = format!("queued {n}");
            assert!(
                msgs.contains(&line),
                "{line:?} was lost to a failed handshake: {msgs:?}"
            );
        }
        let c = d.counters();
        assert_eq!(c.get("forward", "central", "dropped"), 0, "{c}");
        assert_eq!(c.get("forward", "central", "discarded"), 0, "{c}");
    }

    #[test]
    fn syslog_forward_reconnects_after_rsyslog_is_killed_mid_stream() {
        const N: usize = 100_000;
        if require_binary("syslog_forward_reconnects", "rsyslogd").is_none() {
            return;
        }
        let tmp = tmp();
        let mut rsyslog = Rsyslog::start(tmp.path(), None);
        let d = Daemon::start(&syslog_config(&rsyslog.url(), ""));
        // A steady stream (1,000 lines every 10 ms, about 1 s in all),
        // SIGKILLed server a fifth of the way in, back 300 ms later.
        let mut w = d.open_writer("app");
        let writer = thread::spawn(move || {
            for chunk in 0..N / 1000 {
                let batch: String = (chunk * 1000..(chunk + 1) * 1000)
                    .map(|i| format!("m{i}\n"))
                    .collect();
                w.write_all(batch.as_bytes()).expect("writing");
                thread::sleep(Duration::from_millis(10));
            }
        });
        rsyslog.wait_records(N / 5);
        rsyslog.kill();
        thread::sleep(Duration::from_millis(300));
        rsyslog.restart();
        join_within(writer, TIMEOUT, "writer");
        let msgs = wait_msg(&rsyslog, &format!("m{}", N - 1), Duration::from_secs(60));
        // What arrived is the stream in order with at most one gap: the
        // lines the kernel had taken for the connection that died.
        let got: Vec<usize> = msgs.iter().map(|m| m[1..].parse().expect("m<n>")).collect();
        assert!(
            got.windows(2).all(|p| p[0] < p[1]),
            "duplicated or out of order"
        );
        let gaps: Vec<(usize, usize)> = got
            .windows(2)
            .filter(|p| p[1] != p[0] + 1)
            .map(|p| (p[0], p[1]))
            .collect();
        let lost = N - got.len();
        println!("lines lost across an rsyslog SIGKILL mid-stream: {lost} of {N} (gaps {gaps:?})");
        assert_eq!(got.first(), Some(&0), "the stream's start arrives");
        assert!(gaps.len() <= 1, "more than one hole: {gaps:?}");
        // The loss is what the kernel held for the dead connection (its
        // socket buffers), far below the stream.
        assert!(lost < N / 2, "lost {lost} of {N}");
        let c = d.counters();
        assert!(c.get("forward", "central", "connects") >= 2, "{c}");
        assert!(c.get("forward", "central", "disconnects") >= 1, "{c}");
        // The daemon itself gave up nothing: the hole (if any) is what the
        // kernel had taken for the dead connection.
        assert_eq!(
            (
                c.get("forward", "central", "dropped"),
                c.get("forward", "central", "discarded"),
                c.get("forward", "central", "lines_out"),
            ),
            (0, 0, N as u64),
            "{c}"
        );
    }

    #[test]
    fn forward_to_a_closed_port_never_stops_the_daemon_and_connects_when_the_server_appears() {
        let port = free_port();
        let d = Daemon::start(&format!(
            r#"
[inputs.app]

[subscribers."app.tail"]
from = ["app"]

[sinks.archive]
path = "archive.log"
from = ["app"]

[forwards.central]
url = "syslog+tcp://127.0.0.1:{port}"
from = ["app"]
"#
        ));
        let r = super::util::Cat::on(&d, "app.tail", "r");
        d.attach("app", &[&r]);
        d.write("app", b"while down\n");
        r.wait_data_lines(1);
        super::wait_file_lines(&d.log_path("archive.log"), 1);
        let c = d.wait_counters("forward errors", |c| {
            c.get("forward", "central", "errors") > 0
        });
        assert_eq!(c.raw("forward", "central", "state"), "disconnected", "{c}");

        let server = TcpListener::bind(("127.0.0.1", port)).expect("binding the late server");
        let got = receive_until(&server, b"while down", "the forward connects by itself");
        assert!(
            super::contains(&got, b"- - while down"),
            "the queued line arrives: {:?}",
            String::from_utf8_lossy(&got)
        );
        d.wait_counters("forward connected", |c| {
            c.raw("forward", "central", "state") == "connected"
        });
    }

    #[test]
    fn nats_forward_is_exactly_once_across_two_server_restarts() {
        const N: usize = 100_000;
        if require_binary("nats_forward_exactly_once", "nats-server").is_none() {
            return;
        }
        let tmp = tmp();
        let mut nats = NatsServer::start(tmp.path());
        nats.client()
            .create_stream("LOGS", &["logs.>"], Duration::from_secs(120));
        let d = Daemon::start(&format!(
            r#"
[inputs.app]
[inputs.other]

[forwards.js]
url = "{}"
subject = "logs.{{input}}"
from = ["*"]
when_full = "block"
"#,
            nats.url()
        ));
        let a = stream(&d, "app", "a", N);
        let b = stream(&d, "other", "o", N / 10);
        // Each restart comes once the forward is connected to the server
        // now running and 10,000 more lines were stored through it.
        let mut stored_at_restart = 0;
        for round in 1..=2 {
            let mut client = nats.client();
            stored_at_restart = eventually(Duration::from_secs(60), || {
                let n = client.stream_messages("LOGS");
                let connects = d.counters().get("forward", "js", "connects");
                match n > stored_at_restart + 10_000 && connects >= round {
                    true => Ok(n),
                    false => Err(format!(
                        "{n} messages stored so far, {connects} connects (round {round})"
                    )),
                }
            });
            nats.restart();
        }
        let total = (N + N / 10) as u64;
        assert!(
            stored_at_restart < total,
            "the second restart came after the stream ended ({stored_at_restart} stored)"
        );
        join_within(a, Duration::from_secs(90), "writer a");
        join_within(b, Duration::from_secs(90), "writer o");
        let mut client = nats.client();
        eventually(Duration::from_secs(90), || {
            let n = client.stream_messages("LOGS");
            match n >= total {
                true => Ok(()),
                false => Err(format!("{n} of {total} messages stored")),
            }
        });
        d.wait_counters("every line acknowledged", |c| {
            c.get("forward", "js", "acked") >= total
        });
        assert_eq!(
            client.stream_messages("LOGS"),
            total,
            "exactly once:\n{}",
            nats.log()
        );
        let (mut next_a, mut next_o) = (0, 0);
        for seq in 1..=total {
            let m = client.get_message("LOGS", seq);
            let text = String::from_utf8_lossy(&m.data).into_owned();
            let (next, prefix, subject) = match m.subject.as_str() {
                "logs.app" => (&mut next_a, "a", "logs.app"),
                _ => (&mut next_o, "o", "logs.other"),
            };
            assert_eq!(
                text,
                format!("{prefix}{next}"),
                "stream seq {seq} on {subject}"
            );
            assert!(m.header("Nats-Msg-Id").is_some(), "{m:?}");
            *next += 1;
        }
        assert_eq!((next_a, next_o), (N, N / 10));
    }

    #[test]
    fn nats_forward_without_a_stream_counts_failures_and_keeps_lines_queued() {
        if require_binary("nats_no_stream", "nats-server").is_none() {
            return;
        }
        let tmp = tmp();
        let nats = NatsServer::start(tmp.path());
        let d = Daemon::start(&format!(
            "[inputs.app]\n[forwards.js]\nurl = \"{}\"\nsubject = \"nowhere.{{input}}\"\nfrom = [\"app\"]\n",
            nats.url()
        ));
        d.write("app", b"lost in space\n");
        let c = d.wait_counters("forward errors", |c| c.get("forward", "js", "errors") > 0);
        assert_eq!(c.get("forward", "js", "acked"), 0, "{c}");
        assert!(d.stderr().contains("no JetStream stream"), "{}", d.stderr());
        let v = super::status_json(&d);
        let js = (v["outputs"].as_array().unwrap().iter())
            .find(|o| o["name"] == "js")
            .unwrap();
        assert!(
            js["queue_bytes"].as_u64() > Some(0),
            "a line awaiting its PubAck shows in the queue: {js}"
        );
        nats.client()
            .create_stream("LATE", &["nowhere.>"], Duration::from_secs(60));
        d.wait_counters("acked after the stream appears", |c| {
            c.get("forward", "js", "acked") == 1
        });
    }

    /// A reload that changes a NATS forward's settings keeps its
    /// unacknowledged messages (sent again, same ids, by the renewed one)
    /// and its counters: nothing is discarded and no counter goes back.
    #[test]
    fn reload_changing_a_nats_forward_keeps_its_unacknowledged_lines() {
        if require_binary("nats_reload_unacked", "nats-server").is_none() {
            return;
        }
        let tmp = tmp();
        let nats = NatsServer::start(tmp.path());
        let config = |window: u32| {
            format!(
                "[inputs.app]\n[forwards.js]\nurl = \"{}\"\nsubject = \"later.{{input}}\"\n\
                 from = [\"app\"]\nwhen_full = \"block\"\nwindow = {window}\n",
                nats.url()
            )
        };
        let mut d = Daemon::start(&config(256));
        d.write("app", b"one\ntwo\nthree\n");
        let before = d.wait_counters("forward errors", |c| c.get("forward", "js", "errors") > 0);
        // Not acknowledged (no stream yet): not delivered.
        assert_eq!(before.get("forward", "js", "lines_out"), 0, "{before}");
        d.rewrite_config(&config(100));
        d.signal(Signal::HUP);
        d.wait_notify_n("READY=1", 2, TIMEOUT);
        let mut client = nats.client();
        client.create_stream("LATER", &["later.>"], Duration::from_secs(60));
        assert_eq!(client.wait_stream_messages("LATER", 3), 3);
        let c = d.wait_counters("acked after the reload", |c| {
            c.get("forward", "js", "acked") == 3
        });
        assert_eq!(c.get("forward", "js", "discarded"), 0, "{c}");
        assert_eq!(c.get("forward", "js", "lines_out"), 3, "{c}");
        assert!(
            c.get("forward", "js", "connects") >= 2,
            "kept across the reload: {c}"
        );
        thread::sleep(Duration::from_millis(300));
        assert_eq!(client.stream_messages("LATER"), 3, "each line stored once");
    }

    #[test]
    fn journal_forward_sends_native_protocol_entries() {
        let tmp = tmp();
        let (socket, journal) = fake_journal(tmp.path());
        let d = Setup::new(
            "[inputs.alerts]\n[forwards.j]\nurl = \"journal\"\nfrom = [\"alerts\"]\nseverity = \"crit\"\n",
        )
        .env("FIFO_BROKER_JOURNAL_SOCKET", socket.to_str().unwrap())
        .start();
        d.write("alerts", b"disk full\nmulti=eq\n");
        let mut entries = Vec::new();
        for _ in 0..2 {
            let mut buf = vec![0u8; 65536];
            let n = journal.recv(&mut buf).expect("an entry");
            entries.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            entries[0],
            "MESSAGE=disk full\nPRIORITY=2\nSYSLOG_IDENTIFIER=alerts\nFIFO_BROKER_INPUT=alerts\n"
        );
        assert!(
            entries[1].starts_with("MESSAGE=multi=eq\n"),
            "{:?}",
            entries[1]
        );
        d.signal(Signal::TERM);
        d.assert_exit_code(0, "stop with a journal forward");
        let _ = fs::remove_file(&socket);
    }

    /// While the journal is unreachable, sends are retried after the
    /// backoff (0.1 s doubling), not on every batch; once it is back, the
    /// queued lines arrive.
    #[test]
    fn journal_forward_backs_off_while_the_journal_is_away() {
        let tmp = tmp();
        let socket = tmp.path().join("journal.sock");
        let d =
            Setup::new("[inputs.alerts]\n[forwards.j]\nurl = \"journal\"\nfrom = [\"alerts\"]\n")
                .env("FIFO_BROKER_JOURNAL_SOCKET", socket.to_str().unwrap())
                .start();
        let mut w = d.open_writer("alerts");
        // 60 batches over about 1.2 s.
        for i in 0..60 {
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
            thread::sleep(Duration::from_millis(20));
        }
        let errors = d.counters().get("forward", "j", "errors");
        assert!(
            (1..=6).contains(&errors),
            "0.1 + 0.2 + 0.4 + 0.8 s: a handful of attempts in 1.2 s, not one per batch; errors={errors}"
        );
        let journal = UnixDatagram::bind(&socket).expect("binding the journal");
        journal.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = vec![0u8; 65536];
        for i in 0..60 {
            let n = journal.recv(&mut buf).expect("the queued lines arrive");
            let entry = String::from_utf8_lossy(&buf[..n]);
            assert!(
                entry.starts_with(&format!("MESSAGE=line {i}\n")),
                "{entry:?}"
            );
        }
    }

    /// A fake journald: a datagram socket bound in `dir` whose reads time
    /// out after `TIMEOUT`.
    fn fake_journal(dir: &std::path::Path) -> (std::path::PathBuf, UnixDatagram) {
        let socket = dir.join("journal.sock");
        let journal = UnixDatagram::bind(&socket).expect("binding a fake journal");
        journal.set_read_timeout(Some(TIMEOUT)).unwrap();
        (socket, journal)
    }

    /// The journal forward `j`'s errors and discarded lines.
    fn journal_losses(c: &Counters) -> (u64, u64) {
        (
            c.get("forward", "j", "errors"),
            c.get("forward", "j", "discarded"),
        )
    }

    /// Checks that the journal forward `j` lost nothing, then stops `d`.
    fn stop_without_losses(d: &Daemon, socket: &std::path::Path) {
        let c = d.counters();
        assert_eq!(journal_losses(&c), (0, 0), "nothing dropped: {c}");
        d.signal(Signal::TERM);
        d.assert_exit_code(0, "stop with a journal forward");
        let _ = fs::remove_file(socket);
    }

    /// The fields of one native-protocol entry: `KEY=value\n`, or `KEY\n`,
    /// a little-endian u64 length, the value and `\n`.
    fn journal_fields(mut entry: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields = Vec::new();
        while !entry.is_empty() {
            let at = entry
                .iter()
                .position(|&b| b == b'=' || b == b'\n')
                .unwrap_or_else(|| {
                    panic!(
                        "a field name without = or \\n: {:?}",
                        &entry[..entry.len().min(80)]
                    )
                });
            let name = String::from_utf8_lossy(&entry[..at]).into_owned();
            let (value, rest) = if entry[at] == b'=' {
                let rest = &entry[at + 1..];
                let end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or_else(|| panic!("{name}= without its \\n"));
                (&rest[..end], &rest[end + 1..])
            } else {
                let rest = &entry[at + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                let rest = &rest[8..];
                assert_eq!(rest.get(len), Some(&b'\n'), "{name}: {len} bytes and \\n");
                (&rest[..len], &rest[len + 1..])
            };
            fields.push((name, value.to_vec()));
            entry = rest;
        }
        fields
    }

    /// Receives the empty datagram journald gets for an entry too large for
    /// one: it must carry one sealed memfd; returns what the memfd holds.
    fn recv_memfd_entry(journal: &UnixDatagram) -> Vec<u8> {
        use std::io::{Seek, SeekFrom};
        use std::mem::MaybeUninit;
        use std::os::fd::OwnedFd;

        use rustix::fs::{fcntl_get_seals, SealFlags};
        use rustix::io::IoSliceMut;
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

        let mut buf = [0u8; 64];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            journal,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .expect("the datagram carrying the large entry");
        let mut fds: Vec<OwnedFd> = Vec::new();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        assert_eq!(
            (got.bytes, fds.len()),
            (0, 1),
            "expected an empty datagram with one descriptor (SCM_RIGHTS), got {:?}",
            String::from_utf8_lossy(&buf[..got.bytes.min(buf.len())])
        );
        let mut memfd = fs::File::from(fds.pop().unwrap());
        let seals = fcntl_get_seals(&memfd).expect("F_GET_SEALS on the passed fd");
        // journald before v254 takes a memfd as sealed only with exactly these.
        let sealed = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
        assert_eq!(seals, sealed, "the passed memfd's seals");
        // The daemon's writes left the shared offset at the end.
        memfd.seek(SeekFrom::Start(0)).unwrap();
        let mut entry = Vec::new();
        memfd.read_to_end(&mut entry).unwrap();
        entry
    }

    /// A line far beyond the ~200 KiB a datagram may carry, without `\n`.
    fn large_line() -> Vec<u8> {
        (0..400_000u32).map(|i| b'!' + (i % 90) as u8).collect()
    }

    /// The `MESSAGE` of the next plain datagram.
    fn recv_message(journal: &UnixDatagram) -> String {
        let mut buf = vec![0u8; 65536];
        let n = journal.recv(&mut buf).expect("an entry");
        let fields = journal_fields(&buf[..n]);
        let message = fields.iter().find(|(name, _)| name == "MESSAGE");
        String::from_utf8_lossy(&message.expect("a MESSAGE field").1).into_owned()
    }

    /// A daemon with a journal forward on `alerts` and lines up to 1 MiB.
    fn large_line_journal(socket: &std::path::Path) -> Daemon {
        Setup::new(
            "max_line_bytes = 1048576\n[inputs.alerts]\n[forwards.j]\nurl = \"journal\"\nfrom = [\"alerts\"]\n",
        )
        .env("FIFO_BROKER_JOURNAL_SOCKET", socket.to_str().unwrap())
        .start()
    }

    #[test]
    fn journal_forward_passes_an_entry_too_large_for_a_datagram_in_a_sealed_memfd() {
        let tmp = tmp();
        let (socket, journal) = fake_journal(tmp.path());
        let d = large_line_journal(&socket);
        let big = large_line();
        let mut input = big.clone();
        input.extend_from_slice(b"\nshort\n");
        d.write("alerts", &input);

        let entry = recv_memfd_entry(&journal);
        let fields = journal_fields(&entry);
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "MESSAGE",
                "PRIORITY",
                "SYSLOG_IDENTIFIER",
                "FIFO_BROKER_INPUT"
            ]
        );
        assert!(
            fields[0].1 == big,
            "MESSAGE holds {} bytes, expected the whole {}-byte line",
            fields[0].1.len(),
            big.len()
        );
        assert_eq!(fields[1].1, b"5", "PRIORITY (notice)");
        assert_eq!(fields[2].1, b"alerts");
        assert_eq!(fields[3].1, b"alerts");

        let mut buf = vec![0u8; 65536];
        let n = journal.recv(&mut buf).expect("the short line's entry");
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            "MESSAGE=short\nPRIORITY=5\nSYSLOG_IDENTIFIER=alerts\nFIFO_BROKER_INPUT=alerts\n"
        );
        stop_without_losses(&d, &socket);
    }

    #[test]
    fn journal_forward_keeps_a_large_entry_queued_while_journald_is_full() {
        // A datagram socket's queue holds max_dgram_qlen + 1 datagrams: that
        // many short lines fill it, so the memfd's datagram finds it full.
        let qlen: usize = fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
            .expect("reading net.unix.max_dgram_qlen")
            .trim()
            .parse()
            .expect("net.unix.max_dgram_qlen is a number");
        let tmp = tmp();
        let (socket, journal) = fake_journal(tmp.path());
        let d = large_line_journal(&socket);
        let mut input = Vec::new();
        for i in 0..=qlen {
            input.extend_from_slice(format!("fill {i}\n").as_bytes());
        }
        let big = large_line();
        input.extend_from_slice(&big);
        input.extend_from_slice(b"\nlast\n");
        d.write("alerts", &input);
        // The short lines are delivered; the large one and `last` wait.
        let c = d.wait_counters("every line read, the short ones delivered", |c| {
            c.input("alerts", "lines_in") == qlen as u64 + 3
                && c.get("forward", "j", "lines_out") == qlen as u64 + 1
        });
        assert!(
            c.get("forward", "j", "bytes_out") < big.len() as u64,
            "the large entry waits for room: {c}"
        );
        assert_eq!(
            journal_losses(&c),
            (0, 0),
            "a full journal is no error: {c}"
        );

        for i in 0..=qlen {
            assert_eq!(recv_message(&journal), format!("fill {i}"));
        }
        let fields = journal_fields(&recv_memfd_entry(&journal));
        assert!(
            fields[0].0 == "MESSAGE" && fields[0].1 == big,
            "the whole large line once the journal has room, got {} bytes of {}",
            fields[0].1.len(),
            fields[0].0
        );
        assert_eq!(recv_message(&journal), "last");
        stop_without_losses(&d, &socket);
    }

    /// VmRSS of `pid` in KiB.
    fn rss_kib(pid: u32) -> u64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("");
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn hostile_nats_server_garbage_huge_info_and_a_stall_only_cost_reconnects() {
        let (listener, d) = fake_nats_daemon("[subscribers.\"app.tail\"]\nfrom = [\"app\"]\n", "");
        let server = thread::spawn(move || {
            let mut kept = Vec::new();
            for (i, conn) in listener.incoming().take(4).enumerate() {
                let Ok(mut conn) = conn else { continue };
                match i {
                    0 => {
                        let _ = conn.write_all(b"HELLO THERE\r\nhalf a li");
                    }
                    1 => {
                        let _ = conn.write_all(b"INFO {\"x\":\"");
                        let chunk = vec![b'x'; 1 << 20];
                        for _ in 0..100 {
                            if conn.write_all(&chunk).is_err() {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
                kept.push(conn);
            }
            kept.len()
        });
        let r = super::util::Cat::on(&d, "app.tail", "r");
        d.attach("app", &[&r]);
        let connections = join_within(server, Duration::from_secs(30), "fake server");
        assert_eq!(connections, 4, "the forward reconnects after each failure");
        d.write("app", b"still delivered\n");
        eventually(TIMEOUT, || {
            match super::contains(&super::Received::bytes(&r), b"still delivered") {
                true => Ok(()),
                false => Err("the subscriber stopped getting lines".to_string()),
            }
        });
        let c = d.counters();
        assert!(c.get("forward", "js", "errors") >= 3, "{c}");
        let rss = rss_kib(d.pid());
        assert!(rss < 64 * 1024, "RSS {rss} KiB after a 100 MiB INFO");
        d.assert_running("after a hostile server");
    }

    /// A server that floods PINGs and never reads: each PING asks for a
    /// PONG, but one unsent PONG answers them all, so the daemon's memory
    /// stays flat and its other outputs keep being served.
    #[test]
    fn nats_server_flooding_pings_without_reading_cannot_grow_the_daemon() {
        let (listener, d) = fake_nats_daemon("[subscribers.\"app.tail\"]\nfrom = [\"app\"]\n", "");
        let mut fake = FakeNats::accept(&listener);
        fake.read_for(Duration::from_millis(500));
        assert!(
            fake.ponged,
            "the handshake reached its PING: {:?}",
            String::from_utf8_lossy(&fake.got)
        );
        let rss_before = rss_kib(d.pid());
        let flood = thread::spawn(move || {
            let pings = b"PING\r\n".repeat(1 << 16);
            // At least 32 MiB (twice the RSS bound below, so a daemon that
            // kept a PONG per PING would show it), however long a loaded
            // machine takes; then on to 256 MiB while 10 s allow. The daemon
            // reads at most 1 MiB of replies per turn.
            let started = Instant::now();
            let mut sent = 0usize;
            while sent < 32 << 20
                || (sent < 256 << 20 && started.elapsed() < Duration::from_secs(10))
            {
                match fake.conn.write_all(&pings) {
                    Ok(()) => sent += pings.len(),
                    Err(_) => break,
                }
            }
            (sent, fake)
        });
        let r = super::util::Cat::on(&d, "app.tail", "r");
        d.attach("app", &[&r]);
        d.write("app", b"delivered during the flood\n");
        eventually(TIMEOUT, || {
            match super::contains(&super::Received::bytes(&r), b"delivered during the flood") {
                true => Ok(()),
                false => Err("the subscriber got nothing during the flood".to_string()),
            }
        });
        let (sent, _fake) = join_within(flood, Duration::from_secs(120), "ping flood");
        let rss = rss_kib(d.pid());
        println!(
            "PING flood: {} MiB sent; RSS {rss_before} -> {rss} KiB",
            sent >> 20
        );
        assert!(
            sent >= 32 << 20,
            "the flood was too small to show anything: {sent} bytes"
        );
        assert!(
            rss < rss_before + 16 * 1024,
            "RSS grew from {rss_before} to {rss} KiB"
        );
        d.assert_running("after a PING flood");
    }

    /// The server's `max_payload` counts the `Nats-Msg-Id` header too: a
    /// line that fits alone but not with its header is dropped and counted,
    /// never sent (the server would close the connection on it, and the
    /// re-send after every reconnect would jam the forward).
    #[test]
    fn nats_line_that_fits_max_payload_only_without_its_header_is_dropped_not_sent() {
        let (listener, d) = fake_nats_daemon("", "");
        let (conn, _) = listener.accept().expect("the forward connects");
        let mut fake = FakeNats {
            conn,
            got: Vec::new(),
            ponged: false,
        };
        fake.conn
            .write_all(b"INFO {\"server_id\":\"fake\",\"max_payload\":1024,\"headers\":true}\r\n")
            .unwrap();
        fake.conn
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        fake.read_for(Duration::from_millis(300));
        let long = "x".repeat(1000);
        d.write("app", format!("{long}\nafter\n").as_bytes());
        let until = Instant::now() + TIMEOUT;
        while !super::contains(&fake.got, b"after\r\n") && Instant::now() < until {
            fake.read_for(Duration::from_millis(100));
        }
        let got = String::from_utf8_lossy(&fake.got);
        assert!(got.contains("after\r\n"), "the next line is sent: {got}");
        assert!(!got.contains(&long), "the oversized line went out: {got}");
        let c = d.wait_counters("the oversized line counted", |c| {
            c.get("forward", "js", "discarded") == 1
        });
        assert!(c.get("forward", "js", "errors") >= 1, "{c}");
        assert!(d.stderr().contains("max_payload"), "{}", d.stderr());
    }

    /// A fake NATS server's listener on a free port, and a daemon with
    /// input `app`, the `outputs` given, and forward `js` to that server
    /// (subject `logs.{input}`) with `settings` added.
    fn fake_nats_daemon(outputs: &str, settings: &str) -> (TcpListener, Daemon) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a fake server");
        let port = listener.local_addr().unwrap().port();
        let d = Daemon::start(&format!(
            "[inputs.app]\n{outputs}[forwards.js]\nurl = \"nats://127.0.0.1:{port}\"\n\
             subject = \"logs.{{input}}\"\nfrom = [\"app\"]\n{settings}"
        ));
        (listener, d)
    }

    /// One connection of a fake NATS server: it sent INFO, answers the
    /// client's first PING, and keeps what the client sent.
    struct FakeNats {
        conn: std::net::TcpStream,
        got: Vec<u8>,
        ponged: bool,
    }

    impl FakeNats {
        fn accept(listener: &TcpListener) -> FakeNats {
            let (mut conn, _) = listener.accept().expect("the forward connects");
            let _ = conn.write_all(
                b"INFO {\"server_id\":\"fake\",\"max_payload\":1048576,\"headers\":true}\r\n",
            );
            conn.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            FakeNats {
                conn,
                got: Vec::new(),
                ponged: false,
            }
        }

        /// Reads for `how_long` or until the client closes; true if it
        /// closed.
        fn read_for(&mut self, how_long: Duration) -> bool {
            let until = Instant::now() + how_long;
            let mut buf = [0u8; 65536];
            while Instant::now() < until {
                match self.conn.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(n) => self.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                    Err(_) => {}
                }
                if !self.ponged && super::contains(&self.got, b"PING\r\n") {
                    let _ = self.conn.write_all(b"PONG\r\n");
                    self.ponged = true;
                }
            }
            false
        }
    }

    /// A PubAck that never came closes the connection after its timeout;
    /// the next connection's handshake must not inherit that old deadline:
    /// it completes and the message is sent again with the same id.
    #[test]
    fn nats_forward_reconnects_after_an_ack_timeout_and_sends_again() {
        let (listener, d) = fake_nats_daemon("", "when_full = \"block\"\n");
        let mut first = FakeNats::accept(&listener);
        d.write("app", b"never acknowledged\n");
        let closed = first.read_for(Duration::from_secs(25));
        let got = first.got;
        assert!(
            super::contains(&got, b"HPUB logs.app"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            closed,
            "the forward gives up on the missing PubAck and closes"
        );
        let msg_id = |got: &[u8]| {
            let text = String::from_utf8_lossy(got);
            let at = text.find("Nats-Msg-Id: ").expect("a Nats-Msg-Id header");
            text[at..].lines().next().unwrap().to_string()
        };
        let id = msg_id(&got);
        let mut second = FakeNats::accept(&listener);
        let closed = second.read_for(Duration::from_secs(3));
        let again = second.got;
        assert!(
            !closed && super::contains(&again, b"HPUB logs.app"),
            "the new session completes its handshake and sends the message again \
             (closed: {closed}): {}",
            String::from_utf8_lossy(&again)
        );
        assert_eq!(msg_id(&again), id, "sent again with the same id");
        d.assert_running("after an ack timeout");
    }

    /// A NATS server that takes messages and never acknowledges them: the
    /// forward's copies of unacknowledged messages stay within its
    /// `buffer_bytes`, not just within `window` messages.
    #[test]
    fn nats_messages_awaiting_acks_stay_within_buffer_bytes() {
        let (listener, d) = fake_nats_daemon("", "buffer_bytes = 8192\n");
        let mut server = FakeNats::accept(&listener);
        server.read_for(Duration::from_secs(2));
        assert!(
            super::contains(&server.got, b"CONNECT"),
            "{:?}",
            String::from_utf8_lossy(&server.got)
        );
        let line = format!("{}\n", "x".repeat(999));
        for _ in 0..50 {
            d.write("app", line.as_bytes());
        }
        server.read_for(Duration::from_secs(2));
        let sent = server.got.windows(5).filter(|w| w == b"HPUB ").count();
        assert!(
            (1..=9).contains(&sent),
            "{sent} messages of 1000 bytes sent without acks under buffer_bytes = 8192 \
             (window 256): the copies awaiting acks must stay within buffer_bytes"
        );
        d.assert_running("with messages awaiting acks");
    }

    /// A syslog "server" that talks is not one (RFC 6587 is one-way): the
    /// connection is closed and counted, not read forever.
    #[test]
    fn syslog_peer_that_sends_data_is_disconnected_and_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a fake server");
        let port = listener.local_addr().unwrap().port();
        let d = Daemon::start(&format!(
            "[inputs.app]\n[forwards.central]\nurl = \"syslog+tcp://127.0.0.1:{port}\"\nfrom = [\"app\"]\n"
        ));
        let (mut conn, _) = listener.accept().expect("the forward connects");
        let _ = conn.write_all(&vec![b'z'; 64 * 1024]);
        let c = d.wait_counters("the chatty peer is dropped", |c| {
            c.get("forward", "central", "disconnects") >= 1
        });
        assert!(c.get("forward", "central", "errors") >= 1, "{c}");
        assert!(
            d.stderr().contains("a syslog receiver sends nothing"),
            "{}",
            d.stderr()
        );
    }

    #[test]
    fn reload_moving_a_forward_to_another_server_carries_its_queue_over() {
        let closed = free_port();
        let config = |port: u16| {
            format!(
                "[inputs.app]\n[forwards.central]\nurl = \"syslog+tcp://127.0.0.1:{port}\"\nfrom = [\"app\"]\n"
            )
        };
        let mut d = Daemon::start(&config(closed));
        d.write("app", b"queued while down\n");
        d.wait_counters("forward errors", |c| {
            c.get("forward", "central", "errors") > 0
        });
        let server = TcpListener::bind("127.0.0.1:0").expect("binding the new server");
        d.rewrite_config(&config(server.local_addr().unwrap().port()));
        d.signal(Signal::HUP);
        d.wait_notify_n("READY=1", 2, TIMEOUT);
        let got = receive_until(
            &server,
            b"queued while down",
            "the renewed forward connects",
        );
        assert!(
            super::contains(&got, b"- - queued while down"),
            "the line queued before the reload reaches the new server: {:?}",
            String::from_utf8_lossy(&got)
        );
    }

    #[test]
    fn check_rejects_bad_forward_settings_with_their_line() {
        let cases = [
            ("url = \"http://x:1\"", "url ="),
            ("url = \"nats://127.0.0.1:4222\"", "url ="),
            (
                "url = \"syslog+tcp://127.0.0.1:514\"\nsubject = \"x\"",
                "subject =",
            ),
            (
                "url = \"syslog+tls://127.0.0.1:514\"\nca_file = \"/nonexistent/ca.pem\"",
                "ca_file =",
            ),
            (
                "url = \"syslog+tcp://127.0.0.1:514\"\nfacility = \"nope\"",
                "facility =",
            ),
            (
                "url = \"syslog+tcp://127.0.0.1:514\"\nformat = \"{line}\"",
                "format =",
            ),
        ];
        for (body, offending) in cases {
            let config = format!("[inputs.a]\n[forwards.f]\nfrom = [\"a\"]\n{body}\n");
            super::assert_config_error(&config, &[offending], "forwards.f");
        }
        // A name that is not a bare key is quoted, as TOML writes it.
        super::assert_config_error(
            "[inputs.a]\n[forwards.\"c.d\"]\nfrom = [\"a\"]\nurl = \"http://x\"\n",
            &["url ="],
            "forwards.\"c.d\".url: ",
        );
    }
}

// ===========================================================================
// Operating it (SPEC §9): the control socket, `status`, `--instance`,
// `--check` on the file system. Kept together at the end of the file.

/// The sum of counters `keys` of output `name`.
fn json_sum(v: &serde_json::Value, name: &str, keys: &[&str]) -> u64 {
    keys.iter()
        .map(|k| json_counter(v, "outputs", name, k))
        .sum()
}

const STATUS_CONFIG: &str = r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]

[subscribers.nobody]
from = ["alerts"]

[subscribers.stuck]
from = ["alerts"]
buffer_bytes = 4096

[sinks.archive]
path = "archive.log"
from = ["alerts"]
"#;

#[test]
fn status_json_counters_equal_what_was_written_and_read() {
    let d = Daemon::start(STATUS_CONFIG);
    assert_eq!(
        mode_of(&d.path(".control")) & 0o7777,
        0o600,
        "the control socket is owner-only"
    );
    let tail = Cat::on(&d, "alerts.tail", "r");
    let stuck = SlowReader::start(&d.path("stuck"), 4096, Duration::ZERO);
    d.attach("alerts", &[&tail, &stuck]);
    stuck.pause();
    let before = status_json(&d);
    let probes = json_counter(&before, "inputs", "alerts", "lines_in");
    let mut w = d.open_writer("alerts");
    // Far more than the stopped reader's pipe and 4 KiB queue hold.
    write_numbered(&mut w, "status-", 20_000, 50);
    drop(w);
    let total = probes + 20_000;
    tail.wait_data_lines(20_000);
    let v = eventually(TIMEOUT, || {
        let v = status_json(&d);
        if json_counter(&v, "outputs", "archive", "lines_out") == total {
            Ok(v)
        } else {
            Err(format!("expected the sink to have {total} lines out: {v}"))
        }
    });
    assert_eq!(v["pid"].as_u64(), Some(u64::from(d.pid())), "{v}");
    assert_eq!(json_counter(&v, "inputs", "alerts", "lines_in"), total);
    // Probe lines written before `cat` attached were discarded.
    let tail_out = json_counter(&v, "outputs", "alerts.tail", "lines_out");
    let tail_discarded = json_counter(&v, "outputs", "alerts.tail", "discarded");
    assert_eq!(tail_out + tail_discarded, total, "alerts.tail: {v}");
    assert!(tail_discarded < probes, "alerts.tail: {v}");
    assert_eq!(json_counter(&v, "outputs", "nobody", "discarded"), total);
    assert_eq!(json_counter(&v, "outputs", "nobody", "lines_out"), 0);
    let (out, dropped, discarded) = (
        json_counter(&v, "outputs", "stuck", "lines_out"),
        json_counter(&v, "outputs", "stuck", "dropped"),
        json_counter(&v, "outputs", "stuck", "discarded"),
    );
    assert!(dropped > 0, "a stopped reader drops lines: {v}");
    // Like alerts.tail, it may have missed probes sent before it attached.
    assert!(discarded < probes, "stuck: {v}");
    let queued = json_counter(&v, "outputs", "stuck", "queue_lines");
    assert!(
        queued > 0,
        "a stopped reader's lines wait in its queue: {v}"
    );
    assert_eq!(
        out + queued + dropped + discarded,
        total,
        "stuck: out + queued + dropped + discarded = in: {v}"
    );
    let stuck_entry = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "stuck")
        .unwrap();
    assert_eq!(stuck_entry["state"], "attached", "{v}");
    assert_eq!(stuck_entry["buffer_bytes"], 4096, "{v}");
    assert!(stuck_entry["queue_bytes"].as_u64().unwrap() > 0, "{v}");
    let table = status_run(&d.setup, &[]);
    table.assert_code(0, "status");
    for needle in [
        "NAME",
        "alerts.tail",
        "no reader",
        "attached",
        "/ 4 KiB",
        "pid",
    ] {
        assert!(
            table.stdout.contains(needle),
            "table lacks {needle:?}:\n{table}"
        );
    }
}

#[test]
fn status_with_no_daemon_exits_69_naming_the_socket() {
    let s = Setup::new("[inputs.a]\n");
    let out = status_run(&s, &[]);
    out.assert_code(69, "status with no daemon");
    let socket = s.dir.join(".control");
    assert!(
        out.stderr.contains(&socket.display().to_string()),
        "stderr should name {}:\n{out}",
        socket.display()
    );
}

#[test]
fn status_json_refuses_half_an_answer_with_69() {
    let s = Setup::new("[inputs.a]\n");
    fs::create_dir_all(&s.dir).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(s.dir.join(".control")).unwrap();
    // A daemon that dies mid-answer: half a document, then the end.
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 64];
        let _ = conn.read(&mut request);
        let _ = conn.write_all(br#"{"pid":1234,"version":"0.1.0","inputs":[{"name":"a","lines"#);
    });
    let out = status_run(&s, &["--json"]);
    join_within(server, TIMEOUT, "fake control socket");
    out.assert_code(69, "status --json on a cut answer");
    assert!(out.stdout.is_empty(), "nothing half-printed: {out}");
    assert!(out.stderr.contains("not a status document"), "{out}");
}

#[test]
fn status_reads_busy_even_when_the_close_resets_the_connection() {
    let s = Setup::new("[inputs.a]\n");
    fs::create_dir_all(&s.dir).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(s.dir.join(".control")).unwrap();
    // As a daemon serving 16 clients: it says it is busy and closes without
    // reading; the request already queued makes that close a reset.
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_millis(200));
        let _ = conn.write_all(b"busy: serving 16 status clients\n");
    });
    let out = status_run(&s, &[]);
    join_within(server, TIMEOUT, "fake control socket");
    out.assert_code(69, "status against a busy daemon");
    assert!(out.stderr.contains("running but busy"), "{out}");
}

#[test]
fn status_finds_the_daemon_after_an_edit_broke_the_config() {
    let mut d = Daemon::start("[inputs.a]\n");
    d.rewrite_config("[inputs.a]\nbogus = 1\n");
    let out = status_run(&d.setup, &["--json"]);
    out.assert_code(0, "status with a config broken since the start");
    assert!(
        out.stderr.contains("bogus"),
        "the config's error is shown: {out}"
    );
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["pid"], d.pid(), "{out}");
}

#[test]
fn stale_control_socket_is_replaced_and_removed_on_stop() {
    let s = Setup::new("[inputs.a]\n");
    fs::create_dir_all(&s.dir).unwrap();
    fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o755)).unwrap();
    drop(std::os::unix::net::UnixListener::bind(s.dir.join(".control")).unwrap());
    let d = s.start();
    status_run(&d.setup, &[]).assert_code(0, "status after a stale socket");
    d.signal(Signal::TERM);
    d.assert_exit_code(0, "SIGTERM");
    assert_absent(&d.path(".control"), "after SIGTERM");
}

#[test]
fn something_else_at_the_control_socket_name_is_refused_untouched() {
    let s = Setup::new("[inputs.a]\n");
    fs::create_dir_all(&s.dir).unwrap();
    fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(s.dir.join(".control"), "mine").unwrap();
    let d = s.spawn();
    d.assert_exit_code(73, "a regular file at .control");
    assert_eq!(fs::read_to_string(d.path(".control")).unwrap(), "mine");
    assert!(d.stderr().contains(".control"), "{}", d.stderr());
}

/// The `fifo_broker_lines_total{direction="out"}` sample of output `name`.
fn prometheus_lines_out(d: &Daemon, name: &str) -> f64 {
    let out = status_run(&d.setup, &["--prometheus"]);
    out.assert_code(0, "status --prometheus");
    let lines = out.stdout.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("exposition parses");
    let sample = scrape.samples.iter().find(|s| {
        s.metric == "fifo_broker_lines_total"
            && s.labels.get("direction") == Some("out")
            && s.labels.get("name") == Some(name)
    });
    match sample.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v)) => *v,
        other => panic!(
            "no lines_total counter for {name} ({other:?}) in:\n{}",
            out.stdout
        ),
    }
}

#[test]
fn lines_out_counts_delivered_lines_and_never_goes_down_when_queued_lines_are_dropped() {
    let d = Daemon::start(
        "[inputs.alerts]\n\
         [subscribers.stuck]\nfrom = [\"alerts\"]\nbuffer_bytes = 4096\nwhen_full = \"drop-oldest\"\n",
    );
    let stuck = SlowReader::start(&d.path("stuck"), 4096, Duration::ZERO);
    d.attach("alerts", &[&stuck]);
    stuck.pause();
    let mut w = d.open_writer("alerts");
    let mut last = 0.0;
    let mut written = json_counter(&status_json(&d), "inputs", "alerts", "lines_in");
    for round in 0..5 {
        write_numbered(&mut w, &format!("round{round}-"), 20_000, 50);
        written += 20_000;
        let v = eventually(TIMEOUT, || {
            let v = status_json(&d);
            match json_counter(&v, "inputs", "alerts", "lines_in") {
                n if n == written => Ok(v),
                n => Err(format!("expected {written} lines in, got {n}")),
            }
        });
        assert!(
            json_counter(&v, "outputs", "stuck", "queue_lines") > 0,
            "a stopped reader's queue holds lines: {v}"
        );
        assert!(json_counter(&v, "outputs", "stuck", "dropped") > 0, "{v}");
        let books = json_sum(
            &v,
            "stuck",
            &["lines_out", "queue_lines", "dropped", "discarded"],
        );
        assert_eq!(
            books, written,
            "routed = lines_out + queue_lines + dropped + discarded: {v}"
        );
        let out = json_counter(&v, "outputs", "stuck", "lines_out");
        assert!(
            out as f64 >= last,
            "round {round}: lines_out went from {last} to {out}: {v}"
        );
        assert_eq!(prometheus_lines_out(&d, "stuck"), out as f64, "{v}");
        last = out as f64;
    }
    // The reader leaves: its queue is discarded, and what it was given
    // stays counted.
    drop(stuck);
    let v = eventually(TIMEOUT, || {
        let v = status_json(&d);
        match json_counter(&v, "outputs", "stuck", "queue_lines") {
            0 => Ok(v),
            n => Err(format!("expected the queue discarded, {n} lines left: {v}")),
        }
    });
    let counter = prometheus_lines_out(&d, "stuck");
    assert_eq!(
        counter, last,
        "the discarded queue was never delivered: {v}"
    );
    assert_eq!(
        json_counter(&v, "outputs", "stuck", "lines_out") as f64,
        counter,
        "with the queue gone, lines_out is what was delivered: {v}"
    );
    let books = json_sum(&v, "stuck", &["lines_out", "dropped", "discarded"]);
    assert_eq!(
        books, written,
        "routed = lines_out + dropped + discarded: {v}"
    );
}

#[test]
fn status_prometheus_parses() {
    let d = Daemon::start(STATUS_CONFIG);
    d.write("alerts", b"one\ntwo\n");
    eventually(TIMEOUT, || {
        let v = status_json(&d);
        match json_counter(&v, "inputs", "alerts", "lines_in") {
            2 => Ok(()),
            n => Err(format!("expected 2 lines in, got {n}")),
        }
    });
    let out = status_run(&d.setup, &["--prometheus"]);
    out.assert_code(0, "status --prometheus");
    let lines = out.stdout.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("exposition parses");
    let sample = |metric: &str, name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("name") == Some(name))
            .unwrap_or_else(|| panic!("no {metric}{{name={name:?}}} in:\n{}", out.stdout))
            .value
            .clone()
    };
    let counter = |metric: &str, name: &str| match sample(metric, name) {
        prometheus_parse::Value::Counter(v) => v,
        other => panic!("{metric} is not a counter: {other:?}"),
    };
    assert_eq!(counter("fifo_broker_lines_total", "alerts"), 2.0);
    assert_eq!(counter("fifo_broker_lines_total", "archive"), 2.0);
    assert_eq!(counter("fifo_broker_discarded_lines_total", "nobody"), 2.0);
    assert!(
        out.stdout
            .contains("# TYPE fifo_broker_lines_total counter"),
        "{out}"
    );
    if let Ok(mut promtool) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(out.stdout.as_bytes()).unwrap();
        drop(stdin);
        let result = promtool.wait_with_output().unwrap();
        assert!(
            result.status.success() && result.stdout.is_empty() && result.stderr.is_empty(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
}

#[test]
fn status_calls_during_a_stream_through_a_block_subscriber_lose_nothing() {
    const LINES: usize = 100_000;
    let d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers."alerts.block"]
from = ["alerts"]
when_full = "block"
buffer_bytes = 65536
"#,
    );
    let reader = Cat::on(&d, "alerts.block", "r");
    d.attach("alerts", &[&reader]);
    status_run(&d.setup, &[]).assert_code(0, "first status");
    let fds = d.steady_fd_count();
    let path = d.path("alerts");
    let writer = thread::spawn(move || {
        let mut w = open_fifo_writer(&path);
        write_numbered(&mut w, "stream-", LINES, 100);
    });
    for i in 0..1000 {
        let out = status_run(&d.setup, &["--json"]);
        out.assert_code(0, &format!("status call {i}"));
    }
    join_within(writer, Duration::from_secs(60), "the writer");
    let lines = wait_text_lines(&reader, LINES, Duration::from_secs(60), "alerts.block");
    let stream: Vec<String> = lines
        .into_iter()
        .filter(|l| l.starts_with("stream-"))
        .collect();
    assert_numbered(&stream, "stream-", LINES, "alerts.block");
    let v = status_json(&d);
    assert!(
        v["control"]["served"].as_u64().unwrap() >= 1001,
        "every status call was served: {v}"
    );
    assert_eq!(v["control"]["dropped"], 0, "{v}");
    d.wait_fd_count(fds, || {
        format!("as before the status calls: {:?}", d.fd_targets())
    });
}

#[test]
fn control_clients_that_never_read_or_send_garbage_are_dropped() {
    let d = Daemon::start(STATUS_CONFIG);
    let tail = Cat::on(&d, "alerts.tail", "r");
    d.attach("alerts", &[&tail]);
    let fds = d.steady_fd_count();
    let silent = control_connect(&d);
    let mut garbage = control_connect(&d);
    let flood = thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..10 {
            match garbage.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    d.write("alerts", b"delivered meanwhile\n");
    wait_text_lines(&tail, 1, TIMEOUT, "alerts.tail while clients misbehave");
    let sent = flood.join().unwrap();
    assert!(
        sent < 10 << 20,
        "the daemon must stop reading a 10 MiB request (it took {sent} bytes)"
    );
    let v = eventually(Duration::from_secs(15), || {
        let v = status_json(&d);
        if v["control"]["dropped"].as_u64() >= Some(2) {
            Ok(v)
        } else {
            Err(format!("expected both bad clients dropped: {v}"))
        }
    });
    assert!(v["control"]["served"].as_u64().unwrap() >= 1, "{v}");
    let mut buf = [0u8; 16];
    let mut silent = silent;
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(
        silent.read(&mut buf).unwrap_or(0),
        0,
        "the silent client sees its connection closed"
    );
    d.write("alerts", b"still delivered\n");
    wait_text_lines(&tail, 2, TIMEOUT, "alerts.tail after the drops");
    assert!(
        d.stderr().contains("dropped a client"),
        "drops are logged:\n{}",
        d.stderr()
    );
    d.wait_fd_count(fds, || format!("{:?}", d.fd_targets()));
}

#[test]
fn completions_and_usage_errors() {
    let out = util::run_binary(&["completions", "bash"], TIMEOUT);
    out.assert_code(0, "completions bash");
    assert!(
        out.stdout.contains("status") && out.stdout.contains("--instance"),
        "{out}"
    );
    for args in [
        &["status", "--bogus"][..],
        &["--config", "a", "--instance", "b"],
    ] {
        util::run_binary(args, TIMEOUT).assert_code(64, &format!("{args:?}"));
    }
}

/// What bash's completion offers for the words `line` (the last one is the
/// word being completed), with the script `completions bash` prints,
/// run in `cwd`.
fn bash_completes(script: &Path, cwd: &Path, line: &[&str]) -> Vec<String> {
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let cur = line[line.len() - 1];
    let prev = line[line.len() - 2];
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\n_fifo__broker fifo-broker '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words.join(" "),
        line.len() - 1
    );
    let out = std::process::Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(program)
        .current_dir(cwd)
        .output()
        .expect("running bash");
    assert!(out.status.success(), "bash: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_their_options() {
    if util::servers::find_binary("bash").is_none() {
        println!("SKIP bash_completion: no bash");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("fifo-broker.bash");
    let out = util::run_binary(&["completions", "bash"], TIMEOUT);
    out.assert_code(0, "completions bash");
    fs::write(&script, &out.stdout).unwrap();
    fs::write(tmp.path().join("a-file-here"), "").unwrap();
    let dir = tmp.path();
    let top = bash_completes(&script, dir, &["fifo-broker", ""]);
    assert!(
        top.contains(&"status".to_owned()) && top.contains(&"--check".to_owned()),
        "{top:?}"
    );
    let status = bash_completes(&script, dir, &["fifo-broker", "status", "--"]);
    for option in [
        "--json",
        "--prometheus",
        "--watch",
        "--instance",
        "--config",
    ] {
        assert!(
            status.contains(&option.to_owned()),
            "status -- offers {option}: {status:?}"
        );
    }
    let shells = bash_completes(&script, dir, &["fifo-broker", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(
            shells.contains(&shell.to_owned()),
            "completions offers {shell}: {shells:?}"
        );
    }
    // --instance takes names of /etc/fifo-broker/*.toml, never file names.
    let instances = bash_completes(&script, dir, &["fifo-broker", "status", "--instance", ""]);
    assert!(
        !instances.contains(&"a-file-here".to_owned()),
        "{instances:?}"
    );
    let config = bash_completes(&script, dir, &["fifo-broker", "status", "--config", "a-"]);
    assert_eq!(config, ["a-file-here"], "--config completes file names");
}

/// Every entry under `root` with its type, mode, size and inode, sorted:
/// compared before and after a `--check` that must change nothing.
fn listing(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let md = fs::symlink_metadata(&path).unwrap();
            out.push(format!(
                "{} {:?} {:o} {} {}",
                path.display(),
                md.file_type(),
                md.mode(),
                md.len(),
                md.ino()
            ));
            if md.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// `--check` on `s` exits 73 naming `path` and changes nothing under its
/// root; then starting it is refused the same way.
fn assert_check_73(s: Setup, path: &Path, what: &str) {
    let before = listing(&s.root);
    let out = s.check();
    out.assert_code(73, &format!("--check: {what}"));
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "--check: {what}: expected stderr to name {}:\n{out}",
        path.display()
    );
    assert_eq!(
        before,
        listing(&s.root),
        "--check: {what}: nothing may change on disk"
    );
    let _d = assert_refused_73(s, path, what);
}

const CHECK_CONFIG: &str = r#"
[inputs.alerts]

[subscribers."alerts.tail"]
from = ["alerts"]

[sinks.archive]
path = "archive.log"
from = ["alerts"]
"#;

#[test]
fn check_refuses_each_file_system_problem_with_73_changing_nothing() {
    let s = Setup::new(CHECK_CONFIG);
    make_dir(&s);
    fs::write(s.dir.join("alerts.tail"), "precious\n").unwrap();
    assert_check_73(
        s.clone(),
        &s.dir.join("alerts.tail"),
        "a file at a FIFO's name",
    );

    let s = Setup::new(CHECK_CONFIG);
    make_dir(&s);
    fs::create_dir(s.dir.join(".control")).unwrap();
    assert_check_73(
        s.clone(),
        &s.dir.join(".control"),
        "a directory at .control",
    );

    let s = Setup::new(CHECK_CONFIG);
    fs::create_dir(s.root.join("real")).unwrap();
    std::os::unix::fs::symlink(s.root.join("real"), &s.dir).unwrap();
    assert_check_73(s.clone(), &s.dir, "dir is a symlink");

    let s = Setup::new(CHECK_CONFIG);
    make_dir(&s);
    fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o1777)).unwrap();
    let out = s.check();
    assert!(
        out.stderr.contains("0o1777") && out.stderr.contains("of its own"),
        "a shared dir: say to use one of its own, not to chmod it:\n{out}"
    );
    assert!(!out.stderr.contains("chmod"), "{out}");
    assert_check_73(s.clone(), &s.dir, "dir writable by others");

    let s = Setup::new(&CHECK_CONFIG.replace(
        "path = \"archive.log\"",
        "path = \"/nonexistent-fb-dir/x/archive.log\"",
    ));
    assert_check_73(
        s,
        Path::new("/nonexistent-fb-dir/x"),
        "a sink's directory is missing",
    );
    assert!(!Path::new("/nonexistent-fb-dir").exists());

    let s =
        Setup::new(&CHECK_CONFIG.replace("path = \"archive.log\"", "path = \"../fifos/alerts\""));
    make_dir(&s);
    let sink = s.log_dir.join("../fifos/alerts");
    assert_check_73(s.clone(), &sink, "a sink at a FIFO's path");
    assert!(!s.dir.join("alerts").exists());

    let s = Setup::new(CHECK_CONFIG);
    fs::create_dir_all(s.log_dir.join("archive.log")).unwrap();
    assert_check_73(
        s.clone(),
        &s.log_dir.join("archive.log"),
        "a directory at a sink's path",
    );

    // A `..` leads out of log_dir: that directory is not the daemon's to make.
    let s = Setup::new(
        &CHECK_CONFIG.replace("path = \"archive.log\"", "path = \"../escaped/deep/x.log\""),
    );
    assert_check_73(
        s.clone(),
        &s.log_dir.join("../escaped/deep"),
        "a sink's missing directory behind ..",
    );
    assert!(!s.root.join("escaped").exists());
}

#[test]
fn check_passes_a_config_that_starts_and_creates_nothing() {
    let s = Setup::new(&format!(
        "{CHECK_CONFIG}\n[sinks.deep]\npath = \"sub/dir/deep.log\"\nfrom = [\"alerts\"]\n"
    ));
    let before = listing(&s.root);
    let out = s.check();
    out.assert_code(0, "--check");
    assert_eq!(before, listing(&s.root), "--check creates nothing");
    let d = s.start();
    assert!(d.setup.log_dir.join("sub/dir/deep.log").exists());
}

#[test]
fn reload_logs_one_line_per_change() {
    let mut d = Daemon::start(
        r#"
[inputs.alerts]

[subscribers.all]
from = ["alerts"]

[subscribers."alerts.tail"]
from = ["alerts"]

[forwards.central]
url = "syslog+tcp://127.0.0.1:10"
from = ["alerts"]
"#,
    );
    d.rewrite_config(
        r#"
[inputs.alerts]
mode = 0o622

[inputs.backups]

[subscribers."alerts.tail"]
from = ["alerts", "backups"]
when_full = "block"
match = "ERROR"

[forwards.central]
url = "syslog+tcp://127.0.0.1:9"
from = ["alerts"]
app_name = "renamed"
"#,
    );
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    let log = d.stderr();
    for line in [
        "reload: alerts.tail: match none -> \"ERROR\"",
        "reload: central: url syslog+tcp://127.0.0.1:10 -> syslog+tcp://127.0.0.1:9",
        "reload: central: app_name changed",
        "reload: added input backups",
        "reload: removed subscriber all",
        "reload: alerts: mode 0620 -> 0622",
        "reload: alerts.tail: from [alerts] -> [alerts, backups]",
        "reload: alerts.tail: buffer_bytes 1048576 when_full drop-newest -> buffer_bytes \
         1048576 when_full block",
    ] {
        assert!(log.contains(line), "expected {line:?} in the log:\n{log}");
    }
    fs::remove_file(d.path("backups")).unwrap();
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 3, TIMEOUT);
    let log = d.stderr();
    assert!(
        log.contains("reload: recreated input backups"),
        "a FIFO recreated behind the daemon's back is logged:\n{log}"
    );
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 4, TIMEOUT);
    assert!(d.stderr().contains("reload: no changes"), "{}", d.stderr());
}

#[test]
fn second_instance_message_names_the_owner_pid() {
    let d = Daemon::start(SIMPLE);
    let cfg = d.setup.config.to_str().unwrap().to_owned();
    let out = d.setup.run(&["--config", &cfg]);
    out.assert_code(75, "second instance");
    let pid = format!("(pid {})", d.pid());
    assert!(out.stderr.contains(&pid), "expected {pid} in:\n{out}");
}

#[test]
fn metrics_file_is_written_after_activity_and_removed_at_stop() {
    let s = Setup::new(&format!("metrics_file = \"@METRICS@\"\n{STATUS_CONFIG}"));
    let metrics = s.root.join("fifo-broker.prom");
    let text = s
        .config_text
        .replace("@METRICS@", metrics.to_str().unwrap());
    fs::write(&s.config, text).unwrap();
    let d = s.start();
    let read = || fs::read_to_string(&metrics).unwrap_or_default();
    eventually(TIMEOUT, || {
        if read()
            .contains("fifo_broker_lines_total{direction=\"in\",kind=\"input\",name=\"alerts\"} 0")
        {
            Ok(())
        } else {
            Err(format!(
                "expected the metrics file at startup, got:\n{}",
                read()
            ))
        }
    });
    d.write("alerts", b"one\ntwo\nthree\n");
    eventually(TIMEOUT, || {
        if read()
            .contains("fifo_broker_lines_total{direction=\"in\",kind=\"input\",name=\"alerts\"} 3")
        {
            Ok(())
        } else {
            Err(format!(
                "expected 3 lines in the metrics file, got:\n{}",
                read()
            ))
        }
    });
    let text = read();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the metrics file parses");
    assert_eq!(
        mode_of(&metrics) & 0o777,
        0o644,
        "readable by node_exporter"
    );
    assert!(!d.setup.root.join("fifo-broker.prom.tmp").exists());
    d.signal(Signal::TERM);
    d.assert_exit_code(0, "SIGTERM");
    assert_absent(&metrics, "after a clean stop");
}

/// Lets a running `status --watch` redraw for 2.5 s, presses `q` on its
/// standard input, and returns how it exited and what it printed.
fn watch_then_q(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    thread::sleep(Duration::from_millis(2500));
    child.stdin.take().unwrap().write_all(b"q").unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "status --watch did not leave on q"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status, out)
}

#[test]
fn status_watch_redraws_and_leaves_on_q() {
    use std::process::{Command, Stdio};
    let d = Daemon::start(STATUS_CONFIG);
    let cfg = d.setup.config.to_str().unwrap().to_owned();
    let child = Command::new(env!("CARGO_BIN_EXE_fifo-broker"))
        .args(["status", "--watch", "--config", &cfg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning status --watch");
    d.write("alerts", b"one\n");
    let (out, stdout) = watch_then_q(child);
    assert!(out.success(), "status --watch: {out:?}\n{stdout}");
    assert!(
        stdout.matches("OUT/s").count() >= 2,
        "expected at least two redraws with rates:\n{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no escape codes into a pipe:\n{stdout}"
    );
}

#[test]
fn status_watch_in_a_terminal_fits_the_window_and_gives_the_terminal_back() {
    use std::process::{Command, Stdio};
    let Some(script) = util::servers::find_binary("script") else {
        println!("SKIP status_watch_in_a_terminal: no script(1) (util-linux) for a pty");
        return;
    };
    let d = Daemon::start(STATUS_CONFIG);
    d.write("alerts", b"one\n");
    // script(1) runs the watch on a pty of 60 columns and 6 rows; its
    // standard input (a pipe here) reaches the pty, so `q` is a key press.
    let inner = format!(
        "stty cols 60 rows 6; exec {} status --watch --config {}",
        env!("CARGO_BIN_EXE_fifo-broker"),
        d.setup.config.display()
    );
    let child = Command::new(script)
        .args(["-qfec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning script");
    let (status, out) = watch_then_q(child);
    assert!(
        status.success(),
        "status --watch in a pty: {status:?}\n{out:?}"
    );
    assert!(
        out.contains("\x1b[?25l") && out.ends_with("\x1b[?25h"),
        "cursor hidden, then given back: {out:?}"
    );
    let screens: Vec<&str> = out.split("\x1b[H\x1b[2J").skip(1).collect();
    assert!(screens.len() >= 2, "expected redraws: {out:?}");
    for screen in &screens {
        let screen = screen.trim_end_matches("\x1b[?25h");
        let lines: Vec<&str> = screen.split('\n').collect();
        assert!(lines.len() <= 6, "more rows than the window: {screen:?}");
        for line in lines {
            let line = line.trim_end_matches('\r');
            assert!(
                line.chars().count() <= 60,
                "a line wider than the window: {line:?}"
            );
        }
    }
    assert!(
        screens[1].contains("alerts") && screens[1].contains("IN/s"),
        "{:?}",
        screens[1]
    );
}

#[test]
fn control_socket_serves_16_clients_at_once_and_is_recreated_on_reload() {
    let d = Daemon::start("[inputs.alerts]\n");
    let silent: Vec<_> = (0..16).map(|_| control_connect(&d)).collect();
    let mut extra = control_connect(&d);
    extra.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut said = String::new();
    let _ = extra.read_to_string(&mut said);
    assert!(
        said.starts_with("busy: "),
        "a 17th client is told the daemon is busy and closed at once: {said:?}"
    );
    let busy = status_run(&d.setup, &[]);
    busy.assert_code(69, "status while 16 clients are connected");
    assert!(busy.stderr.contains("running but busy"), "{busy}");
    drop(silent);
    let v = eventually(TIMEOUT, || {
        let out = status_run(&d.setup, &["--json"]);
        match out.status.code() {
            Some(0) => Ok(serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()),
            _ => Err(format!("status after the silent clients left:\n{out}")),
        }
    });
    assert!(v["control"]["refused"].as_u64() >= Some(1), "{v}");

    fs::remove_file(d.path(".control")).unwrap();
    status_run(&d.setup, &[]).assert_code(69, "status with the socket deleted");
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    status_run(&d.setup, &[]).assert_code(0, "status after the reload recreated it");
    assert!(
        d.stderr().contains("reload: recreated"),
        "the reload says it recreated the socket:\n{}",
        d.stderr()
    );
}

#[test]
fn check_as_root_of_a_service_owned_dir_passes_with_a_warning() {
    if !require_root("check_as_root_of_a_service_owned_dir_passes_with_a_warning") {
        return;
    }
    let s = Setup::new(CHECK_CONFIG);
    make_dir(&s);
    rustix::fs::chown(&s.dir, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
    let out = s.check();
    out.assert_code(0, "--check as root on a dir the service user owns");
    assert!(out.stderr.contains("owned by uid 65534"), "{out}");
    fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o777)).unwrap();
    s.check()
        .assert_code(73, "an unsafe mode is refused whoever owns it");
}

#[test]
fn check_prints_the_group_name_and_warns_about_pipe_bytes() {
    let s = Setup::new(&format!(
        "group = 0\npipe_bytes = 1073741824\n{CHECK_CONFIG}"
    ));
    let out = s.check();
    out.assert_code(0, "--check");
    assert!(out.stdout.contains("group: root (0)"), "{out}");
    assert!(
        out.stderr.contains("pipe-max-size") && out.stderr.contains("pipe_bytes"),
        "pipe_bytes above /proc/sys/fs/pipe-max-size is a warning:\n{out}"
    );
}

#[test]
fn check_warns_about_a_numeric_group_no_group_entry_names() {
    if !rustix::process::geteuid().is_root() {
        println!("SKIP check_warns_about_a_numeric_group: only root may chown to any gid");
        return;
    }
    let s = Setup::new(&format!("group = 3999999\n{CHECK_CONFIG}"));
    let out = s.check();
    out.assert_code(0, "--check with an unnamed gid");
    assert!(
        out.stderr.contains("no group has gid 3999999"),
        "a numeric group nobody names is worth a warning:\n{out}"
    );
    let named = Setup::new(&format!("group = 0\n{CHECK_CONFIG}")).check();
    assert!(!named.stderr.contains("no group has gid"), "{named}");
}

/// At startup and on reload, not only in `--check`: a daemon that may not
/// pass /proc/sys/fs/pipe-max-size (no CAP_SYS_RESOURCE, as root in many
/// containers) warns that `pipe_bytes` will not be applied.
#[test]
fn pipe_bytes_above_the_limit_is_a_warning_at_startup_and_on_reload() {
    let max: usize = fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .expect("reading pipe-max-size")
        .trim()
        .parse()
        .unwrap();
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let capable = caps & (1 << 24) != 0;
    let d = Daemon::start(&format!("pipe_bytes = {}\n[inputs.a]\n", max * 2));
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    let warnings = d
        .stderr()
        .matches("is above /proc/sys/fs/pipe-max-size")
        .count();
    match capable {
        true => assert_eq!(
            warnings,
            0,
            "CAP_SYS_RESOURCE passes the limit:\n{}",
            d.stderr()
        ),
        false => assert_eq!(warnings, 2, "at startup and on reload:\n{}", d.stderr()),
    }
}

/// A reload that changes `pipe_bytes` resizes the pipes of attached
/// subscribers too, not only those of the inputs and later readers.
#[test]
fn reload_changing_pipe_bytes_resizes_an_attached_subscribers_pipe() {
    let config = |bytes: usize| {
        format!("pipe_bytes = {bytes}\n[inputs.a]\n[subscribers.tail]\nfrom = [\"a\"]\n")
    };
    let mut d = Daemon::start(&config(262_144));
    // The reader's end of the subscriber's pipe, to ask its size.
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(d.path("tail"))
        .expect("opening the subscriber FIFO");
    let size = || rustix::pipe::fcntl_getpipe_size(&reader).expect("F_GETPIPE_SZ");
    eventually(TIMEOUT, || {
        d.write("a", b"attach\n");
        match size() {
            262_144 => Ok(()),
            n => Err(format!(
                "expected the attached pipe at 262144 bytes, got {n}"
            )),
        }
    });
    for (n, bytes) in [(2, 65_536), (3, 131_072)] {
        d.rewrite_config(&config(bytes));
        d.signal(Signal::HUP);
        d.wait_notify_n("READY=1", n, TIMEOUT);
        assert_eq!(size(), bytes, "after the reload to pipe_bytes = {bytes}");
    }
    drop(reader);
}

/// `metrics_file` may not replace the daemon's own files: a FIFO (or any
/// name in the FIFO directory), a sink's file or rotation, the config file.
/// `--check` says so (73, naming the path) and the daemon does not start.
#[test]
fn metrics_file_on_the_daemons_own_files_is_refused() {
    let s = Setup::new("[inputs.a]\n");
    let dir = s.dir.display().to_string();
    let log = s.log_dir.display().to_string();
    let config = s.config.display().to_string();
    let rewrite = |body: &str| {
        let text = format!("[broker]\ndir = \"{dir}\"\nlog_dir = \"{log}\"\n{body}");
        fs::write(&s.config, text).expect("writing the config");
    };
    for (target, why) in [
        (format!("{dir}/a"), "FIFO directory"),
        (format!("{dir}/metrics.prom"), "FIFO directory"),
        (format!("{log}/k.log"), "sink k"),
        (format!("{log}/k.log.1"), "sink k"),
        (config.clone(), "config file"),
    ] {
        let body = format!(
            "metrics_file = \"{target}\"\n[inputs.a]\n[sinks.k]\npath = \"k.log\"\nfrom = [\"a\"]\n"
        );
        rewrite(&body);
        let out = s.check();
        out.assert_code(73, &format!("--check with metrics_file = {target}"));
        assert!(
            out.stderr.contains(why) && out.stderr.contains(&target),
            "{out}"
        );
        let run = s.run(&["--config", &config]);
        run.assert_code(73, &format!("starting with metrics_file = {target}"));
    }
    rewrite(&format!(
        "metrics_file = \"{log}/k.log.prom\"\n[inputs.a]\n[sinks.k]\npath = \"k.log\"\nfrom = [\"a\"]\n"
    ));
    fs::create_dir_all(&s.log_dir).unwrap();
    s.check()
        .assert_code(0, "a metrics file of its own beside a sink");
}

/// `fifo-broker --check --config <config>` as uid/gid 65534 (no groups).
fn check_as_nobody(s: &Setup) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_fifo-broker"))
        .args(["--check", "--config", s.config.to_str().unwrap()])
        .output()
        .expect("running setpriv")
}

#[test]
fn check_as_an_unprivileged_user_refuses_what_it_could_not_do() {
    if !require_root("check_as_an_unprivileged_user_refuses_what_it_could_not_do") {
        return;
    }
    let nobody = Some(rustix::process::Uid::from_raw(65534));
    type Case = (&'static str, &'static str, fn(&Setup) -> PathBuf);
    let cases: [Case; 3] = [
        ("", "cannot be created", |s| s.dir.clone()),
        ("group = 0\n", "not a member", |s| s.dir.clone()),
        ("", "not writable by uid 65534", |s| s.log_dir.clone()),
    ];
    for (i, (broker, why, path)) in cases.into_iter().enumerate() {
        let s = Setup::new(&format!("{broker}{CHECK_CONFIG}"));
        fs::set_permissions(&s.root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&s.config, fs::Permissions::from_mode(0o644)).unwrap();
        if i > 0 {
            make_dir(&s);
            rustix::fs::chown(&s.dir, nobody, None).unwrap();
        }
        if i > 0 {
            fs::create_dir(&s.log_dir).unwrap();
        }
        if i == 1 {
            rustix::fs::chown(&s.log_dir, nobody, None).unwrap();
        }
        let before = listing(&s.root);
        let out = check_as_nobody(&s);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(73), "case {i}: {stderr}");
        let path = path(&s);
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(why),
            "case {i}: expected {} and {why:?} in: {stderr}",
            path.display()
        );
        assert_eq!(before, listing(&s.root), "case {i}: nothing may change");
    }
}

// ---------------------------------------------------------------------------
// Reliability (issue 16, docs/RELIABILITY.md): the chaos soak in short, and
// the daemon at its resource limits.

#[path = "../benches/soak/mod.rs"]
mod soak;

/// The soak of `cargo bench --bench soak`, for 60 s at a gentler rate (the
/// binary here is a debug build): every invariant it checks must hold.
#[test]
fn chaos_soak_60s_keeps_every_invariant() {
    let opts = soak::Options {
        bin: util::BIN.into(),
        duration: Duration::from_secs(60),
        rate: 80,
        seed: 16,
        verbose: false,
    };
    let report = soak::run(&opts);
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    assert!(
        report.failures.is_empty(),
        "the soak broke invariants:\n{}\n{}",
        report.failures.join("\n"),
        report.table
    );
    eprintln!("{}", report.table);
}

/// Sets RLIMIT_NOFILE of a running process.
fn prlimit_nofile(pid: u32, limit: usize) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("running prlimit (util-linux)");
    assert!(
        status.success(),
        "prlimit --pid {pid} --nofile={limit} failed"
    );
}

#[test]
fn too_few_fds_for_the_fifos_is_a_clear_error_that_leaves_nothing_behind() {
    let mut body = String::new();
    for i in 0..100 {
        body.push_str(&format!("[inputs.in{i:02}]\n"));
    }
    body.push_str("[subscribers.all]\nfrom = [\"*\"]\n");
    let s = Setup::new(&body);
    let out = std::process::Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg(util::BIN)
        .arg("--config")
        .arg(&s.config)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("running fifo-broker under prlimit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 (anything else) with 64 fds for 101 FIFOs\n{stderr}"
    );
    assert!(
        stderr.contains("Too many open files") && stderr.contains("open-file limit"),
        "expected the error to name the open-file limit, got:\n{stderr}"
    );
    let left: Vec<_> = fs::read_dir(&s.dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "expected no FIFO left behind in {}, found {left:?}",
        s.dir.display()
    );
}

#[test]
fn emfile_while_readers_attach_is_counted_and_retried_without_spinning() {
    const SUBS: usize = 24;
    let mut body = String::from("[inputs.in]\n");
    for i in 0..SUBS {
        body.push_str(&format!("[subscribers.s{i:02}]\nfrom = [\"in\"]\n"));
    }
    let d = Daemon::start(&body);
    // Room for 8 attached readers, beside the fds it holds and one spare
    // (the fresh read end an input opens before closing the old one).
    let base = d.steady_fd_count();
    prlimit_nofile(d.pid(), base + 9);
    let mut readers: Vec<Cat> = (0..SUBS)
        .map(|i| Cat::on(&d, &format!("s{i:02}"), "r"))
        .collect();
    for (i, r) in readers.iter().enumerate() {
        assert!(
            r.wait_open_or_waiting(&d.path(&format!("s{i:02}"))),
            "reader {i} not waiting"
        );
    }
    d.write("in", b"first\n");
    let name = |i: usize| format!("s{i:02}");
    let c = d.wait_counters(
        "some subscribers attached, the others counted an error",
        |c| (0..SUBS).all(|i| c.attached(&name(i)) || c.subscriber(&name(i), "errors") > 0),
    );
    let attached: Vec<usize> = (0..SUBS).filter(|&i| c.attached(&name(i))).collect();
    assert!(
        (1..SUBS).contains(&attached.len()),
        "expected some but not all of {SUBS} readers attached under the fd limit, got {attached:?}\n{c}"
    );
    assert!(
        d.stderr().contains("Too many open files"),
        "EMFILE not logged:\n{}",
        d.stderr()
    );

    // Waiting readers and EMFILE do not make the loop spin.
    let before = d.cpu_ticks();
    thread::sleep(Duration::from_secs(2));
    let used = d.cpu_ticks() - before;
    assert!(
        used <= 2,
        "expected an idle daemon under EMFILE, it used {used} ticks in 2 s"
    );

    // Readers that leave free their fds; the next line attaches others.
    for &i in &attached {
        readers[i].kill();
    }
    d.wait_counters("the killed readers detached", |c| {
        attached.iter().all(|&i| !c.attached(&name(i)))
    });
    d.write("in", b"second\n");
    let c = d.wait_counters("more readers attached on the next line", |c| {
        (0..SUBS)
            .filter(|i| !attached.contains(i))
            .any(|i| c.attached(&name(i)))
    });
    for i in (0..SUBS).filter(|i| !attached.contains(i) && c.attached(&name(*i))) {
        let lines = readers[i].wait_data_lines(1);
        assert_eq!(
            lines,
            vec![b"second".to_vec()],
            "reader {i}, attached on the retry, must get the next line and nothing earlier"
        );
    }
    d.assert_running("after EMFILE");
}

#[test]
fn a_one_gib_line_keeps_memory_bounded() {
    const MAX: usize = 65536;
    let d = Daemon::start(&format!(
        "max_line_bytes = {MAX}\n[inputs.in]\n[subscribers.out]\nfrom = [\"in\"]\n\
         buffer_bytes = 65536\n"
    ));
    let r = Cat::on(&d, "out", "r");
    d.attach("in", &[&r]);
    let rss = |pid: u32| -> u64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    };
    let base = rss(d.pid());
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, done) = (d.path("in"), done.clone());
        thread::spawn(move || {
            let mut f = open_fifo_writer(&path);
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..1024 {
                f.write_all(&chunk).expect("streaming the long line");
            }
            f.write_all(b"\nafter\n").expect("ending the long line");
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut peak = base;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "1 GiB did not go through in 300 s"
        );
        peak = peak.max(rss(d.pid()));
        thread::sleep(Duration::from_millis(5));
    }
    join_within(writer, TIMEOUT, "the 1 GiB writer");
    let lines = r.wait_data_lines(2);
    assert_eq!(lines.len(), 2, "expected the cut line and `after`");
    assert_eq!(
        lines[0].len(),
        MAX,
        "the long line is cut to max_line_bytes"
    );
    assert_eq!(lines[1], b"after");
    // The shared read buffer (half a pipe + max_line_bytes) and at most
    // one cut line in the outbox: 2 × max_line_bytes + 1 MiB of slack for
    // the allocator.
    let bound_kib = (2 * MAX as u64 + (1 << 20)) / 1024;
    assert!(
        peak - base <= bound_kib,
        "RSS grew from {base} KiB to {peak} KiB while a 1 GiB line streamed in; \
         expected at most +{bound_kib} KiB"
    );
    let c = d.counters();
    assert_eq!(c.input("in", "truncated"), 1, "{c}");
}
