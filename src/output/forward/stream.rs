//! A forward's byte stream: plain TCP or TLS (rustls) over a non-blocking
//! `mio` socket, driven by readiness the way rustls' `tlsclient-mio` example
//! does it. Nothing here blocks: a handshake advances as the socket allows,
//! plaintext is buffered by rustls only up to a bound, and `WouldBlock`
//! means "come back on the next event".

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::config::TlsConfig;

/// Plaintext rustls may hold before it is encrypted and sent.
const TLS_BUFFER: usize = 256 * 1024;

/// A connected socket, with or without TLS.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// TLS over a socket.
pub(super) struct TlsStream {
    sock: TcpStream,
    tls: ClientConnection,
    /// Once the handshake is done: until when to wait for the server's
    /// word that it accepted it (see [`TlsStream::accepted`]).
    accept_by: Option<Instant>,
}

/// How long a TLS 1.3 client waits for a session ticket before it takes
/// the server's silence for acceptance.
const ACCEPT_WAIT: Duration = Duration::from_secs(1);

impl Stream {
    /// Starts TLS on a connected socket (the handshake goes on as the
    /// stream is used).
    pub(super) fn tls(sock: TcpStream, setup: &TlsSetup) -> io::Result<Stream> {
        let mut tls = ClientConnection::new(setup.config.clone(), setup.server_name.clone())
            .map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(TLS_BUFFER));
        Ok(Stream::Tls(Box::new(TlsStream {
            sock,
            tls,
            accept_by: None,
        })))
    }

    /// The socket, to register it.
    pub(super) fn socket(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(sock) => sock,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    /// Takes the plain socket out (to upgrade it to TLS).
    pub(super) fn into_plain(self) -> Option<TcpStream> {
        match self {
            Stream::Plain(sock) => Some(sock),
            Stream::Tls(_) => None,
        }
    }

    /// Writes what it can of `data`; `WouldBlock` if nothing was taken.
    /// TLS takes plaintext only once its handshake is done and what it
    /// encrypted before is on the socket: bytes it holds count as sent, and
    /// a failed handshake or a reset would lose them, where the caller can
    /// send what it still has again.
    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(sock) => sock.write(data),
            Stream::Tls(t) => {
                t.send_tls()?;
                if t.tls.is_handshaking() || t.tls.wants_write() || !t.accepted() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = t.tls.writer().write(data)?;
                t.send_tls()?;
                if n == 0 && !data.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }

    /// Reads what arrived; `Ok(0)` is the end of the stream.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(sock) => sock.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }

    /// Sends what TLS holds (handshake, alerts, encrypted data).
    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.send_tls(),
        }
    }

    /// True while a TLS handshake is under way (until the server accepted
    /// it, see [`TlsStream::accepted`]).
    pub(super) fn is_handshaking(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.tls.is_handshaking() || t.accept_by.is_none_or(|by| !t.sure(by)),
        }
    }

    /// When a handshake that is done on our side will be taken as
    /// accepted without the server's word (a timer to come back at).
    pub(super) fn accept_by(&self) -> Option<Instant> {
        match self {
            Stream::Tls(t) if !t.tls.is_handshaking() => t.accept_by.filter(|&by| !t.sure(by)),
            _ => None,
        }
    }

    /// True if bytes wait for the socket to be writable.
    pub(super) fn wants_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.tls.wants_write(),
        }
    }
}

impl TlsStream {
    /// True once the server accepted the handshake. In TLS 1.3 the client
    /// is done before the server has checked the client's certificate: a
    /// server that refuses it says so only after the client sent its first
    /// records, which would be lost. So application data waits for the
    /// server's first session ticket (sent once it accepted), or
    /// `ACCEPT_WAIT` for a server that sends none. TLS 1.2 servers check
    /// before they finish, so their handshake's end is enough.
    fn accepted(&mut self) -> bool {
        if self.tls.is_handshaking() {
            return false;
        }
        let by = *self
            .accept_by
            .get_or_insert_with(|| Instant::now() + ACCEPT_WAIT);
        self.sure(by)
    }

    fn sure(&self, by: Instant) -> bool {
        self.tls.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
            || self.tls.tls13_tickets_received() > 0
            || Instant::now() >= by
    }

    fn send_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    let state = self.tls.process_new_packets();
                    let _ = self.accepted(); // starts the wait when the handshake ends
                                             // Alerts the failure produced are worth sending.
                    let _ = self.send_tls();
                    state.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What a forward needs to start TLS: the client config and the name the
/// server's certificate must carry.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

/// Builds a TLS client from `tls`: its `ca_file` (or the system's roots), an
/// optional client certificate and key, and the server name. The error
/// names the file or value at fault.
pub(crate) fn tls_client_config(tls: &TlsConfig) -> Result<TlsSetup, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no trusted roots found on this system; set ca_file".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: no private key: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("{}: {e}", key.display()))?
        }
        _ => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("server_name {:?}: {e}", tls.server_name))?;
    Ok(TlsSetup {
        config: Arc::new(config),
        server_name,
    })
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}
