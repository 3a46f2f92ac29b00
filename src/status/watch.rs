//! `fifo-broker status --watch`: the status table redrawn every second,
//! like `top`, with lines per second in and out per row. Plain ANSI
//! (clear screen, hide the cursor), which every terminal `ssh` reaches
//! understands; `q` or Ctrl-C leaves and gives the terminal back as it was.
//!
//! When standard output is not a terminal, each table is printed after the
//! previous one without escape codes (for `| tee`); when standard input is
//! not a terminal, keys are still read from it (`q` leaves), and its end
//! only stops the reading.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::termios::{LocalModes, OptionalActions, Termios};

use super::{client, table, Snapshot};
use crate::error::{Error, Result};

/// How often the screen is redrawn.
const INTERVAL: Duration = Duration::from_secs(1);
/// Clear the screen and go home.
const CLEAR: &str = "\x1b[H\x1b[2J";
/// Hide and show the cursor.
const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";

/// The terminal's state, restored when dropped.
struct Terminal {
    /// The input settings before ours, if stdin is a terminal.
    saved: Option<Termios>,
    /// True if stdout is a terminal (escape codes are used).
    ansi: bool,
}

impl Terminal {
    /// Keys without Enter and without echo; the cursor hidden.
    fn enter() -> Terminal {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.local_modes
                .remove(LocalModes::ICANON | LocalModes::ECHO);
            let _ = rustix::termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw);
        }
        let ansi = rustix::termios::isatty(std::io::stdout().as_fd());
        if ansi {
            print!("{HIDE_CURSOR}");
        }
        Terminal { saved, ansi }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let stdin = std::io::stdin();
            let _ = rustix::termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, saved);
        }
        if self.ansi {
            print!("{SHOW_CURSOR}");
            let _ = std::io::stdout().flush();
        }
    }
}

/// Redraws the status of the daemon on `socket` until `q`, Ctrl-C, SIGTERM
/// or SIGHUP.
pub(crate) fn run(socket: &Path) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| Error::Io {
            context: "installing signal handlers",
            source,
        })?;
    }
    let terminal = Terminal::enter();
    let mut previous: Option<(Instant, Snapshot)> = None;
    let mut keys = Keys { open: true };
    while !stop.load(Ordering::Relaxed) {
        let screen = match fetch(socket) {
            Ok(snapshot) => {
                let now = Instant::now();
                let rates = match &previous {
                    Some((at, before)) => {
                        table::rates(before, &snapshot, (now - *at).as_secs_f64())
                    }
                    None => table::Rates::new(),
                };
                let screen = table::render(&snapshot, Some(&rates));
                previous = Some((now, snapshot));
                screen
            }
            Err(err) => format!("fifo-broker: {err}\n(retrying every second)\n"),
        };
        draw(&screen, terminal.ansi)?;
        if keys.wait_for_quit(INTERVAL, &stop) {
            break;
        }
    }
    Ok(())
}

/// One snapshot, parsed.
fn fetch(socket: &Path) -> Result<Snapshot> {
    let json = client::fetch(socket)?;
    serde_json::from_slice(&json).map_err(|e| Error::Unavailable {
        socket: socket.to_path_buf(),
        reason: format!("the answer is not a status document: {e}"),
    })
}

/// Shows `screen`: in place on a terminal, appended otherwise.
fn draw(screen: &str, ansi: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = if ansi {
        let fitted = fit(screen, rustix::termios::tcgetwinsize(out.as_fd()).ok());
        write!(out, "{CLEAR}{fitted}")
    } else {
        writeln!(out, "{screen}")
    };
    written
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            context: "writing to standard output",
            source,
        })
}

/// Crops `screen` to the terminal, as `top` does: a line longer than the
/// window would wrap and push the table off the screen. Lines end with
/// `\r\n` (the terminal is not in canonical mode).
fn fit(screen: &str, window: Option<rustix::termios::Winsize>) -> String {
    let (cols, rows) = match window {
        Some(w) if w.ws_col > 0 && w.ws_row > 0 => (usize::from(w.ws_col), usize::from(w.ws_row)),
        _ => (usize::MAX, usize::MAX),
    };
    let lines: Vec<String> = screen
        .lines()
        .take(rows)
        .map(|line| line.chars().take(cols).collect())
        .collect();
    lines.join("\r\n")
}

/// Standard input, read for keys.
struct Keys {
    /// False once it reached its end (then it is no longer watched).
    open: bool,
}

impl Keys {
    /// Waits up to `wait` for `q`, `Q` or Ctrl-C (or `stop`); true to quit.
    fn wait_for_quit(&mut self, wait: Duration, stop: &AtomicBool) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) {
                return true;
            }
            if now >= deadline {
                return false;
            }
            let left = deadline - now;
            if !self.open {
                std::thread::sleep(left.min(Duration::from_millis(100)));
                continue;
            }
            let stdin = std::io::stdin();
            let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
            let timeout = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            });
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => {
                    self.open = false;
                    continue;
                }
            }
            let mut buf = [0u8; 64];
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => self.open = false,
                Ok(n) => {
                    if buf[..n].iter().any(|b| matches!(b, b'q' | b'Q' | 0x03)) {
                        return true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit;
    use rustix::termios::Winsize;

    fn window(cols: u16, rows: u16) -> Option<Winsize> {
        Some(Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        })
    }

    #[test]
    fn the_screen_is_cropped_to_the_window_not_wrapped() {
        let screen = "header line\nrow é one\nrow two\nrow three\n";
        assert_eq!(fit(screen, window(5, 2)), "heade\r\nrow é");
        assert_eq!(
            fit(screen, None),
            "header line\r\nrow é one\r\nrow two\r\nrow three"
        );
        assert_eq!(fit(screen, window(0, 0)), fit(screen, None));
    }
}
