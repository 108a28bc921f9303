//! The slow origin: counts how often each cached route's handler really ran
//! and delays its answer, so the cache's effect is visible in `/stats` and
//! in response times.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The cached GET routes, by the name their cache layer reports in metrics
/// and stats.
pub mod route {
    /// `GET /api/teachers/{tid}/sessions`
    pub const SESSION_LIST: &str = "session-list";
    /// `GET /api/sessions/{sid}`
    pub const SESSION_DETAIL: &str = "session-detail";
    /// `GET /api/me/sessions`
    pub const MY_SESSIONS: &str = "my-sessions";
    /// `GET /api/dashboard/teacher/{tid}`
    pub const TEACHER_DASHBOARD: &str = "teacher-dashboard";
    /// `GET /api/dashboard/admin`
    pub const ADMIN_DASHBOARD: &str = "admin-dashboard";

    /// Every cached GET route.
    pub const ALL: [&str; 5] = [
        SESSION_LIST,
        SESSION_DETAIL,
        MY_SESSIONS,
        TEACHER_DASHBOARD,
        ADMIN_DASHBOARD,
    ];
}

/// Origin call counters, one per cached route.
#[derive(Debug, Default)]
pub struct OriginCalls {
    counts: [AtomicU64; route::ALL.len()],
}

impl OriginCalls {
    fn record(&self, name: &str) {
        if let Some(i) = route::ALL.iter().position(|r| *r == name) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `{"total": N, "<route>": n, ...}` with every route listed, even at 0.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let mut out: BTreeMap<&'static str, u64> = route::ALL
            .iter()
            .zip(&self.counts)
            .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
            .collect();
        let total = out.values().sum();
        out.insert("total", total);
        out
    }
}

/// How handlers of cached routes answer: like a slow database query.
#[derive(Debug, Default)]
pub struct Origin {
    /// The counters behind `/stats`.
    pub calls: OriginCalls,
    /// How long every answer takes.
    pub delay: Duration,
}

impl Origin {
    /// Counts a run of `route`'s handler, then waits out the delay and hands
    /// back `read`. Handlers read their data *before* calling this, so a slow
    /// answer carries the data as of its start: the case the cache must not
    /// store once a mutation has invalidated it meanwhile. Counting after the
    /// read also lets a caller that sees the count know the read is done.
    pub async fn answer<T>(&self, route: &'static str, read: T) -> T {
        self.calls.record(route);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        read
    }
}
