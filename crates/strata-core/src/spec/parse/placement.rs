//! `[placement]`: the node labels an instance's node must carry.

use super::*;

impl<'s> Checker<'s> {
    /// `[placement]`: the node labels an instance's node must carry.
    pub(super) fn placement(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
    ) -> BTreeMap<String, String> {
        let mut constraints = BTreeMap::new();
        let Some((path, table)) = entry
            .and_then(|entry| self.open_section(entry, service, Section::Placement, None, None))
        else {
            return constraints;
        };
        let Some((k, i)) = table.get_key_value("labels") else {
            return constraints;
        };
        let path = path.child("labels");
        let hint = match i {
            Item::Value(Value::String(s)) => match labels_table(s.value()) {
                Some(inline) => format!("write a table: `labels = {inline}`"),
                None => "for example `labels = { zone = \"eu-1\", disk = \"ssd\" }`".into(),
            },
            Item::Value(Value::Array(a)) => {
                let pairs: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
                match pairs.and_then(|p| labels_table(&p.join(","))) {
                    Some(inline) => format!("write a table: `labels = {inline}`"),
                    None => "for example `labels = { zone = \"eu-1\", disk = \"ssd\" }`".into(),
                }
            }
            _ => "for example `labels = { zone = \"eu-1\", disk = \"ssd\" }`".into(),
        };
        let Some(labels) = self.table(&path, k, i, hint) else {
            return constraints;
        };
        for (name, value_item) in labels.iter() {
            let Some((label_key, _)) = labels.get_key_value(name) else {
                continue;
            };
            let p = path.child(name);
            let key_ok = is_label_key(name);
            if !key_ok {
                let too_long = name.split('/').any(|p| p.chars().count() > MAX_LABEL_LEN);
                let hint = if too_long && name.contains('/') {
                    "a label key's prefix and name are each at most 63 characters".to_string()
                } else if too_long {
                    format!(
                        "a label key is at most 63 characters; this one has {}",
                        name.chars().count()
                    )
                } else {
                    match suggest_label_key(name) {
                        Some(s) => format!("did you mean `{}`? {LABEL_KEY_RULE}", display_key(&s)),
                        None => LABEL_KEY_RULE.to_string(),
                    }
                };
                self.push(
                    label_key.span(),
                    Some(p.to_string()),
                    format!("`{name}` is not a valid node label key"),
                    Some(hint),
                );
            }
            let example = format!("`{} = \"...\"`", display_key(name));
            let Some((value, span)) = self.string(&p, label_key, value_item, "a string", &example)
            else {
                continue;
            };
            if value.is_empty() {
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` must not be empty"),
                    Some(LABEL_VALUE_RULE.into()),
                );
                continue;
            }
            if !is_label_part(value) {
                let hint = if value.chars().count() > MAX_LABEL_LEN {
                    format!(
                        "a label value is at most 63 characters; this one has {}",
                        value.chars().count()
                    )
                } else {
                    let suggestion = suggest_label_part(value);
                    if suggestion.is_empty() || suggestion == value {
                        LABEL_VALUE_RULE.to_string()
                    } else {
                        format!("did you mean {}? {LABEL_VALUE_RULE}", quote(&suggestion))
                    }
                };
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` is not a valid label value: {}", quote(value)),
                    Some(hint),
                );
                continue;
            }
            if key_ok {
                constraints.insert(name.to_string(), value.to_string());
            }
        }
        constraints
    }
}
