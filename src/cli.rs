//! The command line, parsed with `clap` (derive) into a [`Command`]:
//! run in the foreground, `--check`, `status`, `completions`.
//!
//! Where the config and the default directories come from is decided here
//! once ([`Source`]): `--config PATH`, or `--instance NAME` meaning exactly
//! what the template unit `fifo-broker@NAME` uses. Bad usage is exit 64
//! (clap's own code, 2, is not sysexits); `--help` and `--version` print and
//! succeed.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{Env, DEFAULT_CONFIG_PATH};
use crate::error::{Error, Result};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run(Source),
    /// Validate the config and the file system, print what it would create.
    Check(Source),
    /// Ask a running daemon for its counters.
    Status(Source, StatusFormat),
    /// Print a shell completion script.
    Completions(clap_complete::Shell),
    /// Print this text (help, version) and succeed.
    Print(String),
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// A table for people.
    Table,
    /// The daemon's JSON as it sent it.
    Json,
    /// Prometheus text exposition format.
    Prometheus,
    /// The table, redrawn every second with rates.
    Watch,
}

/// Where the config is and which environment picks default directories.
#[derive(Debug, Clone)]
pub struct Source {
    /// The config file.
    pub config: PathBuf,
    /// The environment defaults are taken from.
    pub env: Env,
}

/// Text after the options in `--help`: signals and exit codes.
const AFTER_HELP: &str = "\
Signals: SIGHUP reloads the config and reopens sink files (a config that
fails to load keeps the running one), SIGTERM/SIGINT stop cleanly after
delivering what was written, SIGUSR1 logs counters.
Exit status: 0 stopped cleanly, 64 bad command line, 69 no daemon answers
on the control socket (status), 73 a FIFO, directory or sink cannot be created
safely, 75 another instance owns the directory, 78 invalid config, 1 any other
error.";

#[derive(Parser, Debug)]
#[command(
    name = "fifo-broker",
    version,
    about = "fifo-broker - fan lines written into named pipes out to subscriber FIFOs and log files",
    after_help = AFTER_HELP,
    disable_help_subcommand = true
)]
struct Args {
    /// Config file (default: /etc/fifo-broker/fifo-broker.toml)
    #[arg(short, long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Use /etc/fifo-broker/NAME.toml, /run/fifo-broker-NAME and
    /// /var/log/fifo-broker/NAME, as fifo-broker@NAME.service does
    #[arg(
        short,
        long,
        value_name = "NAME",
        global = true,
        conflicts_with = "config"
    )]
    instance: Option<String>,
    /// Validate the config and the file system, print the FIFOs and files it describes, exit
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Print a running daemon's state and counters (from <dir>/.control)
    Status {
        /// Print the daemon's JSON document as it is
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print Prometheus text exposition format
        #[arg(long, conflicts_with = "watch")]
        prometheus: bool,
        /// Redraw the table every second with lines/s in and out; q or Ctrl-C leaves
        #[arg(short, long, conflicts_with = "json")]
        watch: bool,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    use clap::error::ErrorKind;
    let argv = std::iter::once(OsString::from("fifo-broker")).chain(args);
    let args = match Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return Ok(Command::Print(e.render().to_string()));
        }
        Err(e) => return Err(Error::Usage(e.render().to_string().trim_end().to_string())),
    };
    let source = source(args.config, args.instance.as_deref())?;
    Ok(match (args.command, args.check) {
        (None, false) => Command::Run(source),
        (None, true) => Command::Check(source),
        (Some(_), true) => {
            return Err(Error::Usage(
                "error: --check cannot be combined with a subcommand\n\nFor more information, \
                 try '--help'."
                    .into(),
            ))
        }
        (
            Some(Sub::Status {
                json,
                prometheus,
                watch,
            }),
            false,
        ) => {
            let format = match (json, prometheus, watch) {
                (true, _, _) => StatusFormat::Json,
                (_, true, _) => StatusFormat::Prometheus,
                (_, _, true) => StatusFormat::Watch,
                _ => StatusFormat::Table,
            };
            Command::Status(source, format)
        }
        (Some(Sub::Completions { shell }), false) => Command::Completions(shell),
    })
}

/// Where the config is, and the environment for default directories.
fn source(config: Option<PathBuf>, instance: Option<&str>) -> Result<Source> {
    let mut env = Env::from_process();
    let Some(name) = instance else {
        let Some(config) = config else {
            // The default config is fifo-broker.service's: use its
            // directories too, as the unit would give them, whoever asks.
            env.runtime_directory
                .get_or_insert_with(|| "/run/fifo-broker".into());
            env.logs_directory
                .get_or_insert_with(|| "/var/log/fifo-broker".into());
            let config = PathBuf::from(DEFAULT_CONFIG_PATH);
            return Ok(Source { config, env });
        };
        return Ok(Source { config, env });
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "_.@-".contains(c);
    if name.is_empty() || name.starts_with('.') || !name.chars().all(valid) {
        return Err(Error::Usage(format!(
            "error: invalid instance name {name:?}: use letters, digits and _ . @ - \
             (it names /etc/fifo-broker/NAME.toml)\n\nFor more information, try '--help'."
        )));
    }
    // What fifo-broker@NAME.service sets: RuntimeDirectory=fifo-broker-%i,
    // LogsDirectory=fifo-broker/%i.
    env.runtime_directory = Some(format!("/run/fifo-broker-{name}").into());
    env.logs_directory = Some(format!("/var/log/fifo-broker/{name}").into());
    Ok(Source {
        config: PathBuf::from(format!("/etc/fifo-broker/{name}.toml")),
        env,
    })
}

/// Prints the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    crate::completions::print(shell, Args::command()).map_err(|source| Error::Io {
        context: "writing the completion script",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_strs(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(OsString::from))
    }

    fn config_of(command: Command) -> PathBuf {
        match command {
            Command::Run(s) | Command::Check(s) | Command::Status(s, _) => s.config,
            other => panic!("no config in {other:?}"),
        }
    }

    #[test]
    fn parses_each_form() {
        let default = PathBuf::from(DEFAULT_CONFIG_PATH);
        assert!(matches!(parse_strs(&[]).unwrap(), Command::Run(s) if s.config == default));
        let Command::Check(s) = parse_strs(&["--check"]).unwrap() else {
            panic!("--check")
        };
        if std::env::var_os("RUNTIME_DIRECTORY").is_none() {
            assert_eq!(s.env.default_dir(), PathBuf::from("/run/fifo-broker"));
        }
        assert!(matches!(
            parse_strs(&["--check"]).unwrap(),
            Command::Check(_)
        ));
        let c = parse_strs(&["--config=/x.toml", "--check"]).unwrap();
        assert_eq!(config_of(c), PathBuf::from("/x.toml"));
        assert_eq!(
            config_of(parse_strs(&["-c", "/y"]).unwrap()),
            PathBuf::from("/y")
        );
        let c = parse_strs(&["status", "--config", "/z", "--json"]).unwrap();
        assert!(
            matches!(c, Command::Status(ref s, StatusFormat::Json) if s.config == Path::new("/z"))
        );
        let c = parse_strs(&["--instance", "web", "status", "--prometheus"]).unwrap();
        let Command::Status(s, StatusFormat::Prometheus) = c else {
            panic!("{c:?}")
        };
        assert_eq!(s.config, PathBuf::from("/etc/fifo-broker/web.toml"));
        assert_eq!(s.env.default_dir(), PathBuf::from("/run/fifo-broker-web"));
        assert_eq!(
            s.env.default_log_dir(),
            PathBuf::from("/var/log/fifo-broker/web")
        );
        assert!(
            matches!(parse_strs(&["--version"]).unwrap(), Command::Print(t) if t.contains(env!("CARGO_PKG_VERSION")))
        );
        assert!(
            matches!(parse_strs(&["-h"]).unwrap(), Command::Print(t) if t.contains("--config"))
        );
        assert!(matches!(
            parse_strs(&["completions", "bash"]).unwrap(),
            Command::Completions(clap_complete::Shell::Bash)
        ));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["--nope"][..],
            &["extra"],
            &["--config"],
            &["--config", "/a", "--instance", "b"],
            &["--instance", "../etc"],
            &["--check", "status"],
            &["status", "--json", "--prometheus"],
            &["status", "--watch", "--json"],
            &["completions", "tcsh"],
        ] {
            let err = parse_strs(args).unwrap_err();
            assert_eq!(err.exit_code(), 64, "{args:?}: {err}");
        }
    }
}
