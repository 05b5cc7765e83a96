//! Configuration errors that point at the file, line and key at fault.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when the problem has a position.
    pub line: Option<usize>,
    /// 1-based column, when the problem has a position.
    pub column: Option<usize>,
    /// Dotted path of the key at fault, e.g. `routes[1].destinations`.
    pub key: String,
    /// What is wrong, without any secret value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Collects errors for one source text, turning byte spans into line and column.
#[derive(Debug)]
pub(crate) struct ErrorSink<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> ErrorSink<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// Records a problem at `span` (a byte range of the source), if known.
    pub(crate) fn push(
        &mut self,
        span: Option<std::ops::Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = line_column(self.text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records a deserialization error of the item at `key`.
    pub(crate) fn push_toml(&mut self, key: &str, error: &toml::de::Error) {
        let message = error.message().trim_end().to_owned();
        self.push(error.span(), key, message);
    }

    /// The file being read.
    pub(crate) fn file(&self) -> &Path {
        self.file
    }

    /// The place of byte `span` in the file, under `key`.
    pub(crate) fn location(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
    ) -> super::ConfigLocation {
        let (line, column) = line_column(self.text, span.start);
        super::ConfigLocation {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_owned(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Finishes collection: errors sorted by position.
    pub(crate) fn finish(mut self) -> ConfigErrors {
        self.errors
            .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
        ConfigErrors(self.errors)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 8), (2, 3));
    }

    #[test]
    fn display_names_file_line_and_key() {
        let error = ConfigError {
            file: "r.toml".into(),
            line: Some(3),
            column: Some(1),
            key: "routes[0].path".into(),
            message: "must start with '/'".into(),
        };
        assert_eq!(
            error.to_string(),
            "r.toml:3:1: routes[0].path: must start with '/'"
        );
    }
}
