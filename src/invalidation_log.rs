//! The last invalidations run on this instance, whoever asked for them:
//! a bounded ring, for operators ([`Cache::recent_invalidations`](crate::Cache::recent_invalidations)
//! and the admin router's `/invalidations`).
//!
//! Recorded where every invalidation runs (`Cache::run_invalidation`),
//! when it completes; never on the request path of a cached route.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::entry::Tag;
use crate::stamp::now_micros;

/// How many invalidations are kept.
pub const KEPT_INVALIDATIONS: usize = 200;

/// How many of one invalidation's tags are kept (the others are counted).
pub const KEPT_TAGS: usize = 32;

/// Who asked for an invalidation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum InvalidationSource {
    /// An [`InvalidateLayer`](crate::InvalidateLayer) of this route.
    Route(String),
    /// The admin API.
    Admin,
    /// Code holding the [`Cache`](crate::Cache) handle.
    Code,
}

/// What an invalidation reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidationKind {
    /// Entries with these tags stop being served.
    Hard,
    /// Entries with these tags became stale (stale-while-revalidate may
    /// still answer from them).
    Soft,
    /// Every entry.
    All,
}

/// One invalidation, as recorded when it completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidationRecord {
    /// When it completed, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Hard, soft or everything.
    pub kind: InvalidationKind,
    /// Its tags (the first [`KEPT_TAGS`]; a purge by key shows as the
    /// key's implicit `#key:` tag).
    pub tags: Vec<String>,
    /// How many tags beyond those were invalidated too.
    pub more_tags: usize,
    /// Who asked.
    pub source: InvalidationSource,
    /// The store's error, if it could not record it.
    pub error: Option<String>,
}

/// The ring.
#[derive(Debug, Default)]
pub(crate) struct InvalidationLog {
    records: Mutex<VecDeque<InvalidationRecord>>,
}

impl InvalidationLog {
    pub(crate) fn record(
        &self,
        kind: InvalidationKind,
        tags: &[Tag],
        source: InvalidationSource,
        error: Option<String>,
    ) {
        let record = InvalidationRecord {
            at_unix_ms: now_micros() / 1000,
            kind,
            tags: tags.iter().take(KEPT_TAGS).map(|t| t.to_string()).collect(),
            more_tags: tags.len().saturating_sub(KEPT_TAGS),
            source,
            error,
        };
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() == KEPT_INVALIDATIONS {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// Up to `limit` records, newest first.
    pub(crate) fn recent(&self, limit: usize) -> Vec<InvalidationRecord> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_bounds_tags() {
        let log = InvalidationLog::default();
        for i in 0..KEPT_INVALIDATIONS + 5 {
            let tag: Tag = format!("t{i}").into();
            log.record(
                InvalidationKind::Hard,
                &[tag],
                InvalidationSource::Code,
                None,
            );
        }
        let recent = log.recent(usize::MAX);
        assert_eq!(recent.len(), KEPT_INVALIDATIONS);
        assert_eq!(recent[0].tags, [format!("t{}", KEPT_INVALIDATIONS + 4)]);
        assert_eq!(recent.last().unwrap().tags, ["t5"]);
        assert_eq!(log.recent(2).len(), 2);

        let many: Vec<Tag> = (0..KEPT_TAGS + 3).map(|i| format!("x{i}").into()).collect();
        log.record(
            InvalidationKind::Soft,
            &many,
            InvalidationSource::Admin,
            Some("down".into()),
        );
        let newest = &log.recent(1)[0];
        assert_eq!((newest.tags.len(), newest.more_tags), (KEPT_TAGS, 3));
        assert_eq!(newest.error.as_deref(), Some("down"));
    }
}
