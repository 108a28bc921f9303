//! The default key reads the query in normal form: spellings of one query
//! share one entry, parameters a route ignores never select another
//! response, and paths are never rewritten.

use std::time::Duration;

use axum::extract::{Path, RawQuery};
use axum::routing::get;
use axum::Router;
use tagcache::{Cache, CacheLayer};

use super::MakeCache;
use crate::support::harness::*;

/// `/q` and `/items/{id}` answer `call<n> <what they were asked>`.
fn routes(cache: &Cache, calls: Counter, layer: impl Fn(CacheLayer) -> CacheLayer) -> Router {
    let (list_calls, item_calls) = (calls.clone(), calls);
    let list = move |RawQuery(query): RawQuery| {
        let calls = list_calls.clone();
        async move { format!("call{} {}", calls.bump(), query.unwrap_or_default()) }
    };
    let item = move |Path(id): Path<String>| {
        let calls = item_calls.clone();
        async move { format!("call{} item {id}", calls.bump()) }
    };
    let ttl = Duration::from_secs(300);
    Router::new()
        .route(
            "/q",
            get(list).route_layer(layer(cache.layer("q").ttl(ttl))),
        )
        .route(
            "/items/{id}",
            get(item).route_layer(cache.layer("items").ttl(ttl)),
        )
}

pub async fn query_spellings_share_one_entry(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = routes(&cache, calls.clone(), |l| l);
    let first = get_reply(&app, "/q?status=active&page=2").await;
    let spellings = [
        "/q?page=2&status=active",
        "/q?status=active&page=2&",
        "/q?&status=active&page=2",
        "/q?status=active&&page=2",
        "/q?%73tatus=%61ctive&page=%32",
        "/q?%73%74%61%74%75%73=active&%70age=2",
    ];
    for spelling in spellings {
        let reply = get_reply(&app, spelling).await;
        assert!(reply.is_hit(), "{spelling}: {}", reply.cache_status());
        assert_eq!(reply.body, first.body, "{spelling}");
    }
    assert_eq!(calls.get(), 1, "one origin call for every spelling");
    // A different query is a different resource.
    let other = get_reply(&app, "/q?status=done&page=2").await;
    assert!(!other.is_hit());
    assert_eq!(calls.get(), 2);
    // Repeated names keep their order: another order is another list.
    get_reply(&app, "/q?tag=a&tag=b").await;
    let swapped = get_reply(&app, "/q?tag=b&tag=a").await;
    assert!(!swapped.is_hit(), "{}", swapped.cache_status());
    assert_eq!(calls.get(), 4);
    // Purging any spelling reaches the entry.
    cache.purge("/q?status=active&&page=%32").await.unwrap();
    let purged = get_reply(&app, "/q?page=2&status=active").await;
    assert!(!purged.is_hit(), "{}", purged.cache_status());
    assert_eq!(calls.get(), 5);
    // An empty query is no query: `/q?` and `/q?&&` are `/q`.
    let bare = get_reply(&app, "/q").await;
    for spelling in ["/q?", "/q?&&"] {
        let reply = get_reply(&app, spelling).await;
        assert!(reply.is_hit(), "{spelling}: {}", reply.cache_status());
        assert_eq!(reply.body, bare.body, "{spelling}");
    }
    assert_eq!(calls.get(), 6);
}

pub async fn ignored_query_parameters_never_select_a_response(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = routes(&cache, calls.clone(), |l| l.query_keys(["status"]));
    let first = get_reply(&app, "/q?status=a&utm_source=mail").await;
    assert_eq!(first.text(), "call1 status=a&utm_source=mail");
    for uri in [
        "/q?utm_source=ads&status=a",
        "/q?status=a",
        "/q?%73tatus=a&x=1",
    ] {
        let reply = get_reply(&app, uri).await;
        assert!(reply.is_hit(), "{uri}: {}", reply.cache_status());
        assert_eq!(reply.body, first.body, "{uri}");
    }
    let other = get_reply(&app, "/q?status=b&utm_source=mail").await;
    assert_eq!(other.text(), "call2 status=b&utm_source=mail");

    let cache = make.make().await;
    let calls = Counter::default();
    let app = routes(&cache, calls.clone(), |l| l.ignore_query());
    get_reply(&app, "/q?a=1").await;
    for uri in ["/q", "/q?", "/q?b=2"] {
        assert!(get_reply(&app, uri).await.is_hit(), "{uri}");
    }
    assert_eq!(calls.get(), 1);
}

pub async fn paths_are_never_normalized(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = routes(&cache, calls.clone(), |l| l);
    // The router decodes `%61` to `a` for the handler, but the key keeps the
    // path as sent: normalizing it could merge paths a router tells apart.
    let plain = get_reply(&app, "/items/a").await;
    let escaped = get_reply(&app, "/items/%61").await;
    assert_eq!(plain.text(), "call1 item a");
    assert_eq!(escaped.text(), "call2 item a");
    assert!(!escaped.is_hit());
    let slash = get_reply(&app, "/items/a%2Fb").await;
    assert_eq!(slash.text(), "call3 item a/b");
    assert!(get_reply(&app, "/items/a%2Fb").await.is_hit());
    assert!(get_reply(&app, "/items/a").await.is_hit());
    assert_eq!(calls.get(), 3);
}
