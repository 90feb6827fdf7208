//! `[config]` and `[environments.ENV.config]`: the environment variables an instance gets.

use super::*;

impl<'s> Checker<'s> {
    /// A config table: environment variable names to string values.
    pub(super) fn config(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
    ) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        let Some(table) = self.table(
            path,
            key,
            item,
            format!("write it as a table: [{path}] with lines like `GREETING = \"hello\"`"),
        ) else {
            return values;
        };
        for (name, value_item) in table.iter() {
            let Some((k, _)) = table.get_key_value(name) else {
                continue;
            };
            let p = path.child(name);
            if let Some((message, hint)) = secrets::env_var_problem(name) {
                self.push(k.span(), Some(p.to_string()), message, Some(hint));
                continue;
            }
            let text = match value_item {
                Item::Value(Value::String(s)) => Some(s.value().clone()),
                Item::Value(Value::Integer(i)) => Some(i.value().to_string()),
                Item::Value(Value::Float(f)) => Some(
                    self.raw(f.span())
                        .map(|raw| raw.replace('_', ""))
                        .unwrap_or_else(|| format!("{:?}", f.value())),
                ),
                Item::Value(Value::Boolean(b)) => Some(b.value().to_string()),
                other => {
                    let hint = match other {
                        Item::Value(v @ (Value::Datetime(_) | Value::Array(_))) => format!(
                            "config values become environment variables; quote it to pass the text: `{name} = {}`",
                            quote(self.raw(v.span()).unwrap_or("..."))
                        ),
                        _ => format!(
                            "config values become environment variables; write text: `{name} = \"...\"`"
                        ),
                    };
                    self.type_error(&p, k, other, "a string, number or boolean", hint);
                    None
                }
            };
            if let Some(text) = text {
                values.insert(name.to_string(), text);
            }
        }
        values
    }

    pub(super) fn environments(
        &mut self,
        service: &Path,
        key: &Key,
        item: &Item,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let path = service.child("environments");
        let Some(table) = self.table(
            &path,
            key,
            item,
            format!("write per-environment config as [{path}.prod.config]"),
        ) else {
            return out;
        };
        for (env, env_item) in table.iter() {
            let Some((env_key, _)) = table.get_key_value(env) else {
                continue;
            };
            let env_path = path.child(env);
            if !is_dns_label(env) {
                self.push(
                    env_key.span(),
                    Some(env_path.to_string()),
                    format!("invalid environment name `{env}`"),
                    Some(format!(
                        "an environment name is a DNS label (lowercase letters, digits and `-`, starting with a letter), for example `{}`",
                        suggest_label(env, "prod")
                    )),
                );
            }
            let Some(env_table) = self.table(
                &env_path,
                env_key,
                env_item,
                format!("write it as a table: [{env_path}.config]"),
            ) else {
                continue;
            };
            self.check_keys(env_table, &env_path, service, Section::Environment);
            if let Some((k, i)) = env_table.get_key_value("config") {
                let values = self.config(&env_path.child("config"), k, i);
                out.insert(env.to_string(), values);
            }
        }
        out
    }
}
