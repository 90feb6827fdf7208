//! The schema against docs/spec.md, and every example there.

use super::*;

/// Every complete example in docs/spec.md (before its Errors section) parses, so the
/// reference never shows a spec Strata refuses.
/// The key tables of docs/spec.md, section by section: each row's key, type and default.
fn documented_keys(doc: &str, heading: &str) -> Vec<(String, String, String)> {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/spec.md has no heading {heading}"));
    let after = &doc[start + heading.len() + 2..];
    let section = &after[..after.find("\n## ").unwrap_or(after.len())];
    section
        .lines()
        .skip_while(|l| !l.starts_with("| Key"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn docs_spec_md_lists_every_key_of_the_schema_with_its_type_and_default() {
    let doc = include_str!("../../../../../../docs/spec.md");
    for section in SECTIONS.iter().map(|def| def.section) {
        let heading = match section {
            Section::Service => "## `[service.NAME]`".to_string(),
            // Per-environment values are a `config` table, described in prose.
            Section::Environment => continue,
            other => format!("## `[service.NAME.{}]`", other.name()),
        };
        let schema: Vec<(String, String, String)> = section
            .keys()
            .iter()
            .filter(|k| !matches!(k.rule, Rule::Table))
            .map(|k| (k.name.to_string(), k.ty.to_string(), k.default.to_string()))
            .collect();
        assert_eq!(
            documented_keys(doc, &heading),
            schema,
            "docs/spec.md's table under {heading} and the schema differ (key, type, default)"
        );
    }
}

#[test]
fn the_schema_is_consistent() {
    for (i, def) in SECTIONS.iter().enumerate() {
        assert_eq!(
            def.section as usize, i,
            "SECTIONS is in the order of Section"
        );
    }
    let mut aliases = BTreeSet::new();
    for section in SECTIONS.iter().map(|def| def.section) {
        for def in section.keys() {
            assert!(!def.doc.is_empty(), "`{}` has no doc line", def.name);
            match def.rule {
                Rule::Integer {
                    min,
                    max,
                    example,
                    hint,
                } => {
                    assert!(min <= example && example <= max, "`{}`'s example", def.name);
                    assert!(
                        hint.contains(&format!("from {min} to {max}")),
                        "`{}`'s hint states other bounds than its rule: {hint}",
                        def.name
                    );
                }
                Rule::Duration { min_ms, max_ms, .. } => assert!(min_ms < max_ms),
                Rule::Table => assert!(
                    section == Section::Environment
                        || Section::nested().any(|s| s.name() == def.name)
                        || matches!(def.name, "config" | "environments" | "secrets"),
                    "`{}` is a table with no section",
                    def.name
                ),
                Rule::Custom => {}
            }
            for alias in def.aliases {
                assert!(
                    !section.allows(alias),
                    "alias `{alias}` is a key of its table"
                );
                assert!(
                    aliases.insert((section.name(), *alias)),
                    "alias `{alias}` names two keys"
                );
            }
        }
    }
}

#[test]
fn the_examples_of_docs_spec_md_parse() {
    let doc = include_str!("../../../../../../docs/spec.md");
    let reference = &doc[..doc.find("## Errors").expect("an Errors section")];
    let mut checked = 0;
    for block in reference.split("```toml\n").skip(1) {
        let block = &block[..block.find("```").expect("closed block")];
        // Fragments (a layout, one table) are not whole specs.
        if !block.contains("[service.") || block.contains("NAME") {
            continue;
        }
        let blocks_service = block
            .lines()
            .any(|l| l.starts_with("[service.") && l.matches('.').count() == 1);
        let has_program = block.contains("artifact") || block.contains("command");
        if !blocks_service || !has_program {
            continue;
        }
        if let Err(errors) = parse("spec.md", block) {
            panic!(
                "docs/spec.md example does not parse:\n{block}\n{}",
                errors.render(block)
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples found");
}
