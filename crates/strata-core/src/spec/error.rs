//! A problem in a spec file, with where it is (file:line:column) and how to fix it.

use std::fmt;
use std::ops::Range;

use super::parse::{locate, Path};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem in a spec file, pointing at the key or value at fault.
///
/// `Display` prints `{file}:{line}:{column}: {message}` and, when there is a hint, a second line
/// `  hint: {hint}`. [`SpecError::render`] adds the offending source line with a caret under it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The spec file's path as shown to the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The dotted path of the key at fault, like `service.hello.scale.replicas`.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl SpecError {
    /// An error at a known line and column (1-based).
    pub fn new(
        file: impl Into<String>,
        line: usize,
        column: usize,
        key: Option<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        SpecError {
            file: file.into(),
            line,
            column,
            key,
            message: message.into(),
            hint,
        }
    }

    /// An error at a byte span of `source` (only its start matters); the line and column are
    /// computed from it, the column counted in characters. Out-of-range offsets are clamped.
    pub fn at(
        file: &str,
        source: &str,
        byte_span: Range<usize>,
        key: Option<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        let (line, column) = line_col(source, byte_span.start);
        SpecError::new(file, line, column, key, message, hint)
    }

    /// An error at the key `key_path` (a dotted path split into segments, as for [`locate`]),
    /// for problems found after parsing, e.g. an artifact file that does not exist. Falls back
    /// to line 1, column 1 when the key is not in `source`.
    pub fn at_key(
        file: &str,
        source: &str,
        key_path: &[&str],
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        let (line, column) = locate(source, key_path).unwrap_or((1, 1));
        let key = if key_path.first() == Some(&"service") || key_path.is_empty() {
            Path::from_segments(key_path)
        } else {
            Path::from_segments(&[&["service"], key_path].concat())
        };
        SpecError::new(file, line, column, Some(key.to_string()), message, hint)
    }

    /// The error as the user should see it, with the source line it points at:
    ///
    /// ```text
    /// strata.toml:5:1: unknown key `service.hello.scale.replcas`
    ///    5 | replcas = 2
    ///      | ^^^^^^^
    ///   hint: did you mean `replicas`?
    /// ```
    pub fn render(&self, source: &str) -> String {
        let mut out = format!(
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        );
        if let Some(snippet) = snippet(source, self.line, self.column) {
            out.push('\n');
            out.push_str(&snippet);
        }
        if let Some(hint) = &self.hint {
            out.push_str("\n  hint: ");
            out.push_str(hint);
        }
        out
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec file, sorted by position; never empty when returned by
/// [`parse`](super::parse()). `Display` prints each error, with a blank line between them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, SpecError> {
        self.0.iter()
    }

    /// Every error rendered with its source line (see [`SpecError::render`]), with a blank line
    /// between them. `source` is the text given to [`parse`](super::parse()).
    pub fn render(&self, source: &str) -> String {
        self.0
            .iter()
            .map(|e| e.render(source))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "\n\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a SpecErrors {
    type Item = &'a SpecError;
    type IntoIter = std::slice::Iter<'a, SpecError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// 1-based line and column (in characters) of a byte offset, clamped to the text.
pub(super) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

/// `   5 | text` and a caret line under the token at `column`.
fn snippet(source: &str, line: usize, column: usize) -> Option<String> {
    let text = source.split('\n').nth(line.checked_sub(1)?)?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    let width = line.to_string().len().max(4);
    let pad: String = text
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let rest: String = text.chars().skip(column.saturating_sub(1)).collect();
    let carets = "^".repeat(token_len(&rest).max(1));
    Some(format!(
        "{line:>width$} | {text}\n{blank:>width$} | {pad}{carets}",
        blank = ""
    ))
}

/// How many characters the TOML token at the start of `rest` spans, roughly (for carets).
fn token_len(rest: &str) -> usize {
    let chars: Vec<char> = rest.chars().collect();
    let Some(&first) = chars.first() else {
        return 1;
    };
    match first {
        '"' | '\'' => {
            let mut escaped = false;
            for (i, &c) in chars.iter().enumerate().skip(1) {
                if escaped {
                    escaped = false;
                } else if c == '\\' && first == '"' {
                    escaped = true;
                } else if c == first {
                    return i + 1;
                }
            }
            chars.len()
        }
        '[' | '{' => {
            let close = if first == '[' { ']' } else { '}' };
            let mut depth = 0usize;
            let mut quote: Option<char> = None;
            for (i, &c) in chars.iter().enumerate() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if c == '"' || c == '\'' => quote = Some(c),
                    None if c == first => depth += 1,
                    None if c == close => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    None => {}
                }
            }
            rest.trim_end().chars().count()
        }
        _ => {
            let numeric = first.is_ascii_digit() || first == '+' || first == '-';
            1 + chars[1..]
                .iter()
                .take_while(|&&c| {
                    !(c.is_whitespace()
                        || matches!(c, '=' | ',' | ']' | '}' | '[' | '{' | '#')
                        || (c == '.' && !numeric))
                })
                .count()
        }
    }
}
