//! Black-box tests for the control socket `<dir>/.control` (SPEC.md §9)
//! under load the other tests do not give it: an answer far larger than a
//! Unix socket's buffers, asked for by a client that never reads it or
//! reads it slowly, and a socket at the control path that is not the
//! daemon's when it stops.
//!
//! The daemon must never let a control client hold its loop: lines keep
//! flowing and other `status` calls are answered while an answer waits for
//! a client that does not read it, and that client is dropped once its
//! time (5 s after it connected, src/control.rs `CLIENT_TIMEOUT`) is up.

// The harness is shared with tests/broker.rs; this binary uses part of it.
#[allow(dead_code)]
mod util;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use util::{
    control_connect, data_lines, eventually, join_within, status_run, Cat, Daemon, Received,
    TIMEOUT,
};

/// How long a control client may stay connected (src/control.rs
/// `CLIENT_TIMEOUT`: send its request and read the answer).
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// Slack on top of [`CLIENT_DEADLINE`] for seeing a drop: one `status`
/// call of a debug build on a loaded machine.
const DROP_SLACK: Duration = Duration::from_secs(3);

/// Inputs, besides `alerts`, that only make the answer large.
const FILLER_INPUTS: usize = 1500;

/// Subscribers, besides `tail`, that only make the answer large (they hold
/// no fd while nobody reads them).
const FILLER_SUBSCRIBERS: usize = 2000;

/// Longest name the config accepts.
const NAME_LEN: usize = 255;

/// A name of [`NAME_LEN`] bytes: `prefix`, `i`, then filler.
fn long_name(prefix: &str, i: usize) -> String {
    let mut name = format!("{prefix}{i:05}-");
    name.extend(std::iter::repeat_n('x', NAME_LEN - name.len()));
    name
}

/// `alerts` with a `block` subscriber `tail`, plus enough inputs and
/// subscribers with long names that the JSON answer is over 1 MiB.
fn large_config() -> String {
    let mut c = String::from(
        "[inputs.alerts]\n\n[subscribers.tail]\nfrom = [\"alerts\"]\nwhen_full = \"block\"\n",
    );
    for i in 0..FILLER_INPUTS {
        c.push_str(&format!("\n[inputs.\"{}\"]\n", long_name("in", i)));
    }
    for i in 0..FILLER_SUBSCRIBERS {
        c.push_str(&format!(
            "\n[subscribers.\"{}\"]\nfrom = [\"{}\"]\n",
            long_name("sub", i),
            long_name("in", i % FILLER_INPUTS)
        ));
    }
    c
}

/// `status --json`: the answer as printed, and parsed.
fn status_json(d: &Daemon) -> (String, serde_json::Value) {
    let out = status_run(&d.setup, &["--json"]);
    out.assert_code(0, "status --json");
    let v = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}); {} bytes, stderr:\n{}",
            out.stdout.len(),
            out.stderr
        )
    });
    (out.stdout, v)
}

/// `control.KEY` of a snapshot.
fn control_counter(v: &serde_json::Value, key: &str) -> u64 {
    v["control"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("control.{key} is not a number in {}", v["control"]))
}

/// The `name`s of `v[list]`, in order.
fn names(v: &serde_json::Value, list: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is not an array"))
        .iter()
        .map(|e| {
            e["name"]
                .as_str()
                .unwrap_or_else(|| panic!("an entry of {list} has no name: {e}"))
                .to_owned()
        })
        .collect()
}

/// Asserts that `v` lists every input and output of [`large_config`].
fn assert_lists_everything(v: &serde_json::Value, what: &str) {
    let inputs = names(v, "inputs");
    let outputs = names(v, "outputs");
    assert_eq!(
        inputs.len(),
        FILLER_INPUTS + 1,
        "{what}: every input is listed"
    );
    assert_eq!(
        outputs.len(),
        FILLER_SUBSCRIBERS + 1,
        "{what}: every output is listed"
    );
    for (list, want) in [
        (&inputs, "alerts".to_owned()),
        (&inputs, long_name("in", 0)),
        (&inputs, long_name("in", FILLER_INPUTS - 1)),
        (&outputs, "tail".to_owned()),
        (&outputs, long_name("sub", 0)),
        (&outputs, long_name("sub", FILLER_SUBSCRIBERS - 1)),
    ] {
        assert!(list.contains(&want), "{what}: {want:?} is not listed");
    }
}

/// What a fresh Unix stream socket may hold unread: its send buffer plus
/// its receive buffer (the daemon sets neither on its connections).
fn socket_buffers() -> usize {
    let (a, _b) = UnixStream::pair().expect("socketpair");
    let send = rustix::net::sockopt::socket_send_buffer_size(&a).expect("SO_SNDBUF");
    let recv = rustix::net::sockopt::socket_recv_buffer_size(&a).expect("SO_RCVBUF");
    send + recv
}

/// Starts the daemon on [`large_config`], checks that its answer is far
/// larger than what a socket buffers, and returns it with that answer.
fn start_large() -> (Daemon, String, serde_json::Value) {
    let d = Daemon::start(&large_config());
    let (answer, v) = status_json(&d);
    let buffers = socket_buffers();
    let wmem_max = fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap_or_default();
    assert!(
        answer.len() > buffers.max(1 << 20),
        "the answer must be over 1 MiB and larger than a socket's send and receive \
         buffers ({buffers} bytes; wmem_max {}), so the daemon cannot hand all of it to \
         the kernel at once: it is {} bytes",
        wmem_max.trim(),
        answer.len()
    );
    assert_lists_everything(&v, "a normal status --json");
    (d, answer, v)
}

/// Writes `meanwhile-N` lines into `input` until `stop` is set; returns
/// how many, or why it could not go on.
fn keep_writing(
    input: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Result<usize, String>> {
    thread::spawn(move || {
        let mut w = util::open_fifo_writer(&input);
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let mut batch = String::new();
            for _ in 0..50 {
                batch.push_str(&format!("meanwhile-{n:07}\n"));
                n += 1;
            }
            w.write_all(batch.as_bytes())
                .map_err(|e| format!("writing line {n} to alerts: {e}"))?;
            thread::sleep(Duration::from_millis(5));
        }
        Ok(n)
    })
}

/// What the daemon's fds point at, but for the filler inputs' FIFOs (for
/// messages: they are most of its fds).
fn fd_summary(d: &Daemon) -> Vec<String> {
    let filler = d.path("in");
    let filler = filler.to_string_lossy();
    d.fd_targets()
        .into_iter()
        .filter(|t| !t.starts_with(&*filler))
        .collect()
}

/// Data lines `tail` received so far.
fn received(tail: &Cat) -> usize {
    data_lines(&tail.bytes()).len()
}

#[test]
fn a_client_that_asks_and_never_reads_a_large_answer_is_dropped_and_the_daemon_keeps_delivering() {
    let (d, answer, v) = start_large();
    let tail = Cat::on(&d, "tail", "r");
    d.attach("alerts", &[&tail]);
    let dropped_before = control_counter(&v, "dropped");
    let fds = d.steady_fd_count();
    let fds_before = fd_summary(&d);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(d.path("alerts"), stop.clone());
    eventually(TIMEOUT, || match received(&tail) {
        0 => Err("expected lines to flow through tail before the hog connects".into()),
        _ => Ok(()),
    });

    let connected = Instant::now();
    let mut hog = control_connect(&d);
    hog.write_all(b"status\n").expect("sending the request");
    let lines_at_connect = received(&tail);

    // While the hog is held: status calls are answered and lines flow.
    let mut answered_while_held = 0;
    let mut lines_while_held = lines_at_connect;
    let (asked, answered) = loop {
        let asked = connected.elapsed();
        let (_, now) = status_json(&d);
        let answered = connected.elapsed();
        assert_lists_everything(&now, "status --json while a client does not read");
        let lines = received(&tail);
        if control_counter(&now, "dropped") > dropped_before {
            break (asked, answered);
        }
        answered_while_held += 1;
        lines_while_held = lines;
        assert!(
            answered < CLIENT_DEADLINE + DROP_SLACK,
            "the client that never reads must be dropped {CLIENT_DEADLINE:?} after it \
             connected; it is still there after {answered:?} (control: {})",
            now["control"]
        );
        d.assert_running("while a client does not read");
    };
    assert!(
        answered_while_held >= 1,
        "no status call was answered while the client that never reads was held: the \
         first, asked {asked:?} after it connected, was answered {answered:?} after, with \
         that client already dropped (a loop stalled by it, or a drop long before its \
         {CLIENT_DEADLINE:?})"
    );
    assert!(
        lines_while_held > lines_at_connect,
        "lines must keep flowing while the answer waits for a client that does not read: \
         {lines_at_connect} lines when it connected, still {lines_while_held} after \
         {answered_while_held} status calls"
    );
    let log = d.stderr();
    assert!(
        log.contains("dropped a client: did not read its answer"),
        "the drop is logged with its reason:\n{log}"
    );

    // The hog finally reads: a cut answer, then the end of the connection.
    hog.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let end = loop {
        match hog.read(&mut chunk) {
            Ok(0) => break "EOF",
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!(
                "the dropped client must see its connection end (EOF or reset), got {e} \
                 after {} bytes",
                got.len()
            ),
        }
    };
    assert!(
        got.len() < answer.len(),
        "a client dropped for not reading gets only part of the answer ({} of ~{} bytes, \
         then {end})",
        got.len(),
        answer.len()
    );
    assert!(
        got.starts_with(b"{\"pid\":"),
        "what it got is the start of the answer: {:?}",
        String::from_utf8_lossy(&got[..got.len().min(80)])
    );

    eprintln!(
        "answer {} bytes; the client that never read got {} before {end}; {answered_while_held} \
         status calls answered and {} lines delivered while it was held; its drop seen \
         between {asked:?} and {answered:?} after it connected",
        answer.len(),
        got.len(),
        lines_while_held - lines_at_connect
    );
    stop.store(true, Ordering::SeqCst);
    let written = join_within(writer, TIMEOUT, "the writer").unwrap_or_else(|e| panic!("{e}"));
    let lines = tail.wait_data_lines(written);
    let want: Vec<Vec<u8>> = (0..written)
        .map(|n| format!("meanwhile-{n:07}").into_bytes())
        .collect();
    if lines != want {
        let first = (lines.iter().zip(&want)).position(|(a, b)| a != b);
        panic!(
            "tail (block) must receive every line in order: wrote {written}, got {}; first \
             difference at {first:?}",
            lines.len()
        );
    }

    let (_, after) = status_json(&d);
    assert_eq!(
        control_counter(&after, "dropped"),
        dropped_before + 1,
        "exactly the client that never read is dropped: {}",
        after["control"]
    );
    d.wait_fd_count(fds, || {
        format!(
            "as before the client came; besides the filler inputs' FIFOs, before: \
             {fds_before:?}, now: {:?}",
            fd_summary(&d)
        )
    });
}

#[test]
fn a_client_that_reads_its_answer_slowly_gets_all_of_it() {
    let (d, answer, v) = start_large();
    let dropped_before = control_counter(&v, "dropped");
    let served_before = control_counter(&v, "served");

    let started = Instant::now();
    let mut slow = control_connect(&d);
    slow.write_all(b"status\n").expect("sending the request");
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut reads = 0;
    let end = loop {
        match slow.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
        reads += 1;
        // Slow, but done well within the deadline however loaded the
        // machine is: the pauses stop once 3 of its 5 s are used.
        if started.elapsed() < Duration::from_secs(3) {
            thread::sleep(Duration::from_millis(5));
        }
    };
    let took = started.elapsed();
    eprintln!("read {} bytes in {reads} reads over {took:?}", got.len());
    assert!(
        took < CLIENT_DEADLINE,
        "this test must read within the {CLIENT_DEADLINE:?} a client has, it took {took:?} \
         ({reads} reads, {} bytes)",
        got.len()
    );
    if let Some(e) = end {
        panic!(
            "reading the answer 4 KiB at a time failed after {} bytes, {reads} reads, \
             {took:?}: {e}",
            got.len()
        );
    }
    let parsed = match got.last() {
        Some(b'\n') => serde_json::from_slice::<serde_json::Value>(&got).map_err(|e| e.to_string()),
        _ => Err("no final newline".into()),
    };
    let slow_v = parsed.unwrap_or_else(|e| {
        let (_, now) = status_json(&d);
        panic!(
            "a client reading 4 KiB at a time within its {CLIENT_DEADLINE:?} must get the \
             whole answer; it got {} bytes ({e}) in {reads} reads over {took:?}, a normal \
             answer is {} bytes; control now: {}",
            got.len(),
            answer.len(),
            now["control"]
        )
    });
    assert!(
        reads > answer.len() / 4096,
        "the answer came in {reads} reads of up to 4 KiB"
    );
    assert_eq!(slow_v["pid"].as_u64(), Some(u64::from(d.pid())));
    assert_lists_everything(&slow_v, "the answer read slowly");
    assert_eq!(names(&slow_v, "inputs"), names(&v, "inputs"));
    assert_eq!(names(&slow_v, "outputs"), names(&v, "outputs"));

    let (_, after) = status_json(&d);
    assert_eq!(
        control_counter(&after, "dropped"),
        dropped_before,
        "the slow reader was not dropped: {}",
        after["control"]
    );
    assert!(
        control_counter(&after, "served") > served_before,
        "the slow reader was served: {}",
        after["control"]
    );
}

#[test]
fn a_foreign_socket_at_the_control_path_is_left_alone_at_stop() {
    let d =
        Daemon::start("[inputs.alerts]\n[inputs.other]\n[subscribers.tail]\nfrom = [\"alerts\"]\n");
    let path = d.path(".control");
    let mut created: Vec<String> = fs::read_dir(&d.setup.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    created.sort();
    assert_eq!(created, [".control", "alerts", "other", "tail"]);
    let ours = fs::symlink_metadata(&path).unwrap().ino();

    fs::remove_file(&path).unwrap();
    let foreign = UnixListener::bind(&path).expect("binding a socket at .control");
    let foreign_ino = fs::symlink_metadata(&path).unwrap().ino();
    assert_ne!(foreign_ino, ours, "the test's socket is a new inode");
    d.assert_running("after its socket was replaced");

    d.signal(Signal::TERM);
    d.assert_exit_code(0, "SIGTERM with a foreign socket at .control");

    let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| {
        panic!(
            "the foreign socket at {} must survive the daemon's stop: {e}",
            path.display()
        )
    });
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(
        meta.ino(),
        foreign_ino,
        "the socket at .control is still the test's"
    );
    let left: Vec<String> = fs::read_dir(&d.setup.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [".control"],
        "the daemon removes every FIFO it created, and only those"
    );
    // Still a working socket: nobody replaced or shut it.
    foreign.set_nonblocking(true).unwrap();
    let _client = UnixStream::connect(&path).expect("connecting to the test's socket");
    foreign
        .accept()
        .expect("the test's socket accepts a connection");
    let log = d.stderr();
    assert!(
        !log.contains("cannot remove"),
        "the daemon does not try to remove what is not its own:\n{log}"
    );
}
