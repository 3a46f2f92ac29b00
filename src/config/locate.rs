//! Where in the config file something is: the [`Locator`] that turns byte
//! offsets and `Spanned` values into `FILE:LINE:COL` errors and locations, and
//! names the key a TOML or serde error is about.

use std::path::Path;

use toml::Spanned;

use super::ConfigError;

/// Turns byte offsets into `FILE:LINE:COL` errors.
pub(crate) struct Locator<'a> {
    /// The config file, as named in messages.
    pub(crate) file: &'a Path,
    /// Its whole text, which the offsets index.
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    /// A TOML syntax or serde error, located, and naming the key it is about.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        // The toml crate's message repeats the offending line with a caret;
        // the first line is the message itself. serde's messages do not say
        // which key they are about, so name it from the location.
        let message = err.message().lines().next().unwrap_or("invalid TOML");
        let offset = err.span().map_or(0, |s| s.start);
        let key = key_at(self.text, offset);
        let hint = key.as_deref().map_or("", |key| type_hint(key, message));
        match key {
            Some(key) if !message.contains(&key) => {
                self.error(offset, format!("{key}: {message}{hint}"))
            }
            _ => self.error(offset, format!("{message}{hint}")),
        }
    }

    /// An error at byte `offset`.
    fn error(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            position: Some(line_column(self.text, offset)),
            message: message.into(),
        }
    }

    /// An error at the start of `spanned`.
    pub(crate) fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(spanned.span().start, message)
    }

    /// `FILE:LINE:COL` of `spanned`, for messages that point at two places.
    pub(crate) fn location<T>(&self, spanned: &Spanned<T>) -> String {
        let (line, column) = line_column(self.text, spanned.span().start);
        format!("{}:{line}:{column}", self.file.display())
    }
}

/// Advice for a value of the wrong type, for the keys people get wrong.
fn type_hint(key: &str, message: &str) -> &'static str {
    let last = key.rsplit('.').next().unwrap_or(key);
    let string = message.contains("invalid type: string");
    match last {
        "mode" if string => "; write the mode as an octal number without quotes, e.g. mode = 0o640",
        "shutdown_timeout" if string => {
            "; write seconds as a number without a unit, e.g. shutdown_timeout = 5"
        }
        "from" if message.contains("expected a sequence") => {
            "; from is a list of input names or globs, e.g. from = [\"alerts\"]"
        }
        "max_line_bytes" | "pipe_bytes" | "buffer_bytes" | "max_bytes" | "keep" if string => {
            "; write a plain number of bytes without quotes or units, e.g. 65536"
        }
        _ => "",
    }
}

/// The dotted key at byte `offset` of `text` (the table header above it, then
/// the key its line assigns), for naming what a serde error is about.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    if let Some(table) = header(line) {
        return Some(table);
    }
    let table = text[..line_start].lines().rev().find_map(header);
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty());
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (t, k) => t.or(k),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = memchr::memchr_iter(b'\n', before).count() + 1;
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    let column = text
        .get(line_start..offset)
        .map_or(offset - line_start, |s| s.chars().count());
    (line, column + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_at_never_splits_a_character() {
        assert_eq!(key_at("[a]\né = 1\n", 5).as_deref(), Some("a.é"));
        assert_eq!(key_at("[a]\nk = \"é\"\n", 10).as_deref(), Some("a.k"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_column("é = 1\nab", 7), (2, 1));
        assert_eq!(line_column("é = x", 5), (1, 5));
    }
}
