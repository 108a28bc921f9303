//! The consistency soak (`examples/soak`) in its short mode: three
//! instances over one Redis, every kind of fault once. It asserts on counts
//! only, never on timings: no stale read on a writing instance, no failed
//! request, every write served everywhere once the faults are over, and
//! enough reads and hits on each instance for that to mean something.
#![cfg(feature = "redis")]

mod support;

#[path = "../examples/soak/soak.rs"]
#[allow(dead_code)]
mod soak;

use support::deadline::backstop;
use support::redis_server::redis_available;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_soak_passes_through_every_fault() {
    if !redis_available(false) {
        return;
    }
    let report = backstop(soak::run(&soak::Config::short()))
        .await
        .unwrap_or_else(|e| panic!("the soak could not run: {e}"));
    println!("{report}");

    let kinds: std::collections::BTreeSet<_> =
        report.injected.iter().map(|i| i.fault.kind()).collect();
    assert_eq!(kinds.len(), soak::schedule::KINDS, "every kind of fault");
    assert_eq!(report.stale(), 0, "stale reads on a writing instance");
    assert_eq!(report.failed(), 0, "failed requests");
    assert!(
        report.settled_in.is_some(),
        "{} writes never reached some instance",
        report.unsettled
    );
    assert_eq!(report.unconverged, 0, "final reads behind the latest write");
    for (i, row) in report.rows.iter().enumerate() {
        assert!(row.reads > 0 && row.writes > 0, "instance {i} did nothing");
        assert!(row.hits > 0, "instance {i} never hit");
    }
    assert!(report.passed());
}
