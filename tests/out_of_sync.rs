//! `Cache::hold_out_of_sync`: while an invalidation source outside the
//! store may have missed invalidations, every lookup misses and nothing is
//! stored; once the holds are gone, lookups trust the stamps again.

mod support;

use http::StatusCode;
use tagcache::Cache;

use support::apps::{counted, plain};
use support::deadline::backstop;
use support::harness::{get_reply, Counter};

#[tokio::test]
async fn lookups_miss_and_fills_are_not_stored_while_held() {
    backstop(async {
        let cache = Cache::default();
        let origin = Counter::default();
        let app = counted(&cache, |l| l, origin.clone(), |n, _| plain(n));

        get_reply(&app, "/r").await;
        assert!(get_reply(&app, "/r").await.is_hit());
        assert_eq!(origin.get(), 1);

        let first = cache.hold_out_of_sync();
        let second = cache.hold_out_of_sync();
        assert!(cache.is_out_of_sync());
        for round in 2..=3 {
            let reply = get_reply(&app, "/r").await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(!reply.is_hit(), "held: {:?}", reply.cache_status());
            assert!(
                !reply.cache_status().contains("stored"),
                "a fill while held is not stored: {:?}",
                reply.cache_status()
            );
            assert_eq!(reply.text(), format!("body {round}"));
            assert_eq!(origin.get(), round);
        }

        // Holds add up: one left still holds.
        drop(first);
        assert!(cache.is_out_of_sync());
        assert!(!get_reply(&app, "/r").await.is_hit());
        assert_eq!(origin.get(), 4);

        // The hold alone invalidates nothing: the source purges what it
        // may have missed before dropping it. Here nothing was missed, so
        // the entry filled before the hold is served again.
        drop(second);
        assert!(!cache.is_out_of_sync());
        let reply = get_reply(&app, "/r").await;
        assert!(reply.is_hit(), "{:?}", reply.cache_status());
        assert_eq!(reply.text(), "body 1");
        assert_eq!(origin.get(), 4);
    })
    .await;
}
