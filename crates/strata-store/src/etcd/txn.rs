//! Transactions: a [`Txn`] as one etcd txn whose failure branch reads the compared keys, so
//! that a conflict names the compare that really failed; and what etcd cannot do (a key
//! written twice, a lease id no etcd lease can have).

use std::collections::HashSet;

use etcd_client::proto::PbTxnOpResponse;
use etcd_client::{Compare as EtcdCompare, CompareOp, GetOptions, PutOptions, TxnOp};

use super::mapping::{header_revision, lease_in, rev_in, rev_out};
use super::Shared;
use crate::{LeaseId, Op, Revision, StoreError, Txn, TxnOutcome};

impl Shared {
    /// [`Store::txn`](crate::Store::txn).
    pub(super) async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        txn.check_size()?;
        let what =
            format!(
                "txn on {}",
                describe_keys(txn.compares.iter().map(|c| c.key.as_str()).chain(
                    txn.ops.iter().map(|op| match op {
                        Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
                    })
                ))
            );
        let mut compares = Vec::with_capacity(txn.compares.len());
        for compare in txn.compares {
            let raw = self.key_in(&compare.key)?;
            compares.push((compare.key, raw, compare.mod_revision));
        }
        let mut ops = Vec::with_capacity(txn.ops.len());
        let mut written = HashSet::new();
        let mut leases = Vec::new();
        // What makes the ops impossible for etcd: a key written twice, a lease id no etcd
        // lease can have.
        let mut impossible: Option<StoreError> = None;
        for op in txn.ops {
            let key = match &op {
                Op::Put { key, .. } | Op::Delete { key } => key.clone(),
            };
            let raw = self.key_in(&key)?;
            if !written.insert(raw.clone()) && impossible.is_none() {
                impossible = Some(StoreError::InvalidTxn(format!(
                    "{what} writes {key} more than once, and etcd allows one put or delete of \
                     a key per transaction"
                )));
            }
            match op {
                Op::Put { value, lease, .. } => {
                    let mut options = PutOptions::new();
                    if let Some(lease) = lease {
                        match lease_in(lease) {
                            Some(id) => options = options.with_lease(id),
                            None => {
                                impossible.get_or_insert(StoreError::LeaseNotFound(lease));
                            }
                        }
                        if !leases.contains(&lease) {
                            leases.push(lease);
                        }
                    }
                    ops.push(TxnOp::put(raw, value, Some(options)));
                }
                Op::Delete { .. } => ops.push(TxnOp::delete(raw, None)),
            }
        }
        if let Some(error) = impossible {
            // A failed compare is still a conflict, as etcd evaluates compares before ops.
            return match self.run_txn(&compares, Vec::new(), &[], &what).await? {
                TxnOutcome::Conflict { key } => Ok(TxnOutcome::Conflict { key }),
                TxnOutcome::Committed(_) => Err(error),
            };
        }
        self.run_txn(&compares, ops, &leases, &what).await
    }

    /// The first of `leases` that etcd does not know (for a txn etcd refused with "lease not
    /// found").
    async fn missing_lease(&self, leases: &[LeaseId]) -> LeaseId {
        if let [only] = leases {
            return *only;
        }
        for &lease in leases {
            let Some(id) = lease_in(lease) else {
                return lease;
            };
            let ttl = self
                .call(true, || {
                    let mut lease = self.lease.clone();
                    async move { lease.time_to_live(id, None).await }
                })
                .await;
            if matches!(ttl, Ok(resp) if resp.ttl() < 0) {
                return lease;
            }
        }
        leases.first().copied().unwrap_or(0)
    }

    /// Sends one etcd txn: `compares` (store key, etcd key, mod_revision), `ops` if they hold,
    /// else a read of every compared key to name the first one that failed.
    async fn run_txn(
        &self,
        compares: &[(String, Vec<u8>, Revision)],
        ops: Vec<TxnOp>,
        leases: &[LeaseId],
        what: &str,
    ) -> Result<TxnOutcome, StoreError> {
        let mut probed: Vec<&[u8]> = Vec::new();
        for (_, raw, _) in compares {
            if !probed.contains(&raw.as_slice()) {
                probed.push(raw);
            }
        }
        let mut txn = etcd_client::Txn::new();
        if !compares.is_empty() {
            txn = txn.when(
                compares
                    .iter()
                    .map(|(_, raw, rev)| {
                        EtcdCompare::mod_revision(raw.clone(), CompareOp::Equal, rev_in(*rev))
                    })
                    .collect::<Vec<_>>(),
            );
        }
        txn = txn.and_then(ops);
        if !compares.is_empty() {
            txn = txn.or_else(
                probed
                    .iter()
                    .map(|raw| TxnOp::get(raw.to_vec(), Some(GetOptions::new().with_keys_only())))
                    .collect::<Vec<_>>(),
            );
        }
        let resp = match self
            .call(false, || {
                let (mut kv, txn) = (self.kv.clone(), txn.clone());
                async move { kv.txn(txn).await }
            })
            .await
        {
            Ok(resp) => resp.0,
            Err(f) if f.is_lease_not_found() => {
                return Err(StoreError::LeaseNotFound(self.missing_lease(leases).await))
            }
            Err(f) => return Err(self.fail(what, f)),
        };
        let revision = header_revision(resp.header.as_ref(), what)?;
        if resp.succeeded {
            return Ok(TxnOutcome::Committed(revision));
        }
        // The failure branch read every compared key, at the revision the compares saw.
        let mut actual = Vec::with_capacity(probed.len());
        for (raw, op) in probed.iter().zip(&resp.responses) {
            match &op.response {
                Some(PbTxnOpResponse::ResponseRange(range)) => {
                    let at = range.kvs.first().map_or(0, |kv| rev_out(kv.mod_revision));
                    actual.push((*raw, at));
                }
                _ => {
                    return Err(StoreError::Backend(format!(
                        "etcd {what}: the failed txn did not return the compared keys"
                    )))
                }
            }
        }
        let failed = compares.iter().find(|(_, raw, expected)| {
            actual
                .iter()
                .find(|(key, _)| *key == raw.as_slice())
                .is_none_or(|(_, at)| at != expected)
        });
        // A compare failed even if the reads cannot tell which (they always can).
        let key = failed
            .or(compares.first())
            .map(|(key, _, _)| key.clone())
            .unwrap_or_default();
        Ok(TxnOutcome::Conflict { key })
    }
}

fn describe_keys<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut seen = HashSet::new();
    let keys: Vec<&str> = keys.filter(|key| seen.insert(*key)).collect();
    match keys.len() {
        0 => "no keys".to_owned(),
        1..=4 => keys.join(", "),
        n => format!("{} and {} more keys", keys[..3].join(", "), n - 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_keys_dedups_and_shortens() {
        let keys = ["/a", "/b", "/a", "/c", "/d", "/e"];
        assert_eq!(describe_keys(keys[..3].iter().copied()), "/a, /b");
        assert_eq!(
            describe_keys(keys.iter().copied()),
            "/a, /b, /c and 2 more keys"
        );
    }
}
