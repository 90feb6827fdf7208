//! The audit log: append-only records of every state-changing call and every refused one
//! (`/audit/{seq}`, written by [`crate::guard`]), read with filters, and pruned past the
//! retention by the leader.

use std::sync::Arc;

use strata_core::auth::AuditRecord;
use strata_core::keys;
use strata_store::Store;

use crate::plane::decode;
use crate::{ControlError, ControlPlane};

/// What `GET /v1/audit` asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub env: Option<String>,
    pub who: Option<String>,
    /// Milliseconds since the epoch.
    pub since: u64,
    /// The newest this many of those that match.
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `record` is one the query asks for. Pure.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        record.at >= self.since
            && self
                .env
                .as_ref()
                .is_none_or(|env| record.env.as_ref() == Some(env))
            && self.who.as_ref().is_none_or(|who| &record.who == who)
    }
}

/// The records `query` asks for, oldest first. Keys sort by time, so reading starts at
/// `since`.
pub async fn read(
    store: &Arc<dyn Store>,
    query: &AuditQuery,
) -> Result<Vec<AuditRecord>, ControlError> {
    let mut start_after = (query.since > 0).then(|| keys::audit(query.since * 1000 - 1));
    let mut found = std::collections::VecDeque::new();
    loop {
        let page = store
            .list_page(keys::AUDIT, start_after.as_deref(), 1000)
            .await?;
        for kv in &page.kvs {
            let record: AuditRecord = decode(kv)?;
            if query.matches(&record) {
                found.push_back(record);
                if found.len() > query.limit {
                    found.pop_front();
                }
            }
        }
        match page.next {
            Some(next) => start_after = Some(next),
            None => break,
        }
    }
    Ok(found.into())
}

/// Deletes the records older than `before` (milliseconds since the epoch), a page at a
/// time; returns how many went.
pub async fn prune(store: &Arc<dyn Store>, before: u64) -> Result<usize, ControlError> {
    crate::leader::delete_keys_before(store, keys::AUDIT, &keys::audit(before * 1000)).await
}

/// On the leader, every minute: drops audit records older than the retention.
pub async fn run_retention(plane: Arc<ControlPlane>) {
    crate::leader::prune_on_leader(
        plane,
        "audit records",
        |config| config.audit_retention,
        |plane, before| async move { prune(plane.store(), before).await },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::RedbStore;

    fn record(seq: u64, at: u64, who: &str, env: Option<&str>) -> AuditRecord {
        AuditRecord {
            seq,
            at,
            who: who.into(),
            from: "127.0.0.1:1".into(),
            route: "POST /v1/envs/{env}/deploy".into(),
            env: env.map(String::from),
            summary: String::new(),
            status: 200,
            denied: None,
        }
    }

    #[tokio::test]
    async fn read_filters_and_prune_keeps_the_recent() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("s")).await.unwrap());
        let records = [
            record(1_000_000, 1_000, "alice", Some("dev")),
            record(2_000_000, 2_000, "bob", Some("prod")),
            record(3_000_000, 3_000, "alice", Some("prod")),
            record(4_000_000, 4_000, "node:n1", None),
        ];
        for r in &records {
            store
                .put(&keys::audit(r.seq), serde_json::to_vec(r).unwrap())
                .await
                .unwrap();
        }
        let all = |q: AuditQuery| AuditQuery { limit: 100, ..q };
        let by_alice = read(
            &store,
            &all(AuditQuery {
                who: Some("alice".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        assert_eq!(
            by_alice.iter().map(|r| r.at).collect::<Vec<_>>(),
            [1_000, 3_000]
        );
        let prod = read(
            &store,
            &all(AuditQuery {
                env: Some("prod".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        assert_eq!(prod.len(), 2);
        let since = read(
            &store,
            &all(AuditQuery {
                since: 3_000,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        assert_eq!(
            since.iter().map(|r| r.at).collect::<Vec<_>>(),
            [3_000, 4_000]
        );
        let newest = read(
            &store,
            &AuditQuery {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(newest[0].at, 4_000, "the limit keeps the newest");

        assert_eq!(prune(&store, 2_500).await.unwrap(), 2);
        let left = read(&store, &all(AuditQuery::default())).await.unwrap();
        assert_eq!(
            left.iter().map(|r| r.at).collect::<Vec<_>>(),
            [3_000, 4_000]
        );
        assert_eq!(prune(&store, 2_500).await.unwrap(), 0);
    }
}
