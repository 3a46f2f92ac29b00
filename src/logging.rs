//! Logging setup: `env_logger` on stderr, honouring `RUST_LOG` (default
//! `info`). Under systemd (`$JOURNAL_STREAM` set) each line starts with an
//! sd-daemon(3) `<N>` priority prefix and carries no timestamp, since the
//! journal adds its own.

use std::io::Write;

/// True when stderr goes to the journal.
fn under_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// Installs the logger. Call once, first thing.
pub fn init() {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(log::LevelFilter::Info)
        .parse_default_env();
    if under_journal() {
        builder
            .format(|buf, record| writeln!(buf, "<{}>{}", priority(record.level()), record.args()));
    } else {
        builder.format_target(false);
    }
    builder.init();
}

/// The syslog priority of a log level.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Prints the error that ends the process, whatever `RUST_LOG` says.
pub fn fatal(err: &crate::Error) {
    let prefix = if under_journal() { "<3>" } else { "" };
    eprintln!("{prefix}fifo-broker: {err}");
}
