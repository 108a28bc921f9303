//! Invalidation by tag and purge, and the races it must win: nothing that
//! started before an invalidation is served after it. Slow handlers block
//! on a [`Gate`] the test controls, so each interleaving is forced, not
//! hoped for.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use tagcache::{Cache, Tags};
use tower::ServiceExt;

use super::MakeCache;
use crate::support::apps::*;
use crate::support::deadline::{spawn, within};
use crate::support::harness::*;

pub async fn tags_from_response_extension_invalidate(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let counter = calls.clone();
    let app = Router::new().route(
        "/item",
        get(move || {
            let counter = counter.clone();
            async move { (Tags::new(["owner:7"]), format!("item {}", counter.bump())) }
        })
        .route_layer(cache.layer("item").tags(|_, _| ["items"])),
    );
    get_reply(&app, "/item").await;
    assert!(get_reply(&app, "/item").await.is_hit());
    cache.invalidate(["owner:7"]).await.unwrap();
    assert_eq!(get_reply(&app, "/item").await.text(), "item 2");
    cache.invalidate(["items"]).await.unwrap();
    let after = get_reply(&app, "/item").await;
    assert_eq!(after.text(), "item 3");
    assert!(
        after
            .cache_status()
            .contains("fwd=miss; stored; detail=invalidated"),
        "{}",
        after.cache_status()
    );
    cache.invalidate(["unrelated"]).await.unwrap();
    assert!(get_reply(&app, "/item").await.is_hit());
}

pub async fn invalidate_layer_reads_own_write(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = list_and_mutate(&cache, calls.clone(), StatusCode::CREATED);
    assert_eq!(get_reply(&app, "/list").await.text(), "list 1");
    assert!(get_reply(&app, "/list").await.is_hit());
    let created = send(
        &app,
        Request::post("/list/add").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        get_reply(&app, "/list").await.text(),
        "list 2",
        "write visible at once"
    );
    assert_eq!(cache.stats().route("add").invalidations, 1);

    // A failed mutation invalidates nothing.
    let cache = make.make().await;
    let calls = Counter::default();
    let app = list_and_mutate(&cache, calls.clone(), StatusCode::UNPROCESSABLE_ENTITY);
    get_reply(&app, "/list").await;
    let failed = send(
        &app,
        Request::post("/list/add").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(get_reply(&app, "/list").await.is_hit());
    assert_eq!(calls.get(), 1);
    assert_eq!(cache.stats().route("add").invalidations, 0);
}

pub async fn handler_invalidates_through_extractor(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let counter = calls.clone();
    let app = Router::new()
        .route(
            "/list",
            get(move || {
                let counter = counter.clone();
                async move { format!("list {}", counter.bump()) }
            })
            .route_layer(cache.layer("list").tags(|_, _| ["list"])),
        )
        .route(
            "/event",
            post(|cache: Cache| async move {
                cache.invalidate(["list"]).await.unwrap();
                "ok"
            })
            .layer(axum::Extension(cache.clone())),
        );
    get_reply(&app, "/list").await;
    send(&app, Request::post("/event").body(Body::empty()).unwrap()).await;
    assert_eq!(get_reply(&app, "/list").await.text(), "list 2");
}

pub async fn purge_reaches_every_variant(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l,
        calls.clone(),
        |n, _| {
            let mut response = plain(n);
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("accept-language"));
            response
        },
    );
    for lang in ["de", "fr"] {
        send(&app, get_with("/r", &[("accept-language", lang)])).await;
        send(&app, get_with("/r", &[("accept-language", lang)])).await;
    }
    let before = calls.get();
    cache.purge("/r").await.unwrap();
    for lang in ["de", "fr"] {
        let reply = send(&app, get_with("/r", &[("accept-language", lang)])).await;
        assert!(!reply.is_hit(), "{lang} variant must be purged");
    }
    assert_eq!(calls.get(), before + 2);
}

pub async fn fill_in_flight_during_invalidation_is_not_served(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    db.write(1);
    let app = gated(
        &cache,
        |l| l,
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let slow = spawn_get(&app, "/r");
    gate.arrived(1).await;
    db.write(2);
    cache.invalidate(["t"]).await.unwrap();
    gate.open();
    assert_eq!(
        slow.await.unwrap().text(),
        "v1 call1",
        "the slow request gets its own answer"
    );
    let after = get_reply(&app, "/r").await;
    assert_eq!(
        after.text(),
        "v2 call2",
        "nothing that started before the invalidation is served after it"
    );
    assert!(
        get_reply(&app, "/r").await.is_hit(),
        "the fresh fill is stored"
    );
}

pub async fn body_streaming_during_invalidation_is_not_served(make: &dyn MakeCache) {
    let cache = make.make().await;
    let db = Db::default();
    db.write(1);
    let gate = Gate::default();
    let calls = Counter::default();
    let (db2, gate2, calls2) = (db.clone(), gate.clone(), calls.clone());
    let app = Router::new().route(
        "/r",
        get(move || {
            let (db, gate, calls) = (db2.clone(), gate2.clone(), calls2.clone());
            async move {
                let n = calls.bump();
                let version = db.read();
                let head = Bytes::from(format!("v{version} "));
                let tail = Bytes::from(format!("call{n}"));
                let stream = futures_util::stream::unfold(0, move |step| {
                    let (gate, head, tail) = (gate.clone(), head.clone(), tail.clone());
                    async move {
                        match step {
                            0 => Some((Ok::<_, Infallible>(head), 1)),
                            1 => {
                                if n == 1 {
                                    gate.pass().await;
                                }
                                Some((Ok(tail), 2))
                            }
                            _ => None,
                        }
                    }
                });
                Body::from_stream(stream)
            }
        })
        .route_layer(cache.layer("r").tags(|_, _| ["t"])),
    );
    let response = within(
        "request GET /r never answered",
        app.clone().oneshot(crate::support::harness::get("/r")),
    )
    .await
    .unwrap();
    let mut body = response.into_body();
    let first = within("the body's first bytes never came", body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(
        first, "v1 ",
        "the first bytes reach the client before the body ends"
    );
    let reading = spawn("the rest of the body never came", async move {
        body.collect().await.unwrap().to_bytes()
    });
    gate.arrived(1).await;
    db.write(2);
    cache.invalidate(["t"]).await.unwrap();
    gate.open();
    assert_eq!(reading.await.unwrap(), "call1");
    assert_eq!(get_reply(&app, "/r").await.text(), "v2 call2");
}

pub async fn invalidation_before_fill_does_not_poison_later_fills(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = gated(
        &cache,
        |l| l,
        Db::default(),
        Gate::default(),
        calls.clone(),
        GateCalls::None,
    );
    cache.invalidate(["t"]).await.unwrap();
    get_reply(&app, "/r").await;
    assert!(get_reply(&app, "/r").await.is_hit());
    assert_eq!(calls.get(), 1);
}
