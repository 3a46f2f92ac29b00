//! sd_notify(3): tells systemd when the daemon is ready, reloading and
//! stopping, how it is doing, and that its loop is alive.
//!
//! Silent when `$NOTIFY_SOCKET` is unset. The socket may be a path or, with a
//! leading `@`, an abstract address (which the `sd-notify` crate does not
//! reach, so those datagrams are sent here). A failure to notify is logged
//! once and never stops the daemon.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

use sd_notify::NotifyState;

/// True if systemd (or a test) listens for notifications.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends `states` to systemd, if it is listening.
pub fn send(states: &[NotifyState<'_>]) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => send_abstract(name, states),
        None => sd_notify::notify(states),
    };
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(err) = result {
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "cannot notify systemd at {}: {err} (further failures are not logged)",
                socket.to_string_lossy()
            );
        }
    }
}

fn send_abstract(name: &[u8], states: &[NotifyState<'_>]) -> std::io::Result<()> {
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message.as_bytes(), &SocketAddr::from_abstract_name(name)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_sockets_get_the_datagram() {
        let name = format!("fifo-broker-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_abstract(
            name.as_bytes(),
            &[NotifyState::Ready, NotifyState::Status("ok")],
        )
        .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok\n");
    }
}
