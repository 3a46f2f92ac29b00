//! `fifo-broker completions SHELL`: the completion script `clap_complete`
//! generates from the command line's definition, taught one thing it
//! cannot know at build time: `--instance` completes the names of the
//! configs in `/etc/fifo-broker/` (`NAME.toml` gives `NAME`).
//!
//! The packages install the output for bash, zsh and fish; nothing here
//! reads anything but the command line's definition.

use std::io::Write;

use clap_complete::Shell;

/// The shell code that lists instance names, per shell.
const BASH_INSTANCES: &str = r#"COMPREPLY=($(compgen -W "$(for f in /etc/fifo-broker/*.toml; do [ -e "$f" ] && basename "$f" .toml; done)" -- "${cur}"))"#;
const ZSH_INSTANCES: &str = ":NAME:{compadd -- /etc/fifo-broker/*.toml(N:t:r)}'";
const FISH_INSTANCES: &str = " -f -a '(for f in /etc/fifo-broker/*.toml; basename $f .toml; end)'";

/// Writes the completion script for `shell` to stdout.
pub(crate) fn print(shell: Shell, mut command: clap::Command) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "fifo-broker", &mut script);
    let script = String::from_utf8_lossy(&script);
    let script = match shell {
        Shell::Bash => bash(&script),
        Shell::Zsh => script.replace(":NAME:_default'", ZSH_INSTANCES),
        Shell::Fish => fish(&script),
        _ => script.into_owned(),
    };
    std::io::stdout().write_all(script.as_bytes())
}

/// In bash, the line after each `--instance)` / `-i)` case completes files.
///
/// Also mends the subcommands' `case` labels: clap_complete 4.6 spells the
/// state `fifo__broker__subcmd__status` where it is set but
/// `fifo__subcmd__broker__subcmd__status` where it is matched (it takes the
/// `__` it made of the name's `-` for a subcommand separator), so without
/// this nothing after `fifo-broker status` would complete.
fn bash(script: &str) -> String {
    let script = script.replace("fifo__subcmd__broker__subcmd__", "fifo__broker__subcmd__");
    let mut out = String::with_capacity(script.len());
    let mut instance_case = false;
    for line in script.lines() {
        let trimmed = line.trim();
        if instance_case && trimmed.starts_with("COMPREPLY=") {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(indent);
            out.push_str(BASH_INSTANCES);
        } else {
            out.push_str(line);
        }
        out.push('\n');
        instance_case = trimmed == "--instance)" || trimmed == "-i)";
    }
    out
}

/// In fish, the `-l instance` completions take instance names.
fn fish(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        out.push_str(line);
        if line.starts_with("complete ") && line.contains(" -l instance ") {
            out.push_str(FISH_INSTANCES);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completes_instance_names() {
        let script = "case\n                --instance)\n                    COMPREPLY=($(compgen -f \"${cur}\"))\n                -c)\n                    COMPREPLY=($(compgen -f \"${cur}\"))\n";
        let out = bash(script);
        assert_eq!(out.matches("/etc/fifo-broker/*.toml").count(), 1, "{out}");
        assert!(
            out.contains("-c)\n                    COMPREPLY=($(compgen -f"),
            "{out}"
        );
    }
}
