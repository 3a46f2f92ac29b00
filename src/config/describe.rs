//! What `fifo-broker --check` prints: a [`Config`] described as every
//! directory, FIFO and file the daemon would create, with modes and routes.
//! Plain text, one line per item, for an administrator to read.

use std::fmt::Write;

use super::{Config, OutputKind};

impl Config {
    /// What `--check` prints: every directory, FIFO and file the daemon
    /// would create, with modes and routes.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "config: {}", self.file.display());
        let _ = writeln!(out, "dir: {}", self.dir.display());
        let _ = writeln!(out, "log_dir: {}", self.log_dir.display());
        if let Some(gid) = self.group {
            let _ = writeln!(out, "group: {}", super::group_name(gid));
        }
        let _ = writeln!(out, "max_line_bytes: {}", self.max_line_bytes);
        if let Some(path) = &self.metrics_file {
            let _ = writeln!(out, "metrics_file: {}", path.display());
        }
        for input in &self.inputs {
            let _ = writeln!(
                out,
                "input {}: {} mode 0{:03o}",
                input.name,
                self.dir.join(&input.name).display(),
                input.mode
            );
        }
        for output in &self.outputs {
            let routes: Vec<&str> = output.from.iter().map(|&i| &*self.inputs[i].name).collect();
            let target = match &output.kind {
                OutputKind::Subscriber { mode } => {
                    format!("{} mode 0{mode:03o}", self.dir.join(&output.name).display())
                }
                OutputKind::Sink {
                    path,
                    max_bytes,
                    keep,
                } => {
                    format!(
                        "{} mode 0640 max_bytes {max_bytes} keep {keep}",
                        path.display()
                    )
                }
                OutputKind::Forward(forward) => format!("{}", forward.endpoint),
            };
            let _ = write!(
                out,
                "{} {}: {target} from [{}]",
                output.kind_name(),
                output.name,
                routes.join(", "),
            );
            // A forward has no format: each protocol frames the line itself.
            if !matches!(output.kind, OutputKind::Forward(_)) {
                let _ = write!(out, " format {:?}", output.format.source());
            }
            let _ = write!(
                out,
                " buffer_bytes {} when_full {}",
                output.buffer_bytes, output.when_full,
            );
            if let Some(p) = &output.filter.matching {
                let _ = write!(out, " match {:?}", p.source());
            }
            if let Some(p) = &output.filter.excluding {
                let _ = write!(out, " exclude {:?}", p.source());
            }
            out.push('\n');
        }
        out
    }
}
