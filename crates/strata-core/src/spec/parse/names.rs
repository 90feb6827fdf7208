//! The names a spec uses: DNS labels (services, environments), environment variable names,
//! node label keys and values, host names; each check has a suggestion for a bad name.

use super::*;

pub(super) use crate::names::is_dns_label;

/// A valid DNS label resembling `s`.
pub(super) fn suggest_label(s: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut label: String = out
        .trim_start_matches(|c: char| !c.is_ascii_lowercase())
        .chars()
        .take(63)
        .collect();
    while label.ends_with('-') {
        label.pop();
    }
    if label.is_empty() {
        fallback.to_string()
    } else {
        label
    }
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn suggest_env_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label value, or one side of a label key's `/`: 1 to 63 of `[A-Za-z0-9._-]`.
pub(super) fn is_label_part(s: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A node label key: a name, or a prefix, `/` and a name (`example.com/tier`).
pub(super) fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_label_part(prefix) && is_label_part(name),
        None => is_label_part(s),
    }
}

/// A valid label part resembling `s`: other characters become `-`, cut to 63 characters.
pub(super) fn suggest_label_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(MAX_LABEL_LEN).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// A valid label key resembling `s`, if there is one.
pub(super) fn suggest_label_key(s: &str) -> Option<String> {
    let suggestion = match s.split_once('/') {
        Some((prefix, name)) => {
            let (prefix, name) = (suggest_label_part(prefix), suggest_label_part(name));
            match (prefix.is_empty(), name.is_empty()) {
                (false, false) => format!("{prefix}/{name}"),
                (true, _) => name,
                (false, true) => prefix,
            }
        }
        None => suggest_label_part(s),
    };
    (is_label_key(&suggestion) && suggestion != s).then_some(suggestion)
}

/// A host name, lowercased; or why it is not valid and a hint.
pub(super) fn check_host(host: &str) -> Result<String, (String, String)> {
    let before = |s: &str, chars: &[char]| -> String {
        s.split(|c| chars.contains(&c))
            .next()
            .unwrap_or("")
            .to_string()
    };
    let just = |h: String| {
        if h.is_empty() {
            "a host name looks like \"hello.example.com\"".to_string()
        } else {
            format!("write just the host name: {}", quote(&h))
        }
    };
    if let Some((_, rest)) = host.split_once("://") {
        return Err((
            "must be a host name, not a URL".into(),
            just(before(rest, &['/', ':', '?'])),
        ));
    }
    if host.contains('/') {
        return Err((
            "must be a host name, without a path".into(),
            just(before(host, &['/', ':'])),
        ));
    }
    if host.contains(':') {
        return Err((
            "must be a host name, without a port".into(),
            just(before(host, &[':'])),
        ));
    }
    if host.starts_with("*.") {
        return Err((
            "cannot be a wildcard".into(),
            "list each host name, like \"hello.example.com\"".into(),
        ));
    }
    let lower = host.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= 253
        && lower.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        });
    if valid {
        return Ok(lower);
    }
    let labels: Vec<String> = lower
        .split('.')
        .map(|l| suggest_label(l, ""))
        .filter(|l| !l.is_empty())
        .collect();
    let suggestion = labels.join(".");
    let hint = if suggestion.is_empty() || suggestion == lower {
        "a host name is labels of letters, digits and `-` separated by dots, like \"hello.example.com\"".to_string()
    } else {
        format!("did you mean {}?", quote(&suggestion))
    };
    Err(("is not a valid host name".into(), hint))
}
