//! The file-system side of a config, checked without changing anything:
//! what `--check` runs after validating the config, so that a config that
//! passes `--check` starts. Startup and reload run the parts that the
//! broker does not check itself as it goes ([`sink_paths`],
//! [`pipe_bytes_warning`]).
//!
//! Everything is checked as the user running it: run `--check` as the
//! daemon's user to check what the daemon will meet. As root, an existing
//! FIFO directory owned by another user is taken to be that user's (the
//! service's, whose `RuntimeDirectory=` systemd made), and root may write
//! everything, so root's `--check` is weaker on ownership and access. A directory that
//! systemd creates for the unit (`$RUNTIME_DIRECTORY`, `$LOGS_DIRECTORY`,
//! or the ones `--instance` implies) may be missing. This module must never
//! create, open for writing, chmod or remove anything.

use std::path::{Path, PathBuf};

use rustix::fs::{Access, AtFlags, FileType, CWD};
use rustix::io::Errno;

use crate::config::{Config, Env, OutputKind};
use crate::control::SOCKET_NAME;
use crate::error::{Error, Result};

/// Checks everything the daemon will need from the file system; returns
/// warnings that do not stop it.
pub(crate) fn check(config: &Config, env: &Env) -> Result<Vec<String>> {
    let mut warnings: Vec<String> = check_dir(config, env)?.into_iter().collect();
    check_names(config)?;
    sink_paths(config)?;
    for output in &config.outputs {
        if let OutputKind::Sink { path, .. } = &output.kind {
            check_sink(path, config, env)?;
        }
    }
    check_group(config)?;
    warnings.extend(unnamed_group(config));
    if let Some(path) = &config.metrics_file {
        check_metrics_file(path)?;
    }
    warnings.extend(pipe_bytes_warning(config, true));
    Ok(warnings)
}

/// Refuses a sink whose path is a FIFO's or the control socket's (the file
/// it creates there would block every later start), and a `metrics_file`
/// that would replace one of the daemon's own files.
pub(crate) fn sink_paths(config: &Config) -> Result<()> {
    let fifo_names = config.inputs.iter().map(|i| i.name.as_str()).chain(
        (config.outputs.iter())
            .filter(|o| matches!(o.kind, OutputKind::Subscriber { .. }))
            .map(|o| o.name.as_str()),
    );
    let names: Vec<&str> = fifo_names.chain([SOCKET_NAME]).collect();
    let dir = (normal(&config.dir), canonical(&config.dir));
    for output in &config.outputs {
        let OutputKind::Sink { path, .. } = &output.kind else {
            continue;
        };
        let (Some(parent), Some(file)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let same_dir = normal(parent) == dir.0 || (dir.1.is_some() && canonical(parent) == dir.1);
        if same_dir && names.iter().any(|n| file == *n) {
            return Err(Error::refuse(
                path,
                format!(
                    "sink {} would write into the FIFO directory at the name of one of its \
                     FIFOs; give it a path outside {} (a relative path goes to log_dir {})",
                    output.name,
                    config.dir.display(),
                    config.log_dir.display()
                ),
            ));
        }
    }
    match &config.metrics_file {
        Some(metrics) => metrics_path(config, metrics),
        None => Ok(()),
    }
}

/// Refuses a `metrics_file` that would replace one of the daemon's own
/// files (it is written as a temporary file renamed over the path): any
/// name in the FIFO directory, a sink's file or one of its rotations, the
/// config file.
fn metrics_path(config: &Config, path: &Path) -> Result<()> {
    let same = |a: &Path, b: &Path| {
        normal(a) == normal(b) || canonical(a).is_some_and(|c| Some(c) == canonical(b))
    };
    let (parent, file) = (path.parent(), path.file_name().unwrap_or_default());
    let why = if parent.is_some_and(|p| same(p, &config.dir)) {
        Some(format!(
            "it is in the FIFO directory {}, which is the daemon's own",
            config.dir.display()
        ))
    } else if same(path, &config.file) {
        Some("it is the config file".to_owned())
    } else {
        config.outputs.iter().find_map(|o| match &o.kind {
            OutputKind::Sink { path: sink, .. } => {
                let rotation = (sink.parent().zip(parent)).is_some_and(|(a, b)| same(a, b))
                    && (file.to_string_lossy())
                        .strip_prefix(&*sink.file_name().unwrap_or_default().to_string_lossy())
                        .and_then(|rest| rest.strip_prefix('.'))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                (same(path, sink) || rotation).then(|| format!("it is sink {}'s file", o.name))
            }
            _ => None,
        })
    };
    match why {
        Some(why) => Err(Error::refuse(
            path,
            format!("broker.metrics_file: {why}; give the metrics a file of their own"),
        )),
        None => Ok(()),
    }
}

/// A warning if `pipe_bytes` is above what a process without
/// `CAP_SYS_RESOURCE` may ask the kernel for (the request then fails and the
/// default size stays). At startup and on reload a daemon that has the
/// capability is exempt (it may pass the limit; root in a container often
/// does not have it); `--check` always warns, since it is often run as root
/// for a service that is not.
pub(crate) fn pipe_bytes_warning(config: &Config, checking: bool) -> Option<String> {
    let bytes = config.pipe_bytes?;
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size").ok()?;
    let max: usize = max.trim().parse().ok()?;
    (bytes > max && (checking || !has_cap_sys_resource())).then(|| {
        format!(
            "{}: broker.pipe_bytes = {bytes} is above /proc/sys/fs/pipe-max-size ({max}): \
             a daemon without CAP_SYS_RESOURCE (the service) keeps the kernel's default pipe \
             size unless the limit is raised (sysctl fs.pipe-max-size)",
            config.file.display()
        )
    })
}

/// True if this process may pass `pipe-max-size` (`CAP_SYS_RESOURCE` in its
/// effective set, per /proc/self/status).
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The FIFO directory is safe, or can be created; a warning when root
/// checks a directory another user owns.
fn check_dir(config: &Config, env: &Env) -> Result<Option<String>> {
    let dir = &config.dir;
    let stat = lstat(dir)?;
    if let Some(stat) = &stat {
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind == FileType::Directory && rustix::process::geteuid().is_root() && stat.st_uid != 0 {
            // Root checking a service's running directory: the service
            // user owns it (systemd's RuntimeDirectory=), not root.
            let mut as_owner = *stat;
            as_owner.st_uid = 0;
            crate::fifodir::check_dir(dir, &as_owner)?;
            return Ok(Some(format!(
                "{}: owned by uid {}: checked as the directory of a daemon running as that \
                 user (a daemon run as root would refuse it)",
                dir.display(),
                stat.st_uid
            )));
        }
    }
    check_dir_as_user(dir, stat, env).map(|()| None)
}

/// [`check_dir`] for a directory that is the user's, or missing.
fn check_dir_as_user(dir: &Path, stat: Option<rustix::fs::Stat>, env: &Env) -> Result<()> {
    match stat {
        Some(stat) => match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => crate::fifodir::check_dir(dir, &stat),
            FileType::Symlink => Err(Error::refuse(
                dir,
                "is a symlink; refusing to use it as the FIFO directory (name the real \
                 directory in broker.dir)",
            )),
            _ => Err(Error::refuse(dir, "exists and is not a directory")),
        },
        None if made_by_systemd(dir, &env.runtime_directory) => Ok(()),
        None => creatable(dir),
    }
}

/// Nothing but a FIFO at a FIFO's name, nothing but a socket at the control
/// socket's.
fn check_names(config: &Config) -> Result<()> {
    let inputs = config.inputs.iter().map(|i| &i.name);
    let subscribers = (config.outputs.iter())
        .filter(|o| matches!(o.kind, OutputKind::Subscriber { .. }))
        .map(|o| &o.name);
    for name in inputs.chain(subscribers) {
        let path = config.dir.join(name);
        if let Some(stat) = lstat(&path)? {
            let kind = FileType::from_raw_mode(stat.st_mode);
            if kind != FileType::Fifo {
                return Err(Error::refuse(
                    &path,
                    format!(
                        "exists and is {}, not a FIFO; refusing to touch it (remove or rename \
                         it, or choose another name)",
                        crate::fifodir::describe_type(kind)
                    ),
                ));
            }
        }
    }
    let socket = config.dir.join(SOCKET_NAME);
    match lstat(&socket)? {
        Some(stat) if FileType::from_raw_mode(stat.st_mode) != FileType::Socket => {
            Err(Error::refuse(
                &socket,
                "exists and is not a socket; refusing to touch it (remove or rename it: the \
                 daemon's control socket goes there)",
            ))
        }
        _ => Ok(()),
    }
}

/// A sink's directory exists and is writable (log_dir and directories below
/// it may be created), and
/// the sink, if it exists, is a regular file the daemon may append to.
fn check_sink(path: &Path, config: &Config, env: &Env) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    match std::fs::metadata(parent) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if normal(parent) == normal(&config.dir) {
                // The FIFO directory: the daemon creates it first (checked
                // above), so a sink there opens.
                return Ok(());
            }
            if !within(parent, &config.log_dir) {
                return Err(missing_sink_dir(parent, path));
            }
            if made_by_systemd(&config.log_dir, &env.logs_directory) {
                return Ok(());
            }
            return creatable(parent);
        }
        Err(e) => return Err(Error::path(parent, e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::refuse(
                parent,
                format!(
                    "is not a directory (the directory of sink {})",
                    path.display()
                ),
            ))
        }
        Ok(_) => {}
    }
    writable(parent, "the sink's directory")?;
    match lstat(path)? {
        None => Ok(()),
        Some(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {
            writable(path, "the sink")
        }
        Some(stat) => Err(Error::refuse(
            path,
            format!(
                "exists and is {}, not a regular file; a sink appends to a regular file",
                crate::fifodir::describe_type(FileType::from_raw_mode(stat.st_mode))
            ),
        )),
    }
}

/// The metrics file's directory exists and is writable.
fn check_metrics_file(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(Error::refuse(
            dir,
            format!(
                "does not exist (the directory of broker.metrics_file {}); create it",
                path.display()
            ),
        ));
    }
    writable(dir, "the directory of broker.metrics_file")
}

/// The refusal for a sink whose directory does not exist.
pub(crate) fn missing_sink_dir(dir: &Path, sink: &Path) -> Error {
    Error::refuse(
        dir,
        format!(
            "does not exist (the directory of sink {}); create it, or give the sink a path \
             in log_dir (the daemon creates log_dir and directories below it, never other \
             directories)",
            sink.display()
        ),
    )
}

/// A numeric `group` that no group entry names: allowed (a gid need not
/// have a name, e.g. in a container), but more often a typo.
fn unnamed_group(config: &Config) -> Option<String> {
    let gid = config.group?;
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(_)) => None,
        _ => Some(format!(
            "broker.group: no group has gid {gid} (getent group {gid} finds nothing); the FIFOs \
             get it anyway"
        )),
    }
}

/// The daemon's user may give FIFOs `group`.
fn check_group(config: &Config) -> Result<()> {
    let Some(gid) = config.group else {
        return Ok(());
    };
    let euid = rustix::process::geteuid();
    let egid = rustix::process::getegid().as_raw();
    let member = rustix::process::getgroups()
        .map(|groups| groups.iter().any(|g| g.as_raw() == gid))
        .unwrap_or(false);
    if euid.is_root() || egid == gid || member {
        return Ok(());
    }
    Err(Error::refuse(
        &config.dir,
        format!(
            "cannot give its FIFOs group {}: uid {} is not a member of it (SupplementaryGroups= \
             in the unit, or usermod -aG)",
            crate::config::group_name(gid),
            euid.as_raw()
        ),
    ))
}

/// A missing `path` can be made: its nearest existing ancestor is a
/// directory the user may write.
fn creatable(path: &Path) -> Result<()> {
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        if lstat(dir)?.is_some() || dir.as_os_str().is_empty() {
            break;
        }
        ancestor = dir.parent();
    }
    let ancestor = ancestor.filter(|a| !a.as_os_str().is_empty());
    let ancestor = ancestor.unwrap_or(Path::new("."));
    writable(ancestor, "needed to create it").map_err(|_| {
        Error::refuse(
            path,
            format!(
                "does not exist and cannot be created: {} is not writable by uid {}",
                ancestor.display(),
                rustix::process::geteuid().as_raw()
            ),
        )
    })
}

/// `path` is writable (and, for a directory, searchable) by the effective
/// user.
fn writable(path: &Path, what: &str) -> Result<()> {
    let mut access = Access::WRITE_OK;
    if path.is_dir() {
        access |= Access::EXEC_OK;
    }
    rustix::fs::accessat(CWD, path, access, AtFlags::EACCESS).map_err(|e| {
        Error::refuse(
            path,
            format!(
                "is not writable by uid {} ({what}): {e}",
                rustix::process::geteuid().as_raw()
            ),
        )
    })
}

/// True if `dir` is missing only because systemd creates it when the unit
/// starts (`RuntimeDirectory=`, `LogsDirectory=`).
fn made_by_systemd(dir: &Path, env_dir: &Option<std::ffi::OsString>) -> bool {
    env_dir
        .as_ref()
        .is_some_and(|list| std::env::split_paths(list).any(|d| d == dir))
}

fn lstat(path: &Path) -> Result<Option<rustix::fs::Stat>> {
    match rustix::fs::lstat(path) {
        Ok(stat) => Ok(Some(stat)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::path(path, e)),
    }
}

/// `path` with `.` and `..` resolved by name (the directories need not
/// exist yet).
/// True if `dir` is `top` or below it without a `..` on the way: only
/// such directories are the daemon's to create (a `..` may lead anywhere,
/// through a symbolic link too).
pub(crate) fn within(dir: &Path, top: &Path) -> bool {
    use std::path::Component;
    dir.starts_with(top) && !dir.components().any(|c| c == Component::ParentDir)
}

fn normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_by_name() {
        assert_eq!(
            normal(Path::new("/a/logs/../fifos/./x")),
            Path::new("/a/fifos/x")
        );
    }

    #[test]
    fn systemd_directories_may_be_missing() {
        let list = Some(std::ffi::OsString::from("/run/a:/run/b"));
        assert!(made_by_systemd(Path::new("/run/b"), &list));
        assert!(!made_by_systemd(Path::new("/run/c"), &list));
        assert!(!made_by_systemd(Path::new("/run/a"), &None));
    }
}
