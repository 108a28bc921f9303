//! What the cache reports: its name in `Cache-Status`, per-route stats.

use tagcache::Cache;

use super::MakeCache;
use crate::support::apps::*;
use crate::support::harness::*;

pub async fn cache_name_is_configurable(make: &dyn MakeCache) {
    let base = make.make().await;
    let cache = Cache::builder()
        .shared_store(base.store().clone())
        .cache_name("edge-1")
        .build();
    let app = counted(&cache, |l| l, Counter::default(), |n, _| plain(n));
    assert_eq!(
        get_reply(&app, "/r").await.cache_status(),
        "edge-1; fwd=uri-miss; stored"
    );
    assert!(get_reply(&app, "/r")
        .await
        .cache_status()
        .starts_with("edge-1; hit"));
}

pub async fn stats_count_per_route(make: &dyn MakeCache) {
    let cache = make.make().await;
    let app = counted(&cache, |l| l, Counter::default(), |n, _| plain(n));
    get_reply(&app, "/r").await;
    for _ in 0..3 {
        get_reply(&app, "/r").await;
    }
    send(&app, get_with("/r", &[("cookie", "a=b")])).await;
    let stats = cache.stats().route("r");
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits, 3);
    assert_eq!(stats.bypasses, 1);
    assert!((stats.hit_ratio - 0.75).abs() < 1e-9);
}
