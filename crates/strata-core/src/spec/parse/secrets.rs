//! `[secrets]`: the secrets an instance gets and where, by name (`DB_PASSWORD = { env =
//! "DB_PASSWORD" }` or `{ file = "/run/secrets/db" }`). Values never appear in a spec.

use crate::secret::{file_path_problem, is_secret_name, SecretTarget, SECRET_NAME_RULE};

use super::*;

/// Why `name` cannot be an instance's environment variable set from the spec (config or a
/// secret), with a hint; `None` when it can.
pub(super) fn env_var_problem(name: &str) -> Option<(String, String)> {
    if !is_env_name(name) {
        return Some((
            format!("`{name}` is not a valid environment variable name"),
            format!(
                "an environment variable's name is letters, digits and `_`, not starting with a digit, like `{}`",
                suggest_env_name(name)
            ),
        ));
    }
    if name == "PORT" {
        return Some((
            "`PORT` is set by the platform and cannot be configured".into(),
            "to choose the port, set `port = 8080` on the service".into(),
        ));
    }
    if name == "HOST" || name.starts_with("STRATA_") {
        return Some((
            format!("`{name}` is set by the platform and cannot be configured"),
            "`HOST` and names starting with `STRATA_` are the platform's (`STRATA_SERVICE`, `STRATA_ENV`, ...); rename it".into(),
        ));
    }
    None
}

/// Why a service's secrets cannot be delivered as written, for the checks both the parser
/// and the server run: two secrets in one variable or file, a variable the configuration
/// also sets, a file on a driver without its own filesystem. `(secret name, message, hint)`;
/// `config_names`: the variables the configuration sets in any environment.
pub(super) fn delivery_problems(
    secrets: &BTreeMap<String, SecretTarget>,
    config_names: &BTreeSet<&str>,
    driver: DriverKind,
) -> Vec<(String, String, String)> {
    let mut problems = Vec::new();
    let mut taken: BTreeMap<&SecretTarget, &str> = BTreeMap::new();
    for (name, target) in secrets {
        if let Some(first) = taken.insert(target, name) {
            problems.push((
                name.clone(),
                format!("secrets `{first}` and `{name}` are both delivered to {target}"),
                "give each secret its own variable or file".into(),
            ));
        }
        match target {
            SecretTarget::Env(var) if config_names.contains(var.as_str()) => problems.push((
                name.clone(),
                format!("`{var}` is set by both `[config]` and secret `{name}`"),
                format!("remove `{var}` from the config, or deliver the secret to another variable"),
            )),
            SecretTarget::File(_) if driver != DriverKind::Container => problems.push((
                name.clone(),
                format!(
                    "secret `{name}` is delivered as a file, which the `{}` driver cannot show only to its instance",
                    driver.as_str()
                ),
                format!(
                    "deliver it as an environment variable: `{name} = {{ env = \"{}\" }}` (files need the container driver's own filesystem)",
                    suggest_env_name(name)
                ),
            )),
            _ => {}
        }
    }
    problems
}

impl<'s> Checker<'s> {
    /// `[secrets]`: secret names to where each is delivered.
    pub(super) fn secrets(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
        driver: Option<DriverKind>,
        config_names: &BTreeSet<&str>,
    ) -> BTreeMap<String, SecretTarget> {
        let mut secrets = BTreeMap::new();
        let Some((key, item)) = entry else {
            return secrets;
        };
        let path = service.child("secrets");
        let Some(table) = self.table(
            &path,
            key,
            item,
            format!("write it as a table: [{path}] with lines like `DB_PASSWORD = {{ env = \"DB_PASSWORD\" }}`"),
        ) else {
            return secrets;
        };
        let mut spans = BTreeMap::new();
        for (name, value) in table.iter() {
            let Some((k, _)) = table.get_key_value(name) else {
                continue;
            };
            let p = path.child(name);
            if !is_secret_name(name) {
                self.push(
                    k.span(),
                    Some(p.to_string()),
                    format!("`{name}` is not a valid secret name"),
                    Some(SECRET_NAME_RULE.into()),
                );
                continue;
            }
            if let Some(target) = self.secret_target(&p, k, value) {
                spans.insert(name.to_string(), k.span());
                secrets.insert(name.to_string(), target);
            }
        }
        for (name, message, hint) in
            delivery_problems(&secrets, config_names, driver.unwrap_or(DriverKind::Exec))
        {
            let span = spans.get(&name).cloned().flatten();
            self.push(
                span,
                Some(path.child(&name).to_string()),
                message,
                Some(hint),
            );
        }
        secrets
    }

    /// One secret's `{ env = "VAR" }` or `{ file = "/path" }`.
    fn secret_target(&mut self, path: &Path, key: &Key, item: &Item) -> Option<SecretTarget> {
        let name = key.get();
        let example = format!(
            "`{} = {{ env = \"{}\" }}` or `{} = {{ file = \"/run/secrets/{}\" }}`",
            display_key(name),
            suggest_env_name(name),
            display_key(name),
            name.to_lowercase()
        );
        let Some(table) = item.as_table_like() else {
            self.type_error(
                path,
                key,
                item,
                "a table with `env` or `file`",
                format!("a spec names where a secret goes, never its value (that is `strata secret set`): {example}"),
            );
            return None;
        };
        let entries: Vec<(&Key, &Item)> = table
            .iter()
            .filter_map(|(n, _)| table.get_key_value(n))
            .collect();
        let [(field, value)] = entries.as_slice() else {
            self.push(
                value_span(key, item),
                Some(path.to_string()),
                format!("`{path}` must name one place: `env` or `file`"),
                Some(format!("for example {example}")),
            );
            return None;
        };
        let field_path = path.child(field.get());
        let (text, span) = self.string(&field_path, field, value, "a string", &example)?;
        match field.get() {
            "env" => match env_var_problem(text) {
                Some((message, hint)) => {
                    self.push(span, Some(field_path.to_string()), message, Some(hint));
                    None
                }
                None => Some(SecretTarget::Env(text.to_string())),
            },
            "file" => match file_path_problem(text) {
                Some(problem) => {
                    self.push(
                        span,
                        Some(field_path.to_string()),
                        format!("`{field_path}`: {problem}"),
                        None,
                    );
                    None
                }
                None => Some(SecretTarget::File(text.to_string())),
            },
            other => {
                let hint = match closest(other, &["env", "file"]) {
                    Some(near) => format!("did you mean `{near}`? {example}"),
                    None => format!("a secret goes to `env` or `file`: {example}"),
                };
                self.push(
                    field.span(),
                    Some(field_path.to_string()),
                    format!("unknown key `{field_path}`"),
                    Some(hint),
                );
                None
            }
        }
    }
}
