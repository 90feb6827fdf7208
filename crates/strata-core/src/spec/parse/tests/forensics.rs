//! `[forensics]`: when an instance is archived on its own, and how long its archives are kept.

use super::*;
use crate::spec::{ArchiveOn, ForensicsSpec};

#[test]
fn forensics() {
    let forensics = |body: &str| only_service(&service(body)).forensics;
    assert_eq!(forensics(""), None);
    assert_eq!(
        forensics("[service.hello.forensics]\narchive_on = \"failure\"\nkeep = \"30d\"\n"),
        Some(ForensicsSpec {
            archive_on: ArchiveOn::Failure,
            keep_ms: 30 * 86_400_000,
        })
    );
    // `keep` defaults to seven days; any TOML form works.
    assert_eq!(
        forensics("forensics = { archive_on = \"failure\" }\n"),
        Some(ForensicsSpec {
            archive_on: ArchiveOn::Failure,
            keep_ms: ForensicsSpec::DEFAULT_KEEP_MS,
        })
    );
    assert_eq!(
        forensics("forensics.archive_on = \"never\"\nforensics.keep = \"1m\"\n")
            .map(|f| (f.archive_on, f.keep_ms)),
        Some((ArchiveOn::Never, 60_000))
    );
    assert!(ForensicsSpec::archives_failures(
        forensics("forensics.archive_on = \"failure\"\n").as_ref()
    ));
    assert!(!ForensicsSpec::archives_failures(
        forensics("forensics.archive_on = \"never\"\n").as_ref()
    ));
    assert!(!ForensicsSpec::archives_failures(None));

    // In the JSON: as written; absent, omitted (releases stored before it hash the same).
    let with = only_service(&service("forensics.archive_on = \"failure\"\n"));
    let json = serde_json::to_value(&with).unwrap();
    assert_eq!(
        json["forensics"],
        serde_json::json!({ "archive_on": "failure", "keep_ms": 604_800_000u64 })
    );
    assert_eq!(serde_json::from_value::<ServiceSpec>(json).unwrap(), with);
    let without = serde_json::to_value(only_service(&service(""))).unwrap();
    assert!(without.get("forensics").is_none());
    // It is part of the release: a new `keep` is a new release.
    let other = only_service(&service(
        "forensics.archive_on = \"failure\"\nforensics.keep = \"1d\"\n",
    ));
    assert_ne!(with.spec_hash(None), other.spec_hash(None));
}

#[test]
fn forensics_errors() {
    const KEEP: &str =
        "it is how long each archive is kept, from 1m to 87600h (ten years); for example `keep = \"30d\"`";
    let cases: &[(&str, Expected)] = &[
        (
            "[service.hello.forensics]\nkeep = \"7d\"\n",
            (
                3,
                16,
                "service.hello.forensics",
                "`service.hello.forensics` does not say when an instance is archived",
                "add `archive_on = \"failure\"` (an instance is archived each time it fails)",
            ),
        ),
        (
            "[service.hello.forensics]\narchive_on = \"failures\"\n",
            (
                4,
                14,
                "service.hello.forensics.archive_on",
                "`service.hello.forensics.archive_on`: unknown value `failures`",
                "did you mean `failure`? It is one of `failure` and `never`",
            ),
        ),
        (
            "[service.hello.forensics]\narchive_on = \"failure\"\nkeep = \"10s\"\n",
            (
                5,
                8,
                "service.hello.forensics.keep",
                "`service.hello.forensics.keep` must be between 1m and 87600h, found \"10s\"",
                KEEP,
            ),
        ),
        (
            "[service.hello.forensics]\narchive_on = \"failure\"\nretention = \"7d\"\n",
            (
                5,
                1,
                "service.hello.forensics.retention",
                "unknown key `service.hello.forensics.retention`",
                "did you mean `keep`?",
            ),
        ),
        (
            "forensics = \"failure\"\n",
            (
                3,
                13,
                "service.hello.forensics",
                "`service.hello.forensics` must be a table, found a string",
                "write it as a table: [service.hello.forensics] with `archive_on = \"failure\"` and `keep = \"7d\"`",
            ),
        ),
    ];
    for (body, expected) in cases {
        assert_service_error(body, *expected);
    }
}
