//! Black-box tests for `match`/`exclude` and formats (SPEC.md §8,
//! docs/semantics.md "Filters and formats"): what each output gets, how a
//! reload changes filters and formats between one line and the next, what an
//! invalid regex in a reload does, filters on sinks and syslog forwards, and
//! the `filtered` counter everywhere it is shown.
//!
//! Every test runs the real binary on real FIFOs and drives it with real
//! signals; waits are deadline-bounded polls, never fixed sleeps.

// The harness is shared with tests/broker.rs; this binary uses part of it.
#[allow(dead_code)]
mod util;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustix::process::Signal;

use util::servers::{require_binary, Rsyslog};
use util::{
    contains, count_newlines, data_lines, eventually, join_within, json_counter, json_entry,
    split_lines, status_json, status_run, status_with_ready, Cat, Daemon, Received, PROBE, TIMEOUT,
};

// ---------------------------------------------------------------------------
// Helpers.

/// Lines read from input `name`, from `status --json`.
fn lines_in(d: &Daemon, name: &str) -> u64 {
    json_counter(&status_json(d), "inputs", name, "lines_in")
}

/// Waits until `input` has read `want` lines and every output in `outputs`
/// has accounted for each of them (delivered, filtered, dropped or
/// discarded, nothing left queued); returns that snapshot.
fn wait_settled(d: &Daemon, input: &str, want: u64, outputs: &[&str]) -> serde_json::Value {
    eventually(TIMEOUT, || {
        let v = status_json(d);
        let read = json_counter(&v, "inputs", input, "lines_in");
        if read != want {
            return Err(format!(
                "expected {want} lines in from {input}, got {read}: {v}"
            ));
        }
        for name in outputs {
            let c = |k| json_counter(&v, "outputs", name, k);
            let books = c("lines_out") + c("filtered") + c("dropped") + c("discarded");
            if c("queue_lines") != 0 || books != want {
                return Err(format!(
                    "expected {name} to account for all {want} lines with an empty queue: {v}"
                ));
            }
        }
        Ok(v)
    })
}

/// The lines of a file without their `\n` (empty if it does not exist).
fn file_lines(path: &Path) -> Vec<Vec<u8>> {
    split_lines(&fs::read(path).unwrap_or_default())
}

/// Waits until the lines `get` returns include `last`; returns them.
fn wait_for_line(what: &str, last: &[u8], get: impl Fn() -> Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    eventually(TIMEOUT, || {
        let lines = get();
        if lines.iter().any(|l| l == last) {
            Ok(lines)
        } else {
            Err(format!(
                "{what}: expected a line {:?}, got {} lines ending with {:?}",
                String::from_utf8_lossy(last),
                lines.len(),
                lines
                    .iter()
                    .rev()
                    .take(3)
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect::<Vec<_>>()
            ))
        }
    })
}

/// Writes `line` into `input` until every reader has received it, so that
/// every reader is attached from then on. `line` must pass every filter of
/// the readers' subscribers. Returns how many times it was written.
fn attach_with(d: &Daemon, input: &str, line: &str, readers: &[&dyn Received]) -> u64 {
    let want = format!("{line}\n");
    let mut written = 0;
    eventually(TIMEOUT, || {
        d.assert_running("attaching readers");
        d.write(input, want.as_bytes());
        written += 1;
        let missing = readers
            .iter()
            .filter(|r| !contains(&r.bytes(), want.as_bytes()))
            .count();
        match missing {
            0 => Ok(()),
            n => Err(format!("{n} readers got no {line:?} yet")),
        }
    });
    written
}

/// Lossy strings, for readable assertion messages.
fn shown(lines: &[Vec<u8>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// [`shown`], less the `ERROR attach` lines written until the reader was
/// attached.
fn shown_after_attach(lines: &[Vec<u8>]) -> Vec<String> {
    shown(lines)
        .into_iter()
        .skip_while(|l| l == "ERROR attach")
        .collect()
}

/// Rewrites the config and sends SIGHUP; waits for the `n`th `READY=1`
/// (counting the one from startup), which acknowledges the reload.
fn reload(d: &mut Daemon, body: &str, n: usize) {
    d.rewrite_config(body);
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", n, TIMEOUT);
}

// ---------------------------------------------------------------------------
// 1. Reloads that change a `match` while lines stream.

/// A pattern and what it selects of a line `{i:08}`, judged by the last
/// digit of `i` (independently of the regex engine).
type Judged = (&'static str, fn(usize) -> bool);

/// The patterns `some` has in turn: the initial config's, then one after
/// each of the six reloads.
const STREAM_PATTERNS: [Judged; 7] = [
    ("[02468]$", |d| d % 2 == 0),
    ("[13579]$", |d| d % 2 == 1),
    ("0$", |d| d == 0),
    ("[05]$", |d| d == 0 || d == 5),
    ("[1-4]$", |d| (1..=4).contains(&d)),
    ("[6-9]$", |d| d >= 6),
    ("[3579]$", |d| matches!(d, 3 | 5 | 7 | 9)),
];

/// Whether pattern `k` of [`STREAM_PATTERNS`] selects line `i`.
fn stream_selects(k: usize, i: usize) -> bool {
    (STREAM_PATTERNS[k].1)(i % 10)
}

/// Lines per `write()` of the paced writer (9 bytes each: one atomic write).
const STREAM_BATCH: usize = 200;

fn stream_config(k: usize) -> String {
    format!(
        r#"
[inputs.app]

[subscribers.all]
from = ["app"]
when_full = "block"

[subscribers.some]
from = ["app"]
match = "{}"
when_full = "block"
"#,
        STREAM_PATTERNS[k].0
    )
}

/// The first line (index into `got`) where no sequence of filters that only
/// ever moves forward through [`STREAM_PATTERNS`] (the filter in effect can
/// only change at a reload) explains which lines `some` got; `None` if one
/// does. Greedy: the earliest pattern consistent so far leaves every later
/// choice open.
fn first_unexplained(got: &[usize], n: usize) -> Option<String> {
    let delivered: std::collections::BTreeSet<usize> = got.iter().copied().collect();
    let mut k = 0;
    for i in 0..n {
        let wanted = delivered.contains(&i);
        while k < STREAM_PATTERNS.len() && stream_selects(k, i) != wanted {
            k += 1;
        }
        if k == STREAM_PATTERNS.len() {
            return Some(format!(
                "line {i} was {} but no pattern from the one in effect on (or later) \
                 explains that",
                if wanted { "delivered" } else { "not delivered" }
            ));
        }
    }
    None
}

#[test]
fn reload_changing_match_while_lines_stream_loses_nothing() {
    let mut d = Daemon::start(&stream_config(0));
    let all = Cat::on(&d, "all", "all");
    let some = Cat::on(&d, "some", "some");
    // "probe-0" passes the first pattern (and is left out of data_lines).
    let probes = attach_with(&d, "app", &format!("{PROBE}0"), &[&all, &some]);
    wait_settled(&d, "app", probes, &[]);

    // The paced writer: `claimed` is the end of the batch it is about to
    // write, set before the write, so every line at or after a value read
    // from it is written after that read.
    let stop = Arc::new(AtomicBool::new(false));
    let claimed = Arc::new(AtomicUsize::new(0));
    let mut w = d.open_writer("app");
    let writer = {
        let (stop, claimed) = (stop.clone(), claimed.clone());
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let end = i + STREAM_BATCH;
                claimed.store(end, Ordering::SeqCst);
                let batch: String = (i..end).map(|n| format!("{n:08}\n")).collect();
                w.write_all(batch.as_bytes()).expect("writing a batch");
                i = end;
                // Pacing (about 200 lines per ms), not synchronisation.
                thread::sleep(Duration::from_millis(1));
            }
            i
        })
    };
    let wait_claimed = |at_least: usize, what: &str| {
        eventually(TIMEOUT, || {
            let c = claimed.load(Ordering::SeqCst);
            match c >= at_least {
                true => Ok(c),
                false => Err(format!("{what}: writer at {c}, expected {at_least}")),
            }
        })
    };

    // Lines the daemon had read (and so routed under the first pattern)
    // before the first SIGHUP was sent.
    let read_before = eventually(TIMEOUT, || {
        let read = lines_in(&d, "app");
        match read >= probes + 5_000 {
            true => Ok(read),
            false => Err(format!(
                "expected 5000 lines read before reloading, got {read}"
            )),
        }
    });
    let before_first = (read_before - probes) as usize;
    let mut after_last = 0;
    for k in 1..STREAM_PATTERNS.len() {
        reload(&mut d, &stream_config(k), k + 1);
        // Every line from here on is written after this reload was applied.
        after_last = claimed.load(Ordering::SeqCst);
        // Let a good stretch of lines pass before the next reload.
        wait_claimed(after_last + 3_000, "between reloads");
    }
    let stopped_at = wait_claimed(after_last + 10_000, "after the last reload");
    stop.store(true, Ordering::SeqCst);
    let n = join_within(writer, TIMEOUT, "the paced writer");
    d.assert_running("after six reloads under load");
    assert!(
        n >= stopped_at && n > after_last + 5_000,
        "the writer must still have been writing after the last reload was acknowledged \
         (reload done at line {after_last}, writer stopped at {n})"
    );
    assert!(
        before_first > 0 && before_first < after_last,
        "reloads must happen mid-stream: read before the first {before_first}, \
         written after the last from {after_last}, {n} in all"
    );
    let changes = d.stderr().matches("reload: some: match ").count();
    assert_eq!(
        changes,
        STREAM_PATTERNS.len() - 1,
        "each reload logs that it changed some's match"
    );

    // `all`: every line exactly once, in order.
    let got_all = all.wait_data_lines(n);
    let want_all: Vec<Vec<u8>> = (0..n).map(|i| format!("{i:08}").into_bytes()).collect();
    if got_all != want_all {
        let at = got_all
            .iter()
            .zip(&want_all)
            .position(|(g, w)| g != w)
            .unwrap_or(got_all.len().min(n));
        panic!(
            "all: expected lines 0..{n} exactly once in order, got {} lines; first \
             difference at {at}: got {:?}",
            got_all.len(),
            got_all.get(at).map(|l| String::from_utf8_lossy(l))
        );
    }

    // `some`: wait until the daemon has handed it everything, and its
    // reader has read all of that.
    let v = wait_settled(&d, "app", probes + n as u64, &["all", "some"]);
    assert_eq!(json_counter(&v, "outputs", "some", "dropped"), 0, "{v}");
    assert_eq!(json_counter(&v, "outputs", "all", "dropped"), 0, "{v}");
    let handed = json_counter(&v, "outputs", "some", "lines_out") as usize;
    eventually(TIMEOUT, || match count_newlines(&some.bytes()) {
        c if c == handed => Ok(()),
        c => Err(format!("some's reader has {c} of {handed} lines")),
    });
    let got: Vec<usize> = data_lines(&some.bytes())
        .iter()
        .map(|l| {
            let s = std::str::from_utf8(l).ok().filter(|s| s.len() == 8);
            s.and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("some: not a line of the writer: {l:?}"))
        })
        .collect();
    for pair in got.windows(2) {
        assert!(
            pair[0] < pair[1],
            "some: lines out of order or twice: {} then {}",
            pair[0],
            pair[1]
        );
    }
    let (before, rest): (Vec<usize>, Vec<usize>) = got.iter().partition(|&&i| i < before_first);
    let want_before: Vec<usize> = (0..before_first)
        .filter(|&i| stream_selects(0, i))
        .collect();
    assert!(
        before == want_before,
        "some: of the {before_first} lines read before the first reload, expected the {} \
         that {:?} selects, got {} (first difference at {:?})",
        want_before.len(),
        STREAM_PATTERNS[0].0,
        before.len(),
        before.iter().zip(&want_before).find(|(a, b)| a != b)
    );
    let last = STREAM_PATTERNS.len() - 1;
    let after: Vec<usize> = rest.iter().copied().filter(|&i| i >= after_last).collect();
    let want_after: Vec<usize> = (after_last..n)
        .filter(|&i| stream_selects(last, i))
        .collect();
    assert!(
        after == want_after,
        "some: of the lines {after_last}..{n} written after the last reload, expected the {} \
         that {:?} selects, got {} (first difference at {:?})",
        want_after.len(),
        STREAM_PATTERNS[last].0,
        after.len(),
        after.iter().zip(&want_after).find(|(a, b)| a != b)
    );
    for &i in rest.iter().filter(|&&i| i < after_last) {
        assert!(
            (0..STREAM_PATTERNS.len()).any(|k| stream_selects(k, i)),
            "some: line {i} matches none of the patterns it ever had"
        );
    }
    if let Some(problem) = first_unexplained(&got, n) {
        panic!("some: {problem} (reloads between lines {before_first} and {after_last})");
    }
    println!(
        "reload_changing_match_while_lines_stream_loses_nothing: {n} lines, reloads between \
         lines {before_first} and {after_last}, some got {}",
        got.len()
    );
}

// ---------------------------------------------------------------------------
// 2. A reload changes match -> exclude and the format, from one line to the
// next, for a subscriber and a sink alike.

fn switch_config(filter: &str, format: &str) -> String {
    format!(
        r#"
[inputs.app]

[subscribers.sub]
from = ["app"]
{filter}
format = "{format}"

[sinks.snk]
path = "snk.log"
from = ["app"]
{filter}
format = "{format}"
"#
    )
}

#[test]
fn a_reload_changing_match_exclude_and_format_applies_to_the_next_lines() {
    const N: usize = 200;
    let mut d = Daemon::start(&switch_config("match = \"ERROR\"", "{line}"));
    let sub = Cat::on(&d, "sub", "sub");
    attach_with(&d, "app", "ERROR attach", &[&sub]);
    let kind = |i: usize| if i % 2 == 0 { "ERROR" } else { "INFO" };

    let before: String = (0..N).map(|i| format!("{} b{i}\n", kind(i))).collect();
    d.write("app", format!("{before}ERROR before-end\n").as_bytes());
    let sink = d.log_path("snk.log");
    wait_for_line("sub before the reload", b"ERROR before-end", || {
        split_lines(&sub.bytes())
    });
    wait_for_line("snk before the reload", b"ERROR before-end", || {
        file_lines(&sink)
    });

    reload(
        &mut d,
        &switch_config("exclude = \"ERROR\"", "{input}: {line}"),
        2,
    );
    let log = d.stderr();
    for change in ["sub: match", "sub: exclude", "sub: format", "snk: format"] {
        assert!(
            log.contains(&format!("reload: {change}")),
            "the reload logs \"{change}\":\n{log}"
        );
    }
    let after: String = (0..N).map(|i| format!("{} a{i}\n", kind(i))).collect();
    d.write("app", format!("{after}INFO after-end\n").as_bytes());

    let mut want: Vec<String> = (0..N)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("ERROR b{i}"))
        .collect();
    want.push("ERROR before-end".into());
    want.extend(
        (0..N)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("app: INFO a{i}")),
    );
    want.push("app: INFO after-end".into());

    let sub_lines = wait_for_line("sub after the reload", b"app: INFO after-end", || {
        split_lines(&sub.bytes())
    });
    let sink_lines = wait_for_line("snk after the reload", b"app: INFO after-end", || {
        file_lines(&sink)
    });
    for (what, lines) in [("subscriber sub", sub_lines), ("sink snk", sink_lines)] {
        let got = shown_after_attach(&lines);
        assert!(
            got == want,
            "{what}: expected the old filter and format up to the reload and the new ones \
             after it:\nexpected {want:?}\ngot      {got:?}"
        );
    }
    d.assert_running("after the reload");
}

// ---------------------------------------------------------------------------
// 3. An invalid regex in a reload: the old filter keeps running.

fn one_sub_config(pattern: &str) -> String {
    format!("[inputs.app]\n\n[subscribers.some]\nfrom = [\"app\"]\nmatch = \"{pattern}\"\n")
}

#[test]
fn an_invalid_regex_in_a_reload_keeps_the_old_filter_running() {
    let mut d = Daemon::start(&one_sub_config("ERROR"));
    let some = Cat::on(&d, "some", "some");
    attach_with(&d, "app", "ERROR attach", &[&some]);
    let mixed = |tag: &str| -> String {
        (0..50)
            .map(|i| match i % 3 {
                0 => format!("ERROR {tag}{i}\n"),
                1 => format!("WARN {tag}{i}\n"),
                _ => format!("( INFO {tag}{i}\n"),
            })
            .collect()
    };
    d.write("app", format!("{}ERROR one-end\n", mixed("one")).as_bytes());
    wait_for_line("before the bad reload", b"ERROR one-end", || {
        split_lines(&some.bytes())
    });

    // The bad reload: `match = "("` does not compile.
    d.rewrite_config(&one_sub_config("("));
    let line_no = d.setup.line_of("match = \"(\"");
    let line_text = d.setup.config_text.lines().nth(line_no - 1).unwrap();
    let col = line_text.find('"').unwrap() + 1;
    let located = format!("{}:{line_no}:{col}", d.setup.config.display());
    d.signal(Signal::HUP);
    d.wait_notify_n("READY=1", 2, TIMEOUT);
    d.assert_running("after a reload with an invalid regex");
    let failed = status_with_ready(&d, 2);
    for needle in [
        "reload failed",
        located.as_str(),
        "subscribers.some.match",
        "unclosed group",
    ] {
        assert!(
            failed.contains(needle),
            "after a reload with match = \"(\", expected STATUS= to contain {needle:?}, \
             got {failed:?}"
        );
    }
    let log = d.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("reload failed") && l.contains(&located)),
        "the log names the error at {located}:\n{log}"
    );

    // Still the old filter.
    d.write("app", format!("{}ERROR two-end\n", mixed("two")).as_bytes());
    wait_for_line("after the bad reload", b"ERROR two-end", || {
        split_lines(&some.bytes())
    });

    // A valid reload recovers and switches to the new pattern.
    reload(&mut d, &one_sub_config("WARN"), 3);
    let recovered = status_with_ready(&d, 3);
    assert!(
        !recovered.contains("reload failed"),
        "after a valid reload, expected STATUS= without \"reload failed\", got {recovered:?}"
    );
    d.write(
        "app",
        format!("{}WARN three-end\n", mixed("three")).as_bytes(),
    );
    let lines = wait_for_line("after the good reload", b"WARN three-end", || {
        split_lines(&some.bytes())
    });

    let mut want = Vec::new();
    for (tag, kind) in [("one", "ERROR"), ("two", "ERROR"), ("three", "WARN")] {
        // mixed() writes ERROR lines at i % 3 == 0, WARN lines at 1.
        let pick = if kind == "ERROR" { 0 } else { 1 };
        let selected = (0..50)
            .filter(|i| i % 3 == pick)
            .map(|i| format!("{kind} {tag}{i}"));
        want.extend(selected);
        want.push(format!("{kind} {tag}-end"));
    }
    let got = shown_after_attach(&lines);
    assert!(
        got == want,
        "expected ERROR lines before and after the failed reload, WARN lines after the \
         valid one:\nexpected {want:?}\ngot      {got:?}"
    );
}

// ---------------------------------------------------------------------------
// 4. Filters on a sink ({host} {json}) and on a syslog forward.

/// Line `i` of the sink/forward workload, without its `\n`.
fn sink_fwd_line(i: usize) -> Vec<u8> {
    match i % 6 {
        0 => format!("ERROR {i} disk full").into_bytes(),
        1 => format!("DEBUG {i}").into_bytes(),
        2 => format!("CRIT {i} power").into_bytes(),
        3 => [format!("INFO {i} \"q\" \\ ").as_bytes(), b"\xff\xfe"].concat(),
        4 => format!("DEBUG ERROR {i}").into_bytes(),
        _ => format!("WARN {i}").into_bytes(),
    }
}

#[test]
fn filters_on_a_sink_and_a_syslog_forward() {
    const N: usize = 3_000;
    if require_binary("filters_on_a_sink_and_a_syslog_forward", "rsyslogd").is_none() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("fb-filters-")
        .tempdir()
        .expect("creating temp dir");
    let rsyslog = Rsyslog::start(tmp.path(), None);
    let d = Daemon::start(&format!(
        r#"
[inputs.app]

[sinks.archive]
path = "archive.log"
from = ["app"]
exclude = "DEBUG"
format = "{{host}} {{json}}"

[forwards.central]
url = "{}"
from = ["app"]
when_full = "block"
match = "ERROR|CRIT"
"#,
        rsyslog.url()
    ));
    let mut w = d.open_writer("app");
    for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
        let batch: Vec<u8> = chunk
            .iter()
            .flat_map(|&i| [sink_fwd_line(i), b"\n".to_vec()].concat())
            .collect();
        w.write_all(&batch).expect("writing");
    }
    w.write_all(b"CRIT end\n").expect("writing the end marker");
    drop(w);
    let mut all: Vec<Vec<u8>> = (0..N).map(sink_fwd_line).collect();
    all.push(b"CRIT end".to_vec());

    // The forward: exactly the ERROR and CRIT lines, in order.
    let msgs = eventually(Duration::from_secs(30), || {
        let records = rsyslog.records();
        match records.iter().any(|r| r.msg == "CRIT end") {
            true => Ok(records.into_iter().map(|r| r.msg).collect::<Vec<_>>()),
            false => Err(format!(
                "rsyslog has {} records, no \"CRIT end\"",
                records.len()
            )),
        }
    });
    let want_fwd: Vec<String> = all
        .iter()
        .filter(|l| contains(l, b"ERROR") || contains(l, b"CRIT"))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(
        msgs == want_fwd,
        "forward with match = \"ERROR|CRIT\": expected {} messages, got {}; first \
         difference {:?}",
        want_fwd.len(),
        msgs.len(),
        msgs.iter().zip(&want_fwd).find(|(a, b)| a != b)
    );

    // The sink: every line without DEBUG, as "{host} {json}".
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let sink = d.log_path("archive.log");
    let sink_lines = eventually(TIMEOUT, || {
        let lines = file_lines(&sink);
        let done = lines.last().is_some_and(|l| contains(l, b"CRIT end"));
        match done {
            true => Ok(lines),
            false => Err(format!(
                "the sink has {} lines, not the end yet",
                lines.len()
            )),
        }
    });
    let want_sink: Vec<&Vec<u8>> = all.iter().filter(|l| !contains(l, b"DEBUG")).collect();
    assert_eq!(
        sink_lines.len(),
        want_sink.len(),
        "sink with exclude = \"DEBUG\": line count"
    );
    for (got, want) in sink_lines.iter().zip(&want_sink) {
        let text = std::str::from_utf8(got)
            .unwrap_or_else(|e| panic!("a {{host}} {{json}} line is UTF-8: {e}: {got:?}"));
        let (h, json) = text
            .split_once(' ')
            .unwrap_or_else(|| panic!("\"{{host}} {{json}}\" gave {text:?}"));
        assert_eq!(h, host, "{{host}} in {text:?}");
        let obj: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{json:?} is not JSON: {e}"));
        let mut keys: Vec<&str> = obj
            .as_object()
            .unwrap_or_else(|| panic!("{json:?} is not an object"))
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["host", "input", "line", "time"], "{json}");
        assert_eq!(
            obj["line"],
            String::from_utf8_lossy(want).as_ref(),
            "{json}"
        );
        assert_eq!(obj["input"], "app", "{json}");
        assert_eq!(obj["host"], host.as_str(), "{json}");
        let time = obj["time"].as_str().expect("time is a string");
        assert!(
            time.len() == 27 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "time is RFC 3339 UTC with microseconds: {time:?}"
        );
    }

    // The counters: for each, lines out + filtered = lines in.
    let total = all.len() as u64;
    let v = wait_settled(&d, "app", total, &["archive", "central"]);
    for (name, kind, kept) in [
        ("archive", "sink", want_sink.len() as u64),
        ("central", "forward", want_fwd.len() as u64),
    ] {
        let c = |k| json_counter(&v, "outputs", name, k);
        assert_eq!(json_entry(&v, "outputs", name)["kind"], kind, "{v}");
        assert_eq!(c("lines_out"), kept, "{name}: lines_out: {v}");
        assert_eq!(c("filtered"), total - kept, "{name}: filtered: {v}");
        assert_eq!(
            c("lines_out") + c("filtered"),
            total,
            "{name}: lines_out + filtered = lines in: {v}"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. The `filtered` counter in every view.

const COUNTED: &str = r#"
[inputs.alerts]

[sinks.errors]
path = "errors.log"
from = ["alerts"]
match = "ERROR"

[sinks.quiet]
path = "quiet.log"
from = ["alerts"]
exclude = "DEBUG"

[subscribers.warns]
from = ["alerts"]
match = "WARN|attach"
"#;

/// Cells of the plain `status` table's rows (columns are separated by at
/// least two spaces; no cell holds two spaces in a row).
fn table_rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn filtered_counts_show_in_status_json_prometheus_table_and_status_line() {
    const N: u64 = 1_000;
    let d = Daemon::start(COUNTED);
    let warns = Cat::on(&d, "warns", "warns");
    let attach = attach_with(&d, "alerts", "attach", &[&warns]);
    let mut w = d.open_writer("alerts");
    let kinds = ["ERROR", "DEBUG", "WARN", "INFO"];
    let lines: String = (0..N)
        .map(|i| format!("{} {i}\n", kinds[(i % 4) as usize]))
        .collect();
    w.write_all(lines.as_bytes()).expect("writing");
    drop(w);
    let total = attach + N;
    let v = wait_settled(&d, "alerts", total, &["errors", "quiet", "warns"]);
    let want = [
        ("errors", "sink", attach + 3 * N / 4),
        ("quiet", "sink", N / 4),
        ("warns", "subscriber", 3 * N / 4),
    ];
    let want_total: u64 = want.iter().map(|w| w.2).sum();

    // status --json: `filtered` per output.
    for (name, _, filtered) in want {
        assert_eq!(
            json_counter(&v, "outputs", name, "filtered"),
            filtered,
            "status --json: {name}.filtered: {v}"
        );
    }

    // status --prometheus.
    let out = status_run(&d.setup, &["--prometheus"]);
    out.assert_code(0, "status --prometheus");
    let scrape = prometheus_parse::Scrape::parse(out.stdout.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    for (name, kind, filtered) in want {
        let sample = scrape.samples.iter().find(|s| {
            s.metric == "fifo_broker_filtered_lines_total"
                && s.labels.get("name") == Some(name)
                && s.labels.get("kind") == Some(kind)
        });
        match sample.map(|s| &s.value) {
            Some(prometheus_parse::Value::Counter(v)) => assert_eq!(
                *v, filtered as f64,
                "fifo_broker_filtered_lines_total of {name}:\n{}",
                out.stdout
            ),
            other => panic!(
                "no fifo_broker_filtered_lines_total counter for {kind} {name} ({other:?}):\n{}",
                out.stdout
            ),
        }
    }
    assert!(
        out.stdout
            .contains("# TYPE fifo_broker_filtered_lines_total counter"),
        "{out}"
    );

    // The plain table: the FILTERED column.
    let table = status_run(&d.setup, &[]);
    table.assert_code(0, "status");
    let rows = table_rows(&table.stdout);
    let header = &rows[0];
    let col = header
        .iter()
        .position(|c| c == "FILTERED")
        .unwrap_or_else(|| panic!("no FILTERED column:\n{table}"));
    let cell = |name: &str| -> String {
        let row = rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{table}"));
        assert_eq!(
            row.len(),
            header.len(),
            "row {name} has every column:\n{table}"
        );
        row[col].clone()
    };
    for (name, _, filtered) in want {
        assert_eq!(
            cell(name),
            filtered.to_string(),
            "FILTERED of {name}:\n{table}"
        );
    }
    assert_eq!(cell("alerts"), "-", "an input has no FILTERED:\n{table}");

    // sd_notify STATUS=: "... filtered N" summed over the outputs, refreshed
    // a second after activity.
    let filtered_of = |status: &str| -> Option<u64> {
        let at = status.find("filtered ")? + "filtered ".len();
        let digits: String = status[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let want_in = format!("lines in {total},");
    eventually(TIMEOUT, || {
        // Drains the notification socket (READY=1 came long ago).
        d.wait_notify("READY=1", TIMEOUT);
        let statuses: Vec<String> = d
            .notes()
            .iter()
            .flat_map(|n| n.lines().filter_map(|l| l.strip_prefix("STATUS=")))
            .map(str::to_owned)
            .collect();
        let last = statuses.last().cloned().unwrap_or_default();
        if last.contains(&want_in) && filtered_of(&last) == Some(want_total) {
            Ok(())
        } else {
            Err(format!(
                "expected a STATUS= with {want_in:?} and \"filtered {want_total}\", \
                 the last is {last:?}"
            ))
        }
    });
}
