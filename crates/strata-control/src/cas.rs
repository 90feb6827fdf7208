//! Read-decide-write on one key of the store, safely under concurrent writers: the one
//! compare-and-swap loop every update of a single record goes through.
//!
//! [`ControlPlane::update_cas`] reads the record, asks a pure `decide` what to do with it,
//! and writes the answer only if the key did not change meanwhile (the store's revision
//! check); on a conflict it reads again and asks again, up to [`CAS_ATTEMPTS`] times, and
//! then says it gave up, as an error naming the record: never silently.

use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_store::Txn;

use crate::plane::{encode, ControlPlane, CAS_ATTEMPTS};
use crate::ControlError;

/// What an update does with the record it read.
pub(crate) enum Change<T, R> {
    /// Write this record (if the key is still as read), then return `R`.
    Write(T, R),
    /// Write nothing, and return `R`.
    Keep(R),
}

/// Whether the write goes through the leader's fence (a controller's decision) or not (a
/// request any server may serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    Controller,
    Api,
}

impl ControlPlane {
    /// Reads `key` (`None`: absent), asks `decide`, and writes what it says if `key` is
    /// unchanged, retrying on conflict. `what` names the record in the error when it keeps
    /// changing ("node `n1`").
    pub(crate) async fn update_cas<T, R>(
        &self,
        key: &str,
        what: &str,
        writer: Writer,
        mut decide: impl FnMut(Option<T>) -> Result<Change<T, R>, ControlError>,
    ) -> Result<R, ControlError>
    where
        T: Serialize + DeserializeOwned,
    {
        for _ in 0..CAS_ATTEMPTS {
            let current: Option<(T, u64)> = self.get(key).await?;
            let revision = current.as_ref().map_or(0, |(_, r)| *r);
            let (record, result) = match decide(current.map(|(record, _)| record))? {
                Change::Keep(result) => return Ok(result),
                Change::Write(record, result) => (record, result),
            };
            let txn = Txn::new().when(key, revision).put(key, encode(&record));
            let outcome = match writer {
                Writer::Controller => self.controller_txn(txn).await?,
                Writer::Api => self.store.txn(txn).await?,
            };
            if outcome.is_committed() {
                return Ok(result);
            }
        }
        tracing::warn!(%key, attempts = CAS_ATTEMPTS, "gave up updating a record that kept changing");
        Err(ControlError::Conflict {
            message: format!("{what} kept changing while it was updated ({CAS_ATTEMPTS} attempts)"),
            hint: Some("try again".into()),
        })
    }
}
