//! `[forensics]`: what the platform archives of an instance that fails, and how long it keeps
//! each archive.

use super::*;
use crate::spec::{ArchiveOn, ForensicsSpec};

impl<'s> Checker<'s> {
    /// `[forensics]`: `archive_on` (required) and `keep`. Any driver.
    pub(super) fn forensics(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
    ) -> Option<ForensicsSpec> {
        let (key, _) = entry?;
        let (path, table) = self.open_section(entry?, service, Section::Forensics, None, None)?;
        let mut keep_ms = Some(ForensicsSpec::DEFAULT_KEEP_MS);
        if let Some(entry) = table.get_key_value("keep") {
            keep_ms = self.duration_key(&path, entry, Section::Forensics, "keep");
        }
        let Some((k, i)) = table.get_key_value("archive_on") else {
            self.push(
                key.span(),
                Some(path.to_string()),
                format!("`{path}` does not say when an instance is archived"),
                Some(
                    "add `archive_on = \"failure\"` (an instance is archived each time it fails)"
                        .into(),
                ),
            );
            return None;
        };
        let p = path.child("archive_on");
        let (name, span) = self.string(&p, k, i, "a string", "`archive_on = \"failure\"`")?;
        let Some(archive_on) = ArchiveOn::parse(name) else {
            let hint = match closest(name, &ArchiveOn::NAMES) {
                Some(s) => format!("did you mean `{s}`? It is one of {}", list(&ArchiveOn::NAMES)),
                None => format!(
                    "it is one of {}; `\"failure\"` archives an instance each time it crashes, is killed for its memory or restarted by its liveness check",
                    list(&ArchiveOn::NAMES)
                ),
            };
            self.push(
                span,
                Some(p.to_string()),
                format!("`{p}`: unknown value `{name}`"),
                Some(hint),
            );
            return None;
        };
        Some(ForensicsSpec {
            archive_on,
            keep_ms: keep_ms?,
        })
    }
}
