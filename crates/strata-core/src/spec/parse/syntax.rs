//! TOML syntax errors and duplicate keys, told in the words of the spec with the table they
//! were found in.

use super::*;

/// The segments of a (possibly dotted) TOML key starting at byte `at` (after blanks), with the
/// byte span of each segment.
pub(super) fn scan_key_path(source: &str, at: usize) -> Option<Vec<(String, Range<usize>)>> {
    let bytes = source.as_bytes();
    let mut i = at;
    let skip_blanks = |mut i: usize| {
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        i
    };
    let mut segments = Vec::new();
    loop {
        i = skip_blanks(i);
        let start = i;
        let name = match bytes.get(i)? {
            b'"' => {
                let mut name = String::new();
                let mut chars = source.get(i + 1..)?.char_indices();
                loop {
                    let (j, c) = chars.next()?;
                    match c {
                        '"' => {
                            i = i + 1 + j + 1;
                            break;
                        }
                        '\\' => {
                            let (_, escaped) = chars.next()?;
                            name.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        '\n' => return None,
                        c => name.push(c),
                    }
                }
                name
            }
            b'\'' => {
                let rest = source.get(i + 1..)?;
                let end = rest.find(['\'', '\n'])?;
                if !rest[end..].starts_with('\'') {
                    return None;
                }
                i = i + 1 + end + 1;
                rest[..end].to_string()
            }
            _ => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
                {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                source[start..i].to_string()
            }
        };
        segments.push((name, start..i));
        i = skip_blanks(i);
        if bytes.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some(segments);
        }
    }
}

impl<'s> Checker<'s> {
    /// Turns toml_edit's syntax error into ours, rewording duplicates and adding hints.
    pub(super) fn syntax_error(&self, err: &TomlError) -> SpecError {
        let message = err.message().trim();
        let span = err.span();
        if message.contains("duplicate key") {
            if let Some(error) = self.duplicate(message, span.clone()) {
                return error;
            }
        }
        let lines: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let text = if lines.is_empty() {
            "invalid TOML".to_string()
        } else {
            lines.join(": ")
        };
        let offset = span.map_or(0, |s| s.start);
        let hint = self.syntax_hint(message, offset);
        SpecError::at(self.file, self.source, offset..offset, None, text, hint)
    }

    pub(super) fn syntax_hint(&self, message: &str, offset: usize) -> Option<String> {
        let offset = offset.min(self.source.len());
        let rest = self.source.get(offset..)?;
        let line_start = self.source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let before = &self.source[line_start..offset];
        if message.starts_with("invalid string") {
            let word: String = rest
                .chars()
                .take_while(|c| !(c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#')))
                .collect();
            if !word.is_empty() {
                return Some(format!(
                    "strings are quoted in TOML: `{}{}`",
                    before.trim_start(),
                    quote(&word)
                ));
            }
            return Some("a value is missing after `=`".into());
        }
        if message.starts_with("invalid basic string")
            || message.starts_with("invalid literal string")
        {
            return Some(
                "close the string with a quote on the same line (use \"\"\" for text over several lines)"
                    .into(),
            );
        }
        if message.starts_with("invalid table header") {
            return Some("a table header looks like `[service.hello]`".into());
        }
        if message.contains("expected `.`, `=`") {
            return Some("a key is followed by `=` and a value, like `replicas = 2`".into());
        }
        None
    }

    /// Rewords toml_edit's "duplicate key" errors.
    pub(super) fn duplicate(&self, message: &str, span: Option<Range<usize>>) -> Option<SpecError> {
        let offset = span?.start;
        let rest = self.source.get(offset..)?;
        if rest.starts_with('[') {
            let inner = offset + if rest.starts_with("[[") { 2 } else { 1 };
            let segments = scan_key_path(self.source, inner)?;
            let (last, _) = segments.split_last()?;
            let names: Vec<&str> = segments.iter().map(|(s, _)| s.as_str()).collect();
            let path = Path::from_segments(&names);
            let (text, hint) = if names.len() == 2 && names[0] == "service" {
                (
                    format!("service `{}` is defined twice", names[1]),
                    "rename one of them or merge the two tables".to_string(),
                )
            } else {
                (
                    format!("table `{path}` is defined twice"),
                    format!("merge the two [{path}] tables into one"),
                )
            };
            return Some(SpecError::at(
                self.file,
                self.source,
                last.1.clone(),
                Some(path.to_string()),
                text,
                Some(hint),
            ));
        }
        let segments = scan_key_path(self.source, offset)?;
        let table: Vec<String> = if let Some(i) = message.find("in table `") {
            let inner = &message[i + "in table `".len()..];
            let inner = &inner[..inner.rfind('`')?];
            inner.split('.').map(str::to_string).collect()
        } else if message.contains("in document root") {
            Vec::new()
        } else {
            self.header_before(offset)
        };
        let mut names = table;
        names.extend(segments.iter().map(|(s, _)| s.clone()));
        let path = Path(names);
        Some(SpecError::at(
            self.file,
            self.source,
            segments.first()?.1.clone(),
            Some(path.to_string()),
            format!("`{path}` is set twice"),
            Some("remove one of them".into()),
        ))
    }

    /// The key path of the last `[table]` header before `offset`.
    pub(super) fn header_before(&self, offset: usize) -> Vec<String> {
        let mut pos = 0;
        let mut header = Vec::new();
        for line in self.source[..offset.min(self.source.len())].split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed.starts_with('[') {
                let at = pos + (line.len() - trimmed.len());
                let inner = at + if trimmed.starts_with("[[") { 2 } else { 1 };
                if let Some(segments) = scan_key_path(self.source, inner) {
                    header = segments.into_iter().map(|(s, _)| s).collect();
                }
            }
            pos += line.len();
        }
        header
    }

    // -- documents and services ----------------------------------------------------------------
}
