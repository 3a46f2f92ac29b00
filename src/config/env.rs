//! The environment that picks default directories ([`Env`]): systemd's
//! `$RUNTIME_DIRECTORY` and `$LOGS_DIRECTORY`, then root's system paths, then
//! the XDG directories of an unprivileged user. Captured once, so that
//! validation is a pure function of its inputs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment that picks default directories, captured once so that
/// parsing is a pure function of its inputs (and testable).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// Effective user id.
    pub(crate) uid: u32,
    /// `$RUNTIME_DIRECTORY` (set by systemd's `RuntimeDirectory=`).
    pub(crate) runtime_directory: Option<OsString>,
    /// `$LOGS_DIRECTORY` (set by systemd's `LogsDirectory=`).
    pub(crate) logs_directory: Option<OsString>,
    /// `$XDG_RUNTIME_DIR`.
    pub(crate) xdg_runtime_dir: Option<OsString>,
    /// `$XDG_STATE_HOME`.
    pub(crate) xdg_state_home: Option<OsString>,
    /// `$HOME`.
    pub(crate) home: Option<OsString>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Env {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Env {
            uid: rustix::process::geteuid().as_raw(),
            runtime_directory: var("RUNTIME_DIRECTORY"),
            logs_directory: var("LOGS_DIRECTORY"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_state_home: var("XDG_STATE_HOME"),
            home: var("HOME"),
        }
    }

    /// The FIFO directory when the config names none.
    pub(crate) fn default_dir(&self) -> PathBuf {
        if let Some(dirs) = &self.runtime_directory {
            return first_of_list(dirs);
        }
        if self.uid == 0 {
            return PathBuf::from("/run/fifo-broker");
        }
        match &self.xdg_runtime_dir {
            Some(xdg) => Path::new(xdg).join("fifo-broker"),
            None => PathBuf::from(format!("/tmp/fifo-broker-{}", self.uid)),
        }
    }

    /// The log directory when the config names none.
    pub(crate) fn default_log_dir(&self) -> PathBuf {
        if let Some(dirs) = &self.logs_directory {
            return first_of_list(dirs);
        }
        if self.uid == 0 {
            return PathBuf::from("/var/log/fifo-broker");
        }
        match (&self.xdg_state_home, &self.home) {
            (Some(state), _) => Path::new(state).join("fifo-broker"),
            (None, Some(home)) => Path::new(home).join(".local/state/fifo-broker"),
            (None, None) => PathBuf::from(format!("/tmp/fifo-broker-{}-logs", self.uid)),
        }
    }
}

/// systemd puts several directories in one variable, separated by `:`.
fn first_of_list(list: &OsString) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = list.as_bytes();
    let first = bytes.split(|&b| b == b':').next().unwrap_or(bytes);
    PathBuf::from(std::ffi::OsStr::from_bytes(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dirs_follow_systemd_then_root_then_xdg() {
        let mut e = Env {
            uid: 0,
            ..Env::default()
        };
        assert_eq!(e.default_dir(), Path::new("/run/fifo-broker"));
        assert_eq!(e.default_log_dir(), Path::new("/var/log/fifo-broker"));
        e.runtime_directory = Some("/run/a:/run/b".into());
        e.logs_directory = Some("/var/log/x".into());
        assert_eq!(e.default_dir(), Path::new("/run/a"));
        assert_eq!(e.default_log_dir(), Path::new("/var/log/x"));
        let mut u = Env {
            uid: 1000,
            home: Some("/home/u".into()),
            ..Env::default()
        };
        assert_eq!(u.default_dir(), Path::new("/tmp/fifo-broker-1000"));
        assert_eq!(
            u.default_log_dir(),
            Path::new("/home/u/.local/state/fifo-broker")
        );
        u.xdg_runtime_dir = Some("/run/user/1000".into());
        u.xdg_state_home = Some("/home/u/.state".into());
        assert_eq!(u.default_dir(), Path::new("/run/user/1000/fifo-broker"));
        assert_eq!(u.default_log_dir(), Path::new("/home/u/.state/fifo-broker"));
    }
}
