//! Typed values: strings, lists, integers, booleans, durations, tables, the driver and the
//! port, each with a hint when the type is wrong.

use super::*;

impl<'s> Checker<'s> {
    pub(super) fn type_error(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        expected: &str,
        hint: String,
    ) {
        self.push(
            value_span(key, item),
            Some(path.to_string()),
            format!("`{path}` must be {expected}, found {}", describe(item)),
            Some(hint),
        );
    }

    /// A string value, or a type error whose hint is `for example {example}`.
    pub(super) fn string<'i>(
        &mut self,
        path: &Path,
        key: &Key,
        item: &'i Item,
        expected: &str,
        example: &str,
    ) -> Option<(&'i str, Option<Range<usize>>)> {
        match item {
            Item::Value(Value::String(s)) => Some((s.value().as_str(), s.span())),
            _ => {
                let hint = match (item, self.raw(item.span())) {
                    (
                        Item::Value(Value::Integer(_) | Value::Float(_) | Value::Boolean(_)),
                        Some(raw),
                    ) => {
                        format!("quote it: `{} = {}`", display_key(path.last()), quote(raw))
                    }
                    _ => format!("for example {example}"),
                };
                self.type_error(path, key, item, expected, hint);
                None
            }
        }
    }

    /// An array of strings. `example` is an array literal for the hint.
    pub(super) fn string_list(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        name: &str,
        example: &str,
    ) -> Option<(Vec<String>, Option<Range<usize>>)> {
        let Some(array) = item.as_array() else {
            let hint = match item {
                Item::Value(Value::String(s)) => {
                    format!("write a list: `{name} = {}`", words_array(s.value()))
                }
                _ => format!("for example `{name} = {example}`"),
            };
            self.type_error(path, key, item, "an array of strings", hint);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, value) in array.iter().enumerate() {
            match value {
                Value::String(s) => out.push(s.value().clone()),
                other => {
                    ok = false;
                    let hint = match other {
                        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => self
                            .raw(other.span())
                            .map(|raw| format!("quote it: `{}`", quote(raw))),
                        _ => None,
                    }
                    .unwrap_or_else(|| format!("for example `{name} = {example}`"));
                    self.push(
                        other.span().or_else(|| key.span()),
                        Some(path.to_string()),
                        format!(
                            "`{}` must be a string, found {}",
                            path.index(i),
                            describe_value(other)
                        ),
                        Some(hint),
                    );
                }
            }
        }
        ok.then_some((out, array.span()))
    }

    pub(super) fn integer(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        example: i64,
    ) -> Option<(i64, Option<Range<usize>>)> {
        match item {
            Item::Value(Value::Integer(i)) => Some((*i.value(), i.span())),
            _ => {
                let name = path.last();
                let hint = match item {
                    Item::Value(Value::String(s)) if s.value().trim().parse::<i64>().is_ok() => {
                        format!(
                            "write the number without quotes: `{name} = {}`",
                            s.value().trim()
                        )
                    }
                    Item::Value(Value::Float(f))
                        if f.value().fract() == 0.0 && f.value().is_finite() =>
                    {
                        format!("write a whole number: `{name} = {}`", *f.value() as i64)
                    }
                    _ => format!("for example `{name} = {example}`"),
                };
                self.type_error(path, key, item, "an integer", hint);
                None
            }
        }
    }

    /// Key `name` of `section` (at `path`), whose rule in the schema is [`Rule::Integer`]: a
    /// whole number within its bounds.
    pub(super) fn integer_key(
        &mut self,
        path: &Path,
        entry: (&Key, &Item),
        section: Section,
        name: &str,
    ) -> Option<u32> {
        let def = section.key(name);
        let path = &path.child(name);
        let Rule::Integer {
            min,
            max,
            example,
            hint,
        } = def.rule
        else {
            panic!("`{}` is not an integer key of the schema", def.name);
        };
        self.bounded(path, entry, min, max, example, hint)
    }

    /// Key `name` of `section` (at `path`), whose rule in the schema is [`Rule::Duration`]: a
    /// duration within its bounds, in milliseconds.
    pub(super) fn duration_key(
        &mut self,
        path: &Path,
        (key, item): (&Key, &Item),
        section: Section,
        name: &str,
    ) -> Option<u64> {
        let def = section.key(name);
        let path = &path.child(name);
        let Rule::Duration {
            min_ms,
            max_ms,
            example,
            hint,
        } = def.rule
        else {
            panic!("`{}` is not a duration key of the schema", def.name);
        };
        let (ms, span) = self.duration(path, key, item, example)?;
        if (min_ms..=max_ms).contains(&ms) {
            return Some(ms);
        }
        let span = span.or_else(|| value_span(key, item));
        let found = self
            .raw(span.clone())
            .map_or_else(|| format_ms(ms), str::to_string);
        let bounds = match (min_ms, max_ms) {
            (0, max) => format!("at most {}", format_bound(max)),
            (min, u64::MAX) => format!("at least {}", format_bound(min)),
            (min, max) => format!("between {} and {}", format_bound(min), format_bound(max)),
        };
        self.push(
            span,
            Some(path.to_string()),
            format!("`{path}` must be {bounds}, found {found}"),
            Some(hint.to_string()),
        );
        None
    }

    /// An integer in `min..=max`.
    pub(super) fn bounded(
        &mut self,
        path: &Path,
        (key, item): (&Key, &Item),
        min: i64,
        max: i64,
        example: i64,
        hint: &str,
    ) -> Option<u32> {
        let (value, span) = self.integer(path, key, item, example)?;
        if value < min || value > max {
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` must be between {min} and {max}, found {value}"),
                Some(hint.to_string()),
            );
            return None;
        }
        u32::try_from(value).ok()
    }

    pub(super) fn boolean(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        example: bool,
    ) -> Option<bool> {
        match item {
            Item::Value(Value::Boolean(b)) => Some(*b.value()),
            _ => {
                let name = path.last();
                let hint = match item {
                    Item::Value(Value::String(s))
                        if matches!(s.value().as_str(), "true" | "false") =>
                    {
                        format!("write it without quotes: `{name} = {}`", s.value())
                    }
                    _ => format!("for example `{name} = {example}`"),
                };
                self.type_error(path, key, item, "a boolean (`true` or `false`)", hint);
                None
            }
        }
    }

    /// A duration string, in milliseconds.
    pub(super) fn duration(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        example: &str,
    ) -> Option<(u64, Option<Range<usize>>)> {
        let name = path.last();
        match item {
            Item::Value(Value::String(s)) => {
                let text = s.value().trim();
                match humantime::parse_duration(text) {
                    Ok(d) => Some((u64::try_from(d.as_millis()).unwrap_or(u64::MAX), s.span())),
                    Err(_) => {
                        let hint = if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
                            format!("add a unit: `{name} = \"{text}s\"` or `\"{text}ms\"`")
                        } else {
                            format!("write a number and a unit, like \"500ms\", \"{example}\" or \"1m 30s\"")
                        };
                        self.push(
                            s.span(),
                            Some(path.to_string()),
                            format!("`{path}` is not a duration: {}", quote(s.value())),
                            Some(hint),
                        );
                        None
                    }
                }
            }
            _ => {
                let hint = match item {
                    Item::Value(Value::Integer(i)) => format!(
                        "durations are strings with a unit: `{name} = \"{}s\"` or `\"{}ms\"`",
                        i.value(),
                        i.value()
                    ),
                    _ => format!("for example `{name} = \"{example}\"`"),
                };
                self.type_error(path, key, item, "a duration string", hint);
                None
            }
        }
    }

    /// The steps every section of a service begins with: it must be a table (`hint`, or
    /// "write it as a table" with the section's example keys, says how), of a service of the
    /// driver it belongs to, and hold only the keys the schema gives it. Its path and table,
    /// or `None` when it cannot be read further (each problem already reported).
    pub(super) fn open_section<'i>(
        &mut self,
        (key, item): (&Key, &'i Item),
        service: &Path,
        section: Section,
        driver: Option<DriverKind>,
        hint: Option<String>,
    ) -> Option<(Path, &'i dyn TableLike)> {
        let path = service.child(section.name());
        let hint = hint
            .unwrap_or_else(|| format!("write it as a table: [{path}] with {}", section.example()));
        let table = self.table(&path, key, item, hint)?;
        if let (Some((belongs_to, what)), Some(kind)) = (section.driver(), driver) {
            if kind != belongs_to {
                self.push(
                    key.span(),
                    Some(path.to_string()),
                    format!(
                        "`[{path}]` sets {what}, and `{service}` uses the `{}` driver",
                        kind.as_str()
                    ),
                    Some(format!(
                        "remove the table, or set `driver = \"{}\"`",
                        belongs_to.as_str()
                    )),
                );
                return None;
            }
        }
        self.check_keys(table, &path, service, section);
        Some((path, table))
    }

    pub(super) fn table<'i>(
        &mut self,
        path: &Path,
        key: &Key,
        item: &'i Item,
        hint: String,
    ) -> Option<&'i dyn TableLike> {
        match item.as_table_like() {
            Some(t) => Some(t),
            None => {
                let hint = if matches!(item, Item::ArrayOfTables(_)) {
                    format!("use single brackets: [{path}]")
                } else {
                    hint
                };
                self.type_error(path, key, item, "a table", hint);
                None
            }
        }
    }

    // -- fields ----------------------------------------------------------------------------------

    pub(super) fn driver(&mut self, path: &Path, key: &Key, item: &Item) -> Option<DriverKind> {
        let (s, span) = self.string(path, key, item, "a string", "`driver = \"exec\"`")?;
        match s {
            "exec" => Some(DriverKind::Exec),
            "wasm" => Some(DriverKind::Wasm),
            "container" => Some(DriverKind::Container),
            other => {
                let drivers = ["exec", "wasm", "container"];
                let hint = match closest(other, &drivers) {
                    Some(d) => format!("did you mean `{d}`? The drivers are {}", list(&drivers)),
                    None if matches!(other, "docker" | "oci" | "podman" | "image") => format!(
                        "the drivers are {}; to run an image, use `driver = \"container\"`",
                        list(&drivers)
                    ),
                    None => format!("the drivers are {}", list(&drivers)),
                };
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("unknown driver `{other}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    pub(super) fn port(&mut self, path: &Path, key: &Key, item: &Item) -> Option<PortSpec> {
        match item {
            Item::Value(Value::Integer(i)) => {
                let value = *i.value();
                match u16::try_from(value) {
                    Ok(port) if port >= 1 => Some(PortSpec::Fixed(port)),
                    _ => {
                        self.push(
                            i.span(),
                            Some(path.to_string()),
                            format!("`{path}` must be between 1 and 65535, found {value}"),
                            Some("or let the node pick a free port: `port = \"auto\"`".into()),
                        );
                        None
                    }
                }
            }
            Item::Value(Value::String(s)) if s.value() == "auto" => Some(PortSpec::Auto),
            Item::Value(Value::String(s)) => {
                let text = s.value().trim();
                let hint = if text.parse::<u16>().is_ok() {
                    format!("write the number without quotes: `port = {text}`")
                } else {
                    "write `port = \"auto\"` (the node picks a port and sets PORT) or a number, like `port = 8080`".into()
                };
                self.push(
                    s.span(),
                    Some(path.to_string()),
                    format!(
                        "`{path}` must be \"auto\" or a port number, found {}",
                        quote(s.value())
                    ),
                    Some(hint),
                );
                None
            }
            _ => {
                self.type_error(
                    path,
                    key,
                    item,
                    "\"auto\" or an integer",
                    "write `port = \"auto\"` (the node picks a port and sets PORT) or a number, like `port = 8080`".into(),
                );
                None
            }
        }
    }
}
