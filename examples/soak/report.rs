//! The soak's result: one row per instance, the faults injected, how the
//! run settled, and whether it passed. Printed as a plain-text table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::faults::Injected;

/// One instance's numbers.
pub struct Row {
    pub store: &'static str,
    pub reads: u64,
    pub hits: u64,
    pub writes: u64,
    /// Reads older than this instance's own answered write: must be 0.
    pub stale: u64,
    /// Reads older than another instance's answered write (propagation).
    pub behind: u64,
    /// Requests that failed: must be 0.
    pub failed: u64,
    /// Store calls that failed and were served from the origin instead.
    pub store_errors: u64,
    /// Propagation lags to this instance, sorted.
    pub lags: Vec<Duration>,
}

pub struct Report {
    pub seconds: f64,
    pub redis: String,
    pub items: usize,
    pub readers: usize,
    pub rows: Vec<Row>,
    pub injected: Vec<Injected>,
    /// From the writers stopping to every write served on every instance
    /// and every store in sync with nothing queued; `None` if that never
    /// happened within the wait.
    pub settled_in: Option<Duration>,
    /// Writes some instance had not served when the wait ended.
    pub unsettled: usize,
    /// Reads after everything settled that did not answer the latest
    /// version.
    pub unconverged: usize,
    /// Those final reads.
    pub swept: usize,
}

impl Report {
    pub fn stale(&self) -> u64 {
        self.rows.iter().map(|r| r.stale).sum()
    }

    pub fn failed(&self) -> u64 {
        self.rows.iter().map(|r| r.failed).sum()
    }

    /// No stale read on a writing instance, no failed request, and every
    /// write reached every instance once the faults were over.
    pub fn passed(&self) -> bool {
        self.stale() == 0
            && self.failed() == 0
            && self.settled_in.is_some()
            && self.unconverged == 0
    }
}

/// The `q` quantile of sorted `lags`, in ms.
fn quantile(lags: &[Duration], q: f64) -> String {
    if lags.is_empty() {
        return "-".to_owned();
    }
    let at = ((lags.len() - 1) as f64 * q).round() as usize;
    format!("{:.1} ms", lags[at].as_secs_f64() * 1000.0)
}

fn row(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    store: &str,
    row: &Row,
    lags: &[Duration],
) -> fmt::Result {
    let ratio = if row.reads == 0 {
        0.0
    } else {
        100.0 * row.hits as f64 / row.reads as f64
    };
    writeln!(
        f,
        "{name:<9}{store:<8}{:>9}{:>9}{:>7.1}{:>8}{:>7}{:>8}{:>8}{:>11}{:>8}{:>10}{:>10}{:>10}",
        row.reads,
        row.hits,
        ratio,
        row.writes,
        row.stale,
        row.behind,
        row.failed,
        row.store_errors,
        lags.len(),
        quantile(lags, 0.5),
        quantile(lags, 0.99),
        quantile(lags, 1.0),
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tagcache soak: {:.1} s, {} instances over one redis-server ({}), {} items, {} readers and 1 writer per instance",
            self.seconds,
            self.rows.len(),
            self.redis,
            self.items,
            self.readers
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<9}{:<8}{:>9}{:>9}{:>7}{:>8}{:>7}{:>8}{:>8}{:>11}{:>8}{:>10}{:>10}{:>10}",
            "instance",
            "store",
            "reads",
            "hits",
            "hit%",
            "writes",
            "stale",
            "behind",
            "failed",
            "store err",
            "lag n",
            "lag p50",
            "lag p99",
            "lag max"
        )?;
        for (i, r) in self.rows.iter().enumerate() {
            row(f, &format!("i{i}"), r.store, r, &r.lags)?;
        }
        let mut all_lags: Vec<Duration> = self.rows.iter().flat_map(|r| r.lags.clone()).collect();
        all_lags.sort();
        let sum = |field: fn(&Row) -> u64| self.rows.iter().map(field).sum::<u64>();
        let total = Row {
            store: "",
            reads: sum(|r| r.reads),
            hits: sum(|r| r.hits),
            writes: sum(|r| r.writes),
            stale: sum(|r| r.stale),
            behind: sum(|r| r.behind),
            failed: sum(|r| r.failed),
            store_errors: sum(|r| r.store_errors),
            lags: Vec::new(),
        };
        row(f, "all", "", &total, &all_lags)?;
        writeln!(f)?;
        writeln!(
            f,
            "stale: reads on an instance older than a write that instance had answered before the read started (must be 0)"
        )?;
        writeln!(
            f,
            "behind: reads older than a write another instance had answered (propagation, not an error)"
        )?;
        writeln!(
            f,
            "store err: store calls that failed, the request answered from the origin instead (fail-open)"
        )?;
        writeln!(
            f,
            "lag: from a write's answer to the start of the first read on another instance that answered that version or a later one"
        )?;
        writeln!(f)?;
        // Per kind: how many, for how long in all, connections killed.
        let mut kinds: BTreeMap<&str, (usize, Duration, u64)> = BTreeMap::new();
        for injected in &self.injected {
            let entry = kinds.entry(injected.fault.kind()).or_default();
            entry.0 += 1;
            entry.1 += injected.took;
            entry.2 += injected.killed;
        }
        let faults: Vec<String> = kinds
            .iter()
            .map(|(kind, (n, took, killed))| {
                let killed = match killed {
                    0 => String::new(),
                    k => format!(", {k} connections killed"),
                };
                format!("{n} x {kind} ({:.1} s{killed})", took.as_secs_f64())
            })
            .collect();
        writeln!(f, "faults: {}", faults.join("; "))?;
        match self.settled_in {
            Some(took) => writeln!(
                f,
                "after the writers stopped: every write served on every instance, every store in sync with nothing queued, in {:.2} s",
                took.as_secs_f64()
            )?,
            None => writeln!(
                f,
                "after the writers stopped: NOT SETTLED ({} writes not served on some instance, or a store out of sync or with invalidations queued)",
                self.unsettled
            )?,
        }
        writeln!(
            f,
            "final reads: {} of {} at the latest version",
            self.swept - self.unconverged,
            self.swept
        )?;
        writeln!(f)?;
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        write!(
            f,
            "{verdict}: {} stale reads on writing instances, {} failed requests",
            self.stale(),
            self.failed()
        )
    }
}
