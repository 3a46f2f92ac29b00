//! The daemon's error type and the one place that maps errors to exit codes.
//!
//! Every variant carries the path it is about and the underlying cause, so the
//! message printed at the top names the file and the reason. Exit codes follow
//! sysexits(3) so that systemd's `RestartPreventExitStatus=78` stops restart
//! loops on a bad config.

use std::io;
use std::path::PathBuf;

/// Everything that can stop the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line could not be understood.
    #[error("{0}")]
    Usage(String),

    /// The config file is invalid; the message is `FILE:LINE:COL: message`.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// A FIFO, the FIFO directory, a sink file or its directory cannot be
    /// created or used safely.
    #[error("{}: {reason}", path.display())]
    Unsafe {
        /// The path that was refused.
        path: PathBuf,
        /// Why, in words an administrator can act on.
        reason: String,
    },

    /// A system call on a path failed.
    #[error("{}: {source}{}", path.display(), hint(source))]
    Path {
        /// The path the call was about.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },

    /// Another instance holds the lock on the FIFO directory.
    #[error(
        "{}: another fifo-broker instance{} already owns this directory",
        dir.display(),
        owner.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The FIFO directory.
        dir: PathBuf,
        /// The process holding the lock, if the kernel says.
        owner: Option<u32>,
    },

    /// No daemon answers on the control socket (`status`).
    #[error(
        "{}: no fifo-broker answers on this control socket: {reason} (is the daemon \
         running? try 'systemctl status {}')",
        socket.display(),
        unit_of(socket)
    )]
    Unavailable {
        /// The control socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The daemon answered that it serves as many `status` clients as it
    /// may.
    #[error("{}: the daemon is running but busy: {reason}; try again", socket.display())]
    Busy {
        /// The control socket.
        socket: PathBuf,
        /// What the daemon said.
        reason: String,
    },

    /// A forward cannot be set up (its TLS files or credentials changed
    /// since the config was checked, or the system refused a resource).
    #[error("forwards.{name}: {reason}")]
    Forward {
        /// The forward's name.
        name: String,
        /// Why.
        reason: String,
    },

    /// Anything else (the event loop itself failing, for instance).
    #[error("{context}: {source}")]
    Io {
        /// What the daemon was doing.
        context: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
}

impl Error {
    /// The process exit status for this error (sysexits).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 64,
            Error::Config(_) => 78,
            // Running out of file descriptors is a limit, not an unsafe
            // path: "anything else".
            Error::Path { source, .. } if is_fd_limit(source) => 1,
            Error::Unsafe { .. } | Error::Path { .. } => 73,
            Error::Locked { .. } => 75,
            Error::Unavailable { .. } | Error::Busy { .. } => 69,
            Error::Forward { .. } | Error::Io { .. } => 1,
        }
    }

    /// Shorthand for an [`Error::Unsafe`].
    pub fn refuse(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Unsafe {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`Error::Path`].
    pub fn path(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Error {
        Error::Path {
            path: path.into(),
            source: source.into(),
        }
    }
}

/// True for `EMFILE` and `ENFILE`: the process or the system is out of
/// file descriptors.
fn is_fd_limit(err: &io::Error) -> bool {
    [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE]
        .iter()
        .any(|e| err.raw_os_error() == Some(e.raw_os_error()))
}

/// Advice for the errors an administrator fixes outside the config.
fn hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() => {
            " (every input and attached subscriber needs a file descriptor: raise the \
             open-file limit, e.g. LimitNOFILE= in the unit or `ulimit -n`)"
        }
        Some(code) if code == rustix::io::Errno::ACCESS.raw_os_error() => {
            " (check the ownership and mode of the directory and of the daemon's user)"
        }
        _ => "",
    }
}

/// The daemon's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The unit that runs the daemon whose control socket is `socket`:
/// `fifo-broker@NAME` for the directory `--instance NAME` uses, else
/// `fifo-broker`.
fn unit_of(socket: &std::path::Path) -> String {
    let dir = socket.parent().and_then(|d| d.file_name());
    match dir.and_then(|d| d.to_str()?.strip_prefix("fifo-broker-")) {
        Some(instance) if !instance.is_empty() => format!("fifo-broker@{instance}"),
        _ => "fifo-broker".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_the_instance_unit() {
        let unit = |p: &str| unit_of(std::path::Path::new(p));
        assert_eq!(unit("/run/fifo-broker-web/.control"), "fifo-broker@web");
        assert_eq!(unit("/run/fifo-broker/.control"), "fifo-broker");
        assert_eq!(unit("/tmp/x/.control"), "fifo-broker");
    }
}
