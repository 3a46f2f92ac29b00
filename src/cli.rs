//! The command line: `fifo-broker [--config PATH] [--check] | --version | --help`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::DEFAULT_CONFIG_PATH;
use crate::error::{Error, Result};

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// Config file.
        config: PathBuf,
    },
    /// Validate the config, print what it would create, exit.
    Check {
        /// Config file.
        config: PathBuf,
    },
    /// Print the version.
    Version,
    /// Print usage.
    Help,
}

/// The `--help` text.
pub const USAGE: &str = "\
fifo-broker - fan lines written into named pipes out to subscriber FIFOs and log files

Usage:
  fifo-broker [--config PATH]          run in the foreground
  fifo-broker --check [--config PATH]  validate the config, print what it would create, exit
  fifo-broker --version | --help

Options:
  -c, --config PATH  config file (default: /etc/fifo-broker/fifo-broker.toml)
      --check        validate the config and print the FIFOs and files it describes
  -V, --version      print the version and exit
  -h, --help         print this help and exit

Signals: SIGHUP reloads the config and reopens sink files (a config that
fails to load keeps the running one), SIGTERM/SIGINT stop cleanly after
delivering what was written, SIGUSR1 logs counters.
Exit status: 0 stopped cleanly, 64 bad command line, 78 invalid config,
73 a FIFO, directory or sink cannot be created safely, 75 another instance
owns the directory, 1 any other error.
";

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    use lexopt::prelude::*;
    let usage = |e: lexopt::Error| Error::Usage(e.to_string());
    let mut parser = lexopt::Parser::from_args(args);
    let mut config = None;
    let mut check = false;
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('c') | Long("config") => {
                config = Some(PathBuf::from(parser.value().map_err(usage)?));
            }
            Long("check") => check = true,
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('h') | Long("help") => return Ok(Command::Help),
            other => return Err(usage(other.unexpected())),
        }
    }
    let config = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    Ok(if check {
        Command::Check { config }
    } else {
        Command::Run { config }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_each_form() {
        let default = PathBuf::from(DEFAULT_CONFIG_PATH);
        assert_eq!(
            parse_strs(&[]).unwrap(),
            Command::Run {
                config: default.clone()
            }
        );
        assert_eq!(
            parse_strs(&["--check"]).unwrap(),
            Command::Check { config: default }
        );
        assert_eq!(
            parse_strs(&["--config=/x.toml", "--check"]).unwrap(),
            Command::Check {
                config: "/x.toml".into()
            }
        );
        assert_eq!(
            parse_strs(&["-c", "/y"]).unwrap(),
            Command::Run {
                config: "/y".into()
            }
        );
        assert_eq!(parse_strs(&["--version"]).unwrap(), Command::Version);
        assert_eq!(parse_strs(&["-h"]).unwrap(), Command::Help);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [&["--nope"][..], &["extra"], &["--config"]] {
            let err = parse_strs(args).unwrap_err();
            assert_eq!(err.exit_code(), 64, "{args:?}: {err}");
        }
    }
}
