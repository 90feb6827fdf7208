//! Describing values and suggesting names in messages: what a TOML item is, the closest
//! allowed key, quoting.

use super::*;

/// Where to point for a problem with a value: the value itself if it is written inline, else
/// its key (a `[table]` header's span starts at the bracket, the key is more precise).
pub(super) fn value_span(key: &Key, item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span().or_else(|| key.span()),
        _ => key.span(),
    }
}

/// "a string", "an integer", ... for "found ..." messages.
pub(super) fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => describe_value(v),
    }
}

pub(super) fn describe_value(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// The closest of `candidates` to `name`, if close enough to be a likely typo.
pub(super) fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_lowercase().replace('-', "_");
    let mut best: Option<(usize, f64, &'a str)> = None;
    for &candidate in candidates {
        let distance = strsim::damerau_levenshtein(&lower, candidate);
        let similarity = strsim::jaro_winkler(&lower, candidate);
        let allowed = match candidate.chars().count().max(lower.chars().count()) {
            0..=3 => 1,
            4..=7 => 2,
            _ => 3,
        };
        if distance > allowed && similarity < 0.9 {
            continue;
        }
        let better = match best {
            None => true,
            Some((d, s, _)) => distance < d || (distance == d && similarity > s),
        };
        if better {
            best = Some((distance, similarity, candidate));
        }
    }
    best.map(|(_, _, candidate)| candidate)
}

/// "`a`, `b` and `c`".
pub(super) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{s}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// A TOML string literal for `s`.
pub(super) fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// `["a", "b"]` from the words of a string.
pub(super) fn words_array(s: &str) -> String {
    let words: Vec<String> = s.split_whitespace().map(quote).collect();
    format!("[{}]", words.join(", "))
}

/// `{ zone = "eu-1", disk = "ssd" }` from `zone=eu-1,disk=ssd` (as given to an agent's
/// `--labels`), if it is that form.
pub(super) fn labels_table(s: &str) -> Option<String> {
    let pairs: Option<Vec<String>> = s
        .split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty()).then(|| format!("{} = {}", display_key(k), quote(v)))
        })
        .collect();
    Some(format!("{{ {} }}", pairs?.join(", ")))
}
