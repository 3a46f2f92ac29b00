//! The FIFO directory: opened once, checked, locked, and then the only way the
//! daemon touches the file system there.
//!
//! Every operation is relative to the directory fd (`mknodat`, `openat` with
//! `O_NOFOLLOW`, `fstatat` without following, `unlinkat`), and every FIFO is
//! remembered by its inode ([`FifoId`]) so that the daemon never opens,
//! chmods or unlinks something it did not create. Anything at a configured
//! name that is not a FIFO is left exactly as it is and reported. This module
//! must never follow a symlink or remove a non-FIFO.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Statx, StatxFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Permission bits of a directory the daemon creates: others may reach the
/// FIFOs, whose own modes decide who may open them.
const DIR_MODE: u32 = 0o755;

/// Identity of a FIFO the daemon created: device, inode number and, where
/// the file system keeps it, birth time (ext4 hands a freed inode number to
/// the next file at once, so `rm x; mkfifo x` by someone else would
/// otherwise pass for the daemon's FIFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FifoId {
    dev: (u32, u32),
    ino: u64,
    born: Option<(i64, u32)>,
}

/// What [`FifoId`] and the type check need from `statx`.
const IDENTITY: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::INO)
    .union(StatxFlags::BTIME);

impl FifoId {
    fn of(stat: &Statx) -> FifoId {
        let born = StatxFlags::from_bits_retain(stat.stx_mask).contains(StatxFlags::BTIME);
        FifoId {
            dev: (stat.stx_dev_major, stat.stx_dev_minor),
            ino: stat.stx_ino,
            born: born.then_some((stat.stx_btime.tv_sec, stat.stx_btime.tv_nsec)),
        }
    }
}

/// True if `stat` is a FIFO's.
fn is_fifo(stat: &Statx) -> bool {
    FileType::from_raw_mode(stat.stx_mode.into()) == FileType::Fifo
}

/// The open, checked and locked FIFO directory.
#[derive(Debug)]
pub struct FifoDir {
    /// The directory's path, for messages only.
    path: PathBuf,
    /// The directory itself, opened `O_DIRECTORY|O_NOFOLLOW` and `flock`ed.
    fd: OwnedFd,
}

impl FifoDir {
    /// Opens (creating it if missing) and checks the directory, and takes the
    /// instance lock.
    pub fn open(path: &Path) -> Result<FifoDir> {
        create_dir(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR or ELOOP.
            Errno::LOOP | Errno::NOTDIR if path.is_symlink() => Error::refuse(
                path,
                "is a symlink; refusing to use it as the FIFO directory (name the real \
                 directory in broker.dir)",
            ),
            Errno::NOTDIR => Error::refuse(path, "exists and is not a directory"),
            other => Error::path(path, other),
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| Error::path(path, e))?;
        check_dir(path, &stat)?;
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |errno| match errno {
                Errno::WOULDBLOCK => Error::Locked {
                    dir: path.to_path_buf(),
                    owner: lock_owner(&stat),
                },
                other => Error::path(path, other),
            },
        )?;
        Ok(FifoDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Full path of `name`, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Refuses a name that holds anything but a FIFO. Run over every name
    /// before creating any, so a refused start changes nothing.
    pub fn check_free(&self, name: &str) -> Result<()> {
        match self.stat(name) {
            Ok(None) => Ok(()),
            Ok(Some(stat)) if FileType::from_raw_mode(stat.st_mode) == FileType::Fifo => Ok(()),
            Ok(Some(stat)) => Err(Error::refuse(
                self.join(name),
                format!(
                    "exists and is {}, not a FIFO; refusing to touch it (remove or rename it, \
                     or choose another name)",
                    describe_type(FileType::from_raw_mode(stat.st_mode))
                ),
            )),
            Err(e) => Err(Error::path(self.join(name), e)),
        }
    }

    /// Creates a fresh FIFO at `name` with exactly `mode` and `group`,
    /// replacing a stale FIFO there (so no old data or writers survive).
    pub fn create_fifo(&self, name: &str, mode: u32, group: Option<u32>) -> Result<FifoId> {
        let path = || self.join(name);
        self.check_free(name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Error::path(path(), e)),
        }
        // Owner-only until group and mode are final, so nobody can open it
        // under the wrong permissions in between.
        rustix::fs::mknodat(
            &self.fd,
            name,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|e| Error::path(path(), e))?;
        let id = self.set_owner_and_mode(name, mode, group).and_then(|()| {
            match self.identity(name).map_err(|e| Error::path(path(), e))? {
                Some(st) if is_fifo(&st) => Ok(FifoId::of(&st)),
                _ => Err(Error::refuse(path(), "changed while being created")),
            }
        });
        if id.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::empty());
        }
        id
    }

    /// Applies `group` (if any) and then exactly `mode` to the FIFO `name`.
    pub fn set_owner_and_mode(&self, name: &str, mode: u32, group: Option<u32>) -> Result<()> {
        let path = || self.join(name);
        if let Some(gid) = group {
            let gid = rustix::fs::Gid::from_raw(gid);
            rustix::fs::chownat(&self.fd, name, None, Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| match e {
                    Errno::PERM => Error::refuse(
                        path(),
                        format!(
                            "cannot give it group {}: the daemon's user is not a member of \
                             that group",
                            gid.as_raw()
                        ),
                    ),
                    Errno::INVAL => Error::refuse(
                        path(),
                        format!(
                            "cannot give it group {}: the group does not exist in the daemon's \
                             user namespace (PrivateUsers= in the unit?)",
                            gid.as_raw()
                        ),
                    ),
                    other => Error::path(path(), other),
                })?;
        }
        // The name was created by us in a directory nobody else can write,
        // so following it cannot lead elsewhere.
        rustix::fs::chmodat(&self.fd, name, Mode::from_raw_mode(mode), AtFlags::empty())
            .map_err(|e| Error::path(path(), e))
    }

    /// Opens the FIFO `name` with `flags` (plus `O_NOFOLLOW|O_NONBLOCK|
    /// O_CLOEXEC`) if it is still the inode `id`.
    pub fn open_fifo(&self, name: &str, id: FifoId, flags: OFlags) -> io::Result<OwnedFd> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::empty())?;
        let stat = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, IDENTITY)?;
        if !is_fifo(&stat) || FifoId::of(&stat) != id {
            return Err(io::Error::other("it was replaced behind the daemon's back"));
        }
        Ok(fd)
    }

    /// True if `name` is still the FIFO `id`.
    pub fn is_ours(&self, name: &str, id: FifoId) -> bool {
        matches!(self.identity(name), Ok(Some(st)) if is_fifo(&st) && FifoId::of(&st) == id)
    }

    /// Unlinks `name` if it is still the FIFO `id`; anything else there is
    /// left alone. Returns whether it was removed.
    pub fn remove_if_ours(&self, name: &str, id: FifoId) -> io::Result<bool> {
        if !self.is_ours(name, id) {
            return Ok(false);
        }
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?;
        Ok(true)
    }

    /// What `name` is, for [`FifoId`] (not following a symlink).
    fn identity(&self, name: &str) -> io::Result<Option<Statx>> {
        match rustix::fs::statx(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW, IDENTITY) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn stat(&self, name: &str) -> io::Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for FifoDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Refuses a FIFO directory (described by `stat`) that is not the daemon's
/// own: owned by another user, or writable by group or others.
pub(crate) fn check_dir(path: &Path, stat: &rustix::fs::Stat) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    // A directory inside this one only if the daemon may create it there;
    // else the directory it would use with no `dir` at all.
    let suggestion = match rustix::fs::access(path, rustix::fs::Access::WRITE_OK) {
        Ok(()) => path.join("fifo-broker"),
        Err(_) => crate::config::Env::from_process().default_dir(),
    };
    let own = |why: String| {
        Error::refuse(
            path,
            format!(
                "{why}; refusing to use it: give the daemon a directory of its own (e.g. \
                 dir = \"{}\", which it creates)",
                suggestion.display()
            ),
        )
    };
    if stat.st_uid != me {
        return Err(own(format!(
            "is owned by uid {}, not by the daemon's uid {me}",
            stat.st_uid
        )));
    }
    let perm = stat.st_mode & 0o7777;
    if perm & 0o022 != 0 {
        return Err(own(format!(
            "has mode {perm:#o}, writable by group or others, who could replace the FIFOs"
        )));
    }
    Ok(())
}

/// The pid holding the `flock` on the directory `stat` describes, from
/// `/proc/locks` (`N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`, the
/// device in hex).
fn lock_owner(stat: &rustix::fs::Stat) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let dev = stat.st_dev;
    let want = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        stat.st_ino
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        let pid = fields.get(at + 3)?.parse().ok()?;
        (fields.get(at + 4) == Some(&want.as_str())).then_some(pid)
    })
}

/// Creates `path` (and missing parents) with mode 0755; an existing entry is
/// left for the caller's checks.
pub fn create_dir(path: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(DIR_MODE);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        builder
            .recursive(true)
            .create(parent)
            .map_err(|e| Error::path(parent, e))?;
    }
    match builder.recursive(false).create(path) {
        Ok(()) => {
            // Exactly 0755 whatever the umask.
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(DIR_MODE))
                .map_err(|e| Error::path(path, e))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::path(path, e)),
    }
}

pub(crate) fn describe_type(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Fifo => "a FIFO",
        FileType::Unknown => "of an unknown type",
    }
}

/// Asks the kernel for a pipe of `bytes`; a refusal (over
/// `/proc/sys/fs/pipe-max-size` without privilege) only costs speed.
pub(crate) fn set_pipe_size(fd: &std::os::fd::OwnedFd, bytes: usize, name: &str) {
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(fd, bytes) {
        log::debug!("{name}: cannot set pipe size to {bytes}: {e}");
    }
}
