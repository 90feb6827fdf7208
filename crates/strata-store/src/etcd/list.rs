//! Listings: one page of a prefix, or all of it read in pages of [`LIST_PAGE`] keys at one
//! revision.

use etcd_client::GetOptions;

use super::mapping::{before_end, header_revision, rev_in, rev_out};
use super::{Shared, LIST_PAGE};
use crate::{Page, StoreError};

impl Shared {
    /// [`Store::list_page`](crate::Store::list_page).
    pub(super) async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let what = format!("list of {prefix}");
        let empty = || async {
            Ok(Page {
                kvs: Vec::new(),
                revision: self.revision().await?,
                next: None,
            })
        };
        let Some((mut start, end)) = self.range(prefix) else {
            return empty().await;
        };
        if let Some(after) = start_after {
            // The first key after `after` is `after` + "\0"; the namespace keeps the order.
            let mut first = self.namespace.as_bytes().to_vec();
            first.extend_from_slice(after.as_bytes());
            first.push(0);
            if first > start {
                start = first;
            }
        }
        if !before_end(&start, &end) {
            return empty().await;
        }
        if limit == 0 {
            return self.read_all(start, end, &what).await;
        }
        let options = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let resp = self
            .call(true, || {
                let (mut kv, key, options) = (self.kv.clone(), start.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await
            .map_err(|f| self.fail(&what, f))?
            .0;
        let revision = header_revision(resp.header.as_ref(), &what)?;
        let kvs = resp
            .kvs
            .into_iter()
            .map(|kv| self.kv_out(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(kvs, revision, resp.more))
    }

    /// Every key under `/` but those under the `skipped` prefixes: the ranges between them,
    /// each read in pages, all at the first one's revision (read again from the start if
    /// that revision is compacted meanwhile).
    pub(super) async fn snapshot_without(&self, skipped: &[&str]) -> Result<Page, StoreError> {
        const ATTEMPTS: usize = 3;
        let Some((start, end)) = self.range("/") else {
            return Ok(Page::of(Vec::new(), self.revision().await?, false));
        };
        let mut holes: Vec<(Vec<u8>, Vec<u8>)> = skipped
            .iter()
            .filter_map(|prefix| self.range(prefix))
            .collect();
        holes.sort();
        // The ranges of `[start, end)` outside every hole.
        let mut pieces = Vec::new();
        let mut from = start;
        for (hole_start, hole_end) in holes {
            if hole_start > from {
                pieces.push((from.clone(), hole_start));
            }
            if hole_end > from {
                from = hole_end;
            }
        }
        if before_end(&from, &end) {
            pieces.push((from, end));
        }
        'attempt: for _ in 0..ATTEMPTS {
            let mut kvs = Vec::new();
            let mut at = None;
            for (piece_start, piece_end) in &pieces {
                match self
                    .read_range(piece_start.clone(), piece_end.clone(), "snapshot", at)
                    .await
                {
                    Ok(Some((page, revision))) => {
                        at = Some(revision);
                        kvs.extend(page);
                    }
                    Ok(None) => continue 'attempt,
                    Err(error) => return Err(error),
                }
            }
            let revision = match at {
                Some(revision) => rev_out(revision),
                None => self.revision().await?,
            };
            return Ok(Page::of(kvs, revision, false));
        }
        Err(StoreError::Backend(format!(
            "etcd snapshot failed: the revision being read was compacted {ATTEMPTS} times in a row"
        )))
    }

    /// Every key in `[start, end)` in pages at revision `at` (`None`: the first page's):
    /// the keys and that revision, or `None` if the revision was compacted meanwhile.
    async fn read_range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        what: &str,
        at: Option<i64>,
    ) -> Result<Option<(Vec<crate::KeyValue>, i64)>, StoreError> {
        let mut kvs = Vec::new();
        let mut revision = at;
        let mut from = start;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(LIST_PAGE).unwrap_or(i64::MAX));
            if let Some(revision) = revision {
                options = options.with_revision(revision);
            }
            let resp = match self
                .call(true, || {
                    let (mut kv, key, options) = (self.kv.clone(), from.clone(), options.clone());
                    async move { kv.get(key, Some(options)).await }
                })
                .await
            {
                Ok(resp) => resp.0,
                Err(f) if revision.is_some() && f.is_compacted() => return Ok(None),
                Err(f) => return Err(self.fail(what, f)),
            };
            let read_at = match revision {
                Some(read_at) => read_at,
                None => {
                    let read_at = rev_in(header_revision(resp.header.as_ref(), what)?);
                    revision = Some(read_at);
                    read_at
                }
            };
            if let Some(last) = resp.kvs.last() {
                from = last.key.clone();
                from.push(0);
            }
            let done = !resp.more || resp.kvs.is_empty();
            for kv in resp.kvs {
                kvs.push(self.kv_out(kv)?);
            }
            if done {
                return Ok(Some((kvs, read_at)));
            }
        }
    }

    /// Every key in `[start, end)`, read in pages at one revision.
    async fn read_all(&self, start: Vec<u8>, end: Vec<u8>, what: &str) -> Result<Page, StoreError> {
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            // The history at the first page's revision compacted between two pages: again.
            if let Some((kvs, at)) = self
                .read_range(start.clone(), end.clone(), what, None)
                .await?
            {
                return Ok(Page {
                    kvs,
                    revision: rev_out(at),
                    next: None,
                });
            }
        }
        Err(StoreError::Backend(format!(
            "etcd {what} failed: the revision being listed was compacted {ATTEMPTS} times in a row"
        )))
    }
}
