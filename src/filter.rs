//! Content filters: an output's `match` and `exclude` regexes, and the
//! per-batch selection of the lines that pass them.
//!
//! Regexes are the `regex` crate's `bytes::Regex`, matched on a line without
//! its `\n` (lines are not necessarily UTF-8). Their compiled size is bounded
//! so that a hostile config cannot exhaust memory. [`Selection`] runs each
//! distinct regex at most once per line per batch, however many outputs
//! use it, and reuses its buffers: no allocation per line.

use std::fmt;

use regex::bytes::{Regex, RegexBuilder};

/// Largest compiled program a pattern may have.
pub(crate) const SIZE_LIMIT: usize = 1 << 20;

/// One compiled pattern, compared by its source.
#[derive(Clone)]
pub(crate) struct Pattern {
    /// As written in the config.
    source: String,
    /// Compiled.
    regex: Regex,
}

impl Pattern {
    /// Compiles `source`, or says why it cannot be.
    pub(crate) fn new(source: &str) -> Result<Pattern, String> {
        let regex = RegexBuilder::new(source)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(2 * SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "the regex is too large once compiled (over the limit of {limit} bytes)"
                ),
                other => format!("invalid regex: {}", one_line(&other.to_string())),
            })?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

/// The regex crate's messages span lines (with a caret under the error);
/// config errors are one line.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).collect();
    match lines.iter().rev().find(|l| l.starts_with("error:")) {
        Some(last) => last.trim_start_matches("error:").trim().to_string(),
        None => lines.join(" "),
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

/// An output's filter: delivered iff it matches `matching` (when given) and
/// not `excluding` (when given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// `match`.
    pub(crate) matching: Option<Pattern>,
    /// `exclude`.
    pub(crate) excluding: Option<Pattern>,
}

impl Filter {
    /// True if it lets every line through.
    pub(crate) fn is_empty(&self) -> bool {
        self.matching.is_none() && self.excluding.is_none()
    }
}

/// A filter as indices into the [`Selection`]'s distinct patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    matching: Option<usize>,
    excluding: Option<usize>,
}

/// Distinct patterns and filters of every output, and the lines of the
/// current batch each filter selects.
#[derive(Default)]
pub(crate) struct Selection {
    /// Distinct patterns.
    patterns: Vec<Regex>,
    /// Their sources (to find duplicates when the table is built).
    sources: Vec<String>,
    /// Distinct filters.
    specs: Vec<Spec>,
    /// Per pattern, whether each line of the batch matches (valid while
    /// `hits_ready` says so).
    hits: Vec<Vec<bool>>,
    hits_ready: Vec<bool>,
    /// Per filter, the selected lines of the batch and how many (valid
    /// while `selected_ready` says so).
    selected: Vec<(Vec<u8>, u64)>,
    selected_ready: Vec<bool>,
    /// Where each line of the batch ends (its `\n`), found once per batch
    /// for every pattern and filter (valid while `ends_ready` says so).
    ends: Vec<usize>,
    ends_ready: bool,
}

impl Selection {
    /// Adds `filter`, returning its index, or `None` if it lets everything
    /// through (such outputs pay nothing).
    pub(crate) fn add(&mut self, filter: &Filter) -> Option<usize> {
        if filter.is_empty() {
            return None;
        }
        let spec = Spec {
            matching: filter.matching.as_ref().map(|p| self.pattern(p)),
            excluding: filter.excluding.as_ref().map(|p| self.pattern(p)),
        };
        Some(match self.specs.iter().position(|s| *s == spec) {
            Some(i) => i,
            None => {
                self.specs.push(spec);
                self.selected.push((Vec::new(), 0));
                self.selected_ready.push(false);
                self.specs.len() - 1
            }
        })
    }

    fn pattern(&mut self, pattern: &Pattern) -> usize {
        match self.sources.iter().position(|s| *s == pattern.source) {
            Some(i) => i,
            None => {
                self.sources.push(pattern.source.clone());
                self.patterns.push(pattern.regex.clone());
                self.hits.push(Vec::new());
                self.hits_ready.push(false);
                self.patterns.len() - 1
            }
        }
    }

    /// A new batch: forgets what was computed for the last one.
    pub(crate) fn begin(&mut self) {
        self.hits_ready.fill(false);
        self.selected_ready.fill(false);
        self.ends_ready = false;
    }

    /// Finds where the lines of `lines` end, once per batch.
    fn find_ends(&mut self, lines: &[u8]) {
        if !self.ends_ready {
            self.ends.clear();
            self.ends.extend(memchr::memchr_iter(b'\n', lines));
            self.ends_ready = true;
        }
    }

    /// The lines of `lines` (complete lines, each ending in `\n`) that
    /// filter `spec` lets through, and how many.
    pub(crate) fn select(&mut self, spec: usize, lines: &[u8]) -> (&[u8], u64) {
        if !self.selected_ready[spec] {
            let Spec {
                matching,
                excluding,
            } = self.specs[spec];
            self.find_ends(lines);
            for p in matching.into_iter().chain(excluding) {
                self.compute_hits(p, lines);
            }
            let (out, count) = &mut self.selected[spec];
            out.clear();
            *count = 0;
            let mut start = 0;
            for (n, &end) in self.ends.iter().enumerate() {
                let keep = matching.is_none_or(|p| self.hits[p][n])
                    && !excluding.is_some_and(|p| self.hits[p][n]);
                if keep {
                    out.extend_from_slice(&lines[start..=end]);
                    *count += 1;
                }
                start = end + 1;
            }
            self.selected_ready[spec] = true;
        }
        let (out, count) = &self.selected[spec];
        (out, *count)
    }

    fn compute_hits(&mut self, p: usize, lines: &[u8]) {
        if self.hits_ready[p] {
            return;
        }
        let (hits, regex) = (&mut self.hits[p], &self.patterns[p]);
        hits.clear();
        let mut start = 0;
        for &end in &self.ends {
            hits.push(regex.is_match(&lines[start..end]));
            start = end + 1;
        }
        self.hits_ready[p] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(matching: Option<&str>, excluding: Option<&str>) -> Filter {
        Filter {
            matching: matching.map(|s| Pattern::new(s).unwrap()),
            excluding: excluding.map(|s| Pattern::new(s).unwrap()),
        }
    }

    #[test]
    fn selects_matching_lines_not_excluded_ones() {
        let mut sel = Selection::default();
        let a = sel.add(&filter(Some("ERROR"), None)).unwrap();
        let b = sel.add(&filter(None, Some("^DEBUG"))).unwrap();
        let c = sel.add(&filter(Some("ERROR"), Some("^DEBUG"))).unwrap();
        assert_eq!(sel.add(&filter(Some("ERROR"), None)), Some(a));
        assert_eq!(sel.add(&Filter::default()), None);
        assert_eq!(sel.patterns.len(), 2, "patterns are shared");
        let lines = b"ERROR one\nDEBUG ERROR two\n\xff\xfe\nINFO\n";
        sel.begin();
        assert_eq!(
            sel.select(a, lines),
            (&b"ERROR one\nDEBUG ERROR two\n"[..], 2)
        );
        assert_eq!(
            sel.select(b, lines),
            (&b"ERROR one\n\xff\xfe\nINFO\n"[..], 3)
        );
        assert_eq!(sel.select(c, lines), (&b"ERROR one\n"[..], 1));
        sel.begin();
        assert_eq!(sel.select(c, b"x\n"), (&b""[..], 0));
    }

    #[test]
    fn bad_and_oversized_patterns_are_refused() {
        assert!(Pattern::new("(").unwrap_err().starts_with("invalid regex"));
        let huge = "(a|b|c|d){1000}".repeat(50);
        assert!(Pattern::new(&huge).unwrap_err().contains("too large"));
    }
}
