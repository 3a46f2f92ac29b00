//! The `status` client: connects to a daemon's control socket, asks for a
//! snapshot and returns its JSON. It never hangs: the connect (a full
//! backlog makes a blocking connect wait) and every read and write are
//! bounded by [`TIMEOUT`]; no answer in time is [`Error::Unavailable`]
//! (exit 69), naming the socket.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::error::{Error, Result};

/// How long the whole exchange may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer accepted (a daemon with very many FIFOs stays far
/// below it).
const MAX_ANSWER: u64 = 64 << 20;

/// Asks the daemon listening on `socket` for its snapshot; the JSON as sent.
pub(crate) fn fetch(socket: &Path) -> Result<Vec<u8>> {
    let unavailable = |reason: String| Error::Unavailable {
        socket: socket.to_path_buf(),
        reason,
    };
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = connect(socket, deadline).map_err(|e| unavailable(e.to_string()))?;
    let timeouts = stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)));
    timeouts.map_err(|e| unavailable(e.to_string()))?;
    let busy = |answer: &[u8]| {
        answer.strip_prefix(b"busy: ").map(|reason| Error::Busy {
            socket: socket.to_path_buf(),
            reason: String::from_utf8_lossy(reason).trim().to_owned(),
        })
    };
    if let Err(e) = stream.write_all(b"status\n") {
        // A daemon serving its maximum of clients says so and closes.
        let mut said = Vec::new();
        let _ = (&mut stream).take(4096).read_to_end(&mut said);
        return Err(
            busy(&said).unwrap_or_else(|| unavailable(format!("cannot send the request: {e}")))
        );
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut limited = (&mut stream).take(MAX_ANSWER);
    loop {
        if Instant::now() >= deadline {
            return Err(unavailable("no complete answer within 5 s".into()));
        }
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A busy daemon says so and closes at once: if the request got
            // there first, the close resets the connection after its words.
            Err(_) if busy(&answer).is_some() => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && answer.is_empty() => {
                return Err(unavailable(format!(
                    "cannot read the answer: {e} (a daemon serving its 16 status clients \
                     closes others at once)"
                )))
            }
            Err(e) => return Err(unavailable(format!("cannot read the answer: {e}"))),
        }
    }
    if answer.is_empty() {
        return Err(unavailable(
            "the daemon closed the connection without answering".into(),
        ));
    }
    if let Some(err) = busy(&answer) {
        return Err(err);
    }
    Ok(answer)
}

/// Connects without ever blocking past `deadline`.
fn connect(socket: &Path, deadline: Instant) -> std::io::Result<UnixStream> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    // A path too long for a socket address is reached through the
    // directory's fd, as the daemon bound it.
    let dir = match socket.parent() {
        Some(parent) if socket.as_os_str().len() > 107 => Some(rustix::fs::open(
            parent,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?),
        _ => None,
    };
    let path = match &dir {
        Some(dir) => crate::control::bind_path(dir.as_fd(), socket),
        None => socket.to_path_buf(),
    };
    let addr = SocketAddrUnix::new(&path)?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            // The listener's backlog is full: the daemon is busy or stopped.
            Err(Errno::AGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Errno::AGAIN) => {
                return Err(std::io::Error::other("connection not accepted within 5 s"))
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}
