//! A backup written and read back, and each way a file can be wrong.

use super::format::artifact_digest;
use super::*;

const ARTIFACT: &[u8] = b"\x7fELF the service's binary";

/// A small state: a service, a secret, runtime facts, an artifact's record.
fn state() -> Vec<(String, Vec<u8>)> {
    let digest = artifact_digest(ARTIFACT);
    vec![
        ("/services/dev/web".into(), br#"{"name":"web"}"#.to_vec()),
        (
            "/releases/dev/web/0000000001".into(),
            b"not json \x01".to_vec(),
        ),
        (
            "/pki/ca".into(),
            b"-----BEGIN PRIVATE KEY----- xyz".to_vec(),
        ),
        ("/auth/tokens/ci".into(), br#"{"hash":"abc"}"#.to_vec()),
        ("/somewhere/new".into(), b"unknown, so sealed".to_vec()),
        (
            "/audit/0000000000000001".into(),
            br#"{"who":"admin"}"#.to_vec(),
        ),
        ("/instances/web-1-a".into(), br#"{"node":"n1"}"#.to_vec()),
        ("/status/web-1-a".into(), br#"{"state":"running"}"#.to_vec()),
        ("/nodes/n1".into(), br#"{"name":"n1"}"#.to_vec()),
        ("/servers/s1".into(), br#"{"url":"x"}"#.to_vec()),
        ("/logs/web-1-a".into(), br#"{"lines":[]}"#.to_vec()),
        (
            format!("/blobs/{digest}"),
            br#"{"size":25,"holders":["s1"]}"#.to_vec(),
        ),
        ("/events/0000000000000001".into(), b"null".to_vec()),
        (
            "/secrets/dev/web/DB".into(),
            br#"{"versions":[{"sealed":"c2VhbGVk"}]}"#.to_vec(),
        ),
        (
            "/cluster/secrets-key".into(),
            br#"{"kek":"kek-1"}"#.to_vec(),
        ),
    ]
}

fn write(sealer: Option<Sealer>, artifacts: &[&[u8]]) -> Vec<u8> {
    let mut writer = Writer::start(Vec::new(), 42, "server-1", sealer).unwrap();
    for (key, value) in state() {
        writer.key(&key, &value).unwrap();
    }
    for bytes in artifacts {
        writer.artifact(&artifact_digest(bytes), bytes).unwrap();
    }
    writer.finish().unwrap()
}

fn read_all(bytes: &[u8], passphrase: Option<&[u8]>) -> Result<Vec<Entry>, BackupError> {
    let mut reader = Reader::open(bytes, "backup.jsonl", passphrase)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        entries.push(entry);
    }
    Ok(entries)
}

fn keys(entries: &[Entry]) -> Vec<&str> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Key { key, .. } | Entry::Sealed { key } => Some(key.as_str()),
            Entry::Artifact { .. } => None,
        })
        .collect()
}

#[test]
fn a_backup_holds_intent_and_history_and_leaves_runtime_facts_and_unsealed_secrets_out() {
    let bytes = write(None, &[ARTIFACT]);
    let entries = read_all(&bytes, None).unwrap();
    assert_eq!(
        keys(&entries),
        [
            "/services/dev/web",
            "/releases/dev/web/0000000001",
            "/audit/0000000000000001",
            &format!("/blobs/{}", artifact_digest(ARTIFACT)),
            "/events/0000000000000001",
            // Services' secrets and their data key are ciphertext under a key outside the
            // store: always kept (a restore without them would lose what no one can make
            // again), never sealed twice.
            "/secrets/dev/web/DB",
            "/cluster/secrets-key",
        ]
    );
    // Values come back byte for byte (JSON, non-JSON, and JSON null).
    assert!(entries.contains(&Entry::Key {
        key: "/releases/dev/web/0000000001".into(),
        value: b"not json \x01".to_vec()
    }));
    assert!(entries.contains(&Entry::Key {
        key: "/events/0000000000000001".into(),
        value: b"null".to_vec()
    }));
    assert!(entries.contains(&Entry::Artifact {
        digest: artifact_digest(ARTIFACT),
        bytes: ARTIFACT.to_vec()
    }));
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("PRIVATE KEY") && !text.contains("unknown, so sealed"));
    let summary = Reader::open(&bytes[..], "b", None)
        .unwrap()
        .verify()
        .unwrap();
    assert_eq!(
        (
            summary.header.revision,
            summary.keys,
            summary.artifacts,
            summary.sealed
        ),
        (42, 7, 1, 0)
    );
}

#[test]
fn sealed_secrets_open_only_with_the_passphrase() {
    let (sealer, _) = Sealer::for_new_backup(b"hunter2 hunter2").unwrap();
    let bytes = write(Some(sealer), &[ARTIFACT]);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("abc"),
        "{text}"
    );

    let opened = read_all(&bytes, Some(b"hunter2 hunter2")).unwrap();
    assert!(opened.contains(&Entry::Key {
        key: "/pki/ca".into(),
        value: b"-----BEGIN PRIVATE KEY----- xyz".to_vec()
    }));
    assert!(opened.contains(&Entry::Key {
        key: "/somewhere/new".into(),
        value: b"unknown, so sealed".to_vec()
    }));
    // Without the passphrase: verified, secrets counted, not opened.
    let unopened = read_all(&bytes, None).unwrap();
    assert!(unopened.contains(&Entry::Sealed {
        key: "/pki/ca".into()
    }));
    let summary = Reader::open(&bytes[..], "b", None)
        .unwrap()
        .verify()
        .unwrap();
    assert_eq!(summary.sealed, 3);
    // A wrong passphrase is told at the header, before any entry.
    assert!(matches!(
        Reader::open(&bytes[..], "b", Some(b"hunter3")),
        Err(BackupError::Seal {
            source: SealError::WrongPassphrase,
            ..
        })
    ));
}

#[test]
fn a_damaged_file_is_refused_with_where_and_why() {
    let good = write(None, &[ARTIFACT]);
    let text = String::from_utf8(good.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let joined = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();

    // Cut short: at a line, or inside one.
    let cut = joined(&lines[..lines.len() - 1]);
    assert!(matches!(
        read_all(cut.as_bytes(), None),
        Err(BackupError::Truncated { .. })
    ));
    assert!(matches!(
        read_all(&good[..good.len() - 10], None),
        Err(BackupError::Truncated { .. })
    ));
    // A value changed: the end line's digest no longer matches.
    let altered = text.replace(r#""name":"web""#, r#""name":"wEb""#);
    let error = read_all(altered.as_bytes(), None).unwrap_err();
    assert!(matches!(error, BackupError::Altered { .. }), "{error}");
    assert!(error
        .to_string()
        .starts_with(&format!("backup.jsonl:{}", lines.len())));
    // An artifact whose bytes are not its name's.
    let other = write(None, &[b"other bytes"]);
    let mut swapped: Vec<&str> = lines.clone();
    let other_text = String::from_utf8(other).unwrap();
    let other_artifact = other_text.lines().find(|l| l.contains("\"blob\"")).unwrap();
    let forged =
        other_artifact.replace(&artifact_digest(b"other bytes"), &artifact_digest(ARTIFACT));
    let at = swapped.iter().position(|l| l.contains("\"blob\"")).unwrap();
    swapped[at] = &forged;
    let error = read_all(joined(&swapped).as_bytes(), None).unwrap_err();
    assert!(
        matches!(&error, BackupError::Altered { what, .. } if what.contains("does not hash")),
        "{error}"
    );
    // A release's artifact that the backup does not hold.
    let error = read_all(&write(None, &[]), None).unwrap_err();
    assert!(
        matches!(error, BackupError::MissingArtifact { .. }),
        "{error}"
    );
    // Not a backup at all, and a server that failed part-way.
    assert!(matches!(
        read_all(b"{\"key\":\"/x\",\"value\":1}\n", None),
        Err(BackupError::NotABackup { .. })
    ));
    let failed = format!("{}\n{{\"error\":\"disk on fire\"}}\n", lines[0]);
    let error = read_all(failed.as_bytes(), None).unwrap_err();
    assert!(error.to_string().contains("disk on fire"), "{error}");
    // From a newer strata.
    let newer = text.replacen("\"strata_backup\":1", "\"strata_backup\":9", 1);
    assert!(matches!(
        read_all(newer.as_bytes(), None),
        Err(BackupError::Format { found: 9, .. })
    ));
}
