//! Sink files: append-only logs with size rotation and reopen.
//!
//! A sink is opened `O_APPEND|O_NOFOLLOW` (created 0640) and must be a
//! regular file; it is never a symlink's target or a FIFO that would block
//! the loop. Rotation renames `path` to `path.1` (shifting older ones up to
//! `path.keep`) at a line boundary once the next write would pass
//! `max_bytes`. A line a short write (full disk) left half written is
//! finished in the same file before any rotation or reopen moves on, so a
//! new file always starts with a whole line. This module reports errors;
//! the output decides what they mean (retry with backoff, never fatal once
//! running).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Permission bits of a sink file the daemon creates.
const SINK_MODE: u32 = 0o640;

/// One open sink file.
#[derive(Debug)]
pub(crate) struct SinkFile {
    /// Where the file lives (rotation works on this path).
    path: PathBuf,
    /// The open file, in append mode.
    file: File,
    /// Current size, to decide rotation without a stat per write.
    size: u64,
    /// Rotate before passing this many bytes; 0 = never.
    max_bytes: u64,
    /// Rotated files kept.
    keep: u32,
    /// The last write ended inside a line (a short write, e.g. on a full
    /// disk): the rest of that line goes to this same file before any
    /// rotation or reopen, so the next file starts with a whole line.
    mid_line: bool,
    /// A reopen asked for while `mid_line`: done once the line is whole, or
    /// once the old file refused its rest (which is then dropped).
    reopen_pending: bool,
    /// Lines whose rest was dropped that way, not yet reported.
    cut: u64,
}

impl SinkFile {
    /// Opens or creates the sink at `path` (its directory must exist).
    pub(crate) fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<SinkFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(SinkFile {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            keep,
            mid_line: false,
            reopen_pending: false,
            cut: 0,
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Changes rotation settings (on reload).
    pub(crate) fn set_rotation(&mut self, max_bytes: u64, keep: u32) {
        self.max_bytes = max_bytes;
        self.keep = keep;
    }

    /// Writes a prefix of `data` (whole lines), rotating first if it would
    /// pass `max_bytes`. Returns how much was written.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.mid_line {
            return self.finish_line(data);
        }
        if self.reopen_pending {
            self.reopen()?;
        }
        let mut chunk = data;
        if self.max_bytes > 0 && self.size + data.len() as u64 > self.max_bytes {
            // Someone may have truncated the file (logrotate's copytruncate):
            // ask for the real size before rotating early.
            self.size = self.file.metadata()?.len();
        }
        if self.max_bytes > 0 && self.size + data.len() as u64 > self.max_bytes {
            let mut fits = self.whole_lines_that_fit(data);
            if fits == 0 && self.size > 0 {
                self.rotate()?;
                fits = self.whole_lines_that_fit(data);
            }
            // A single line longer than max_bytes goes alone into a fresh file.
            let first_line = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            chunk = &data[..if fits > 0 { fits } else { first_line }];
        }
        let n = self.file.write(chunk)?;
        self.size += n as u64;
        self.mid_line = n > 0 && chunk[n - 1] != b'\n';
        Ok(n)
    }

    /// Writes the rest of a line a short write started (`data` begins with
    /// it), then does a reopen that waited for it. If a reopen waits and the
    /// old file refuses the rest (still full), the rest is dropped instead:
    /// the old file ends with a cut line, the new one starts whole, and the
    /// old file is let go (its space can be freed).
    fn finish_line(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let rest = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
        let n = match self.file.write(&data[..rest]) {
            Ok(n) => {
                self.size += n as u64;
                n
            }
            Err(e) if !self.reopen_pending => return Err(e),
            Err(e) => {
                log::warn!(
                    "{}: {e} in the middle of a line when asked to reopen: the rest of \
                     that line ({rest} bytes) is dropped, so the new file starts with a \
                     whole line",
                    self.path.display()
                );
                self.cut += 1;
                rest
            }
        };
        if n == rest && data[rest - 1] == b'\n' {
            self.mid_line = false;
            if self.reopen_pending {
                // A failure is retried by the next write, which reports it.
                let _ = self.reopen();
            }
        }
        Ok(n)
    }

    /// How many lines lost their rest at a reopen since the last call.
    pub(crate) fn take_cut(&mut self) -> u64 {
        std::mem::take(&mut self.cut)
    }

    /// Length of the longest prefix of `data` made of whole lines that still
    /// fits under `max_bytes`.
    fn whole_lines_that_fit(&self, data: &[u8]) -> usize {
        let room = self.max_bytes.saturating_sub(self.size) as usize;
        memchr::memrchr(b'\n', &data[..room.min(data.len())]).map_or(0, |i| i + 1)
    }

    /// Reopens the file at its path (after logrotate moved it away). A line
    /// half written into a file that was moved is first finished there (or
    /// cut, see `finish_line`); one in a file still at its path just goes on.
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        if self.mid_line {
            // Still at its path (a reload, not logrotate): the line goes on
            // in this same file, nothing to reopen.
            self.reopen_pending = self.moved_away();
            return Ok(());
        }
        self.file = open_append(&self.path)?;
        self.size = self.file.metadata()?.len();
        self.reopen_pending = false;
        Ok(())
    }

    /// True unless the path still names the open file.
    fn moved_away(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::symlink_metadata(&self.path), self.file.metadata()) {
            (Ok(at_path), Ok(open)) => (at_path.dev(), at_path.ino()) != (open.dev(), open.ino()),
            _ => true,
        }
    }

    /// Flushes the file to disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// `path.(keep-1)` → `path.keep`, …, `path` → `path.1`, then a fresh file.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            discard(&self.path)?;
        } else {
            discard(&numbered(self.keep))?;
            for n in (1..self.keep).rev() {
                rename_if_exists(&numbered(n), &numbered(n + 1))?;
            }
            rename_if_exists(&self.path, &numbered(1))?;
        }
        self.reopen()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(SINK_MODE)
        // Never follow a symlink planted at the sink's name, and never block
        // opening a FIFO planted there.
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| match rustix::io::Errno::from_io_error(&e) {
            Some(rustix::io::Errno::LOOP) => {
                io::Error::other("is a symlink; refusing to write through it")
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other(
            "is not a regular file; refusing to write to it",
        ));
    }
    // Regular-file writes do not honour O_NONBLOCK, but clear it anyway so
    // the flag means nothing surprising later.
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::APPEND)?;
    Ok(file)
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the file at `path` (the rotated file past `keep`) without making
/// the loop wait for it: freeing a large file's pages takes milliseconds
/// (13–22 ms for 100 MiB on tmpfs were measured), so the file is renamed out
/// of the way at once (to a name no other discard uses, so no rename ever
/// frees a file) and unlinked on a short-lived thread that only gets CPU
/// time nobody else wants ([`background`]).
fn discard(path: &Path) -> io::Result<()> {
    static DISCARDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = DISCARDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut doomed = path.as_os_str().to_owned();
    doomed.push(format!(".expired-{}-{n}", std::process::id()));
    let doomed = PathBuf::from(doomed);
    match std::fs::rename(path, &doomed) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    let unlink = {
        let doomed = doomed.clone();
        move || {
            background();
            if let Err(e) = std::fs::remove_file(&doomed) {
                log::warn!("cannot remove {}: {e}", doomed.display());
            }
        }
    };
    if std::thread::Builder::new()
        .name("unlink".into())
        .spawn(unlink)
        .is_err()
    {
        remove_if_exists(&doomed)?;
    }
    Ok(())
}

/// Puts the calling thread under `SCHED_IDLE`: it runs only when a CPU has
/// nothing else to do, and the kernel counts a CPU running only such threads
/// as idle when it places a woken task, so freeing a large file never keeps
/// the loop, a writer or a reader waiting (at nice 19 it still held a CPU for
/// milliseconds at a time while they queued on the other). If that fails,
/// nice 19 (both apply to this thread only).
fn background() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads the `sched_param` it is given,
    // which lives on this stack for the whole call; pid 0 is this thread.
    let done = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
    if !done {
        let _ = rustix::process::setpriority_process(None, 19);
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fb-sink-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_all(sink: &mut SinkFile, mut data: &[u8]) {
        while !data.is_empty() {
            let n = sink.write(data).unwrap();
            data = &data[n..];
        }
    }

    #[test]
    fn rotates_at_line_boundaries_and_keeps_n_files() {
        let dir = temp_dir("rotate");
        let path = dir.join("a.log");
        let mut sink = SinkFile::open(&path, 10, 2).unwrap();
        for line in [
            &b"1234\n"[..],
            b"5678\n",
            b"abcd\n",
            b"efgh\n",
            b"ijkl\n",
            b"mnop\n",
        ] {
            write_all(&mut sink, line);
        }
        let read = |p: &str| std::fs::read(dir.join(p)).unwrap_or_default();
        assert_eq!(read("a.log"), b"ijkl\nmnop\n");
        assert_eq!(read("a.log.1"), b"abcd\nefgh\n");
        assert_eq!(read("a.log.2"), b"1234\n5678\n");
        assert!(!dir.join("a.log.3").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_truncated_file_is_not_rotated_early() {
        let dir = temp_dir("truncate");
        let path = dir.join("a.log");
        let mut sink = SinkFile::open(&path, 10, 1).unwrap();
        write_all(&mut sink, b"12345678\n");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        write_all(&mut sink, b"abcd\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd\n");
        assert!(
            !dir.join("a.log.1").exists(),
            "rotated although the file was truncated"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reopen_waits_until_a_half_written_line_is_whole() {
        let dir = temp_dir("midline");
        let path = dir.join("a.log");
        let mut sink = SinkFile::open(&path, 0, 0).unwrap();
        // As after a short write on a full disk; then logrotate's move.
        write_all(&mut sink, b"one\ntw");
        std::fs::rename(&path, dir.join("a.log.old")).unwrap();
        sink.reopen().unwrap();
        write_all(&mut sink, b"o\nthree\n");
        assert_eq!(std::fs::read(dir.join("a.log.old")).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reload_that_moved_nothing_never_cuts_a_half_written_line() {
        let dir = temp_dir("midline-kept");
        let path = dir.join("a.log");
        let mut sink = SinkFile::open(&path, 0, 0).unwrap();
        write_all(&mut sink, b"one\ntw");
        let refusing = File::open(&path).unwrap();
        let writable = std::mem::replace(&mut sink.file, refusing);
        sink.reopen().unwrap();
        assert!(!sink.reopen_pending, "nothing was moved: nothing to reopen");
        assert!(
            sink.write(b"o\n").is_err(),
            "a refused rest is an error to retry"
        );
        sink.file = writable;
        write_all(&mut sink, b"o\nthree\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\nthree\n");
        assert_eq!(sink.take_cut(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reopen_drops_the_rest_of_a_line_the_old_file_refuses() {
        let dir = temp_dir("midline-refused");
        let path = dir.join("a.log");
        let mut sink = SinkFile::open(&path, 0, 0).unwrap();
        write_all(&mut sink, b"one\ntw");
        // The old file now refuses every write (as a disk that stays full).
        sink.file = File::open(&path).unwrap();
        std::fs::rename(&path, dir.join("a.log.old")).unwrap();
        sink.reopen().unwrap();
        write_all(&mut sink, b"o\nthree\n");
        assert_eq!(std::fs::read(dir.join("a.log.old")).unwrap(), b"one\ntw");
        assert_eq!(std::fs::read(&path).unwrap(), b"three\n");
        assert_eq!(sink.take_cut(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_symlinks_and_non_files() {
        let dir = temp_dir("refuse");
        std::fs::write(dir.join("target"), b"keep").unwrap();
        std::os::unix::fs::symlink(dir.join("target"), dir.join("link")).unwrap();
        let err = SinkFile::open(&dir.join("link"), 0, 0).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let err = SinkFile::open(&dir, 0, 0).unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(std::fs::read(dir.join("target")).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
