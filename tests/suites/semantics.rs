//! HTTP semantics every store must give: what is stored, what is never
//! shared, how hits are answered.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tagcache::{Cache, Tags};

use super::MakeCache;
use crate::support::harness::*;

/// A route whose handler counts calls and answers `body` with `headers`.
fn counted(
    cache: &Cache,
    layer: impl FnOnce(tagcache::CacheLayer) -> tagcache::CacheLayer,
    counter: Counter,
    respond: impl Fn(usize, &http::request::Parts) -> Response + Clone + Send + Sync + 'static,
) -> Router {
    let handler = move |request: Request<Body>| {
        let counter = counter.clone();
        let respond = respond.clone();
        async move {
            let n = counter.bump();
            let (parts, _) = request.into_parts();
            respond(n, &parts)
        }
    };
    Router::new().route(
        "/r",
        get(handler.clone())
            .head(handler.clone())
            .post(handler)
            .route_layer(layer(cache.layer("r"))),
    )
}

fn plain(n: usize) -> Response {
    format!("body {n}").into_response()
}

pub async fn miss_then_hit_is_byte_identical(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.ttl(Duration::from_secs(300)),
        calls.clone(),
        |n, _| {
            let mut response = plain(n);
            let headers = response.headers_mut();
            headers.append("x-multi", HeaderValue::from_static("one"));
            headers.append("x-multi", HeaderValue::from_static("two"));
            headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
            response
        },
    );
    let first = get_reply(&app, "/r").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.cache_status(), "tagcache; fwd=uri-miss; stored");
    assert!(first.headers.get(header::AGE).is_none());
    let second = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 1, "second request must be a hit");
    assert!(
        second.cache_status().starts_with("tagcache; hit; ttl="),
        "{}",
        second.cache_status()
    );
    let ttl = second.ttl();
    assert!((290..=300).contains(&ttl), "ttl {ttl}");
    assert_eq!(second.headers.get(header::AGE).unwrap(), "0");
    assert_eq!(second.body, first.body);
    assert_eq!(second.status, first.status);
    // Every origin header comes back, repeats and order included. The hit
    // also states its Content-Length, which the server adds to the miss on
    // the wire anyway.
    assert_eq!(
        second.headers.get(header::CONTENT_LENGTH).unwrap(),
        second.body.len().to_string().as_str()
    );
    let strip = |reply: &Reply| {
        reply
            .headers
            .iter()
            .filter(|(n, _)| {
                *n != "cache-status" && *n != header::AGE && *n != header::CONTENT_LENGTH
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first), strip(&second));
    let multi: Vec<_> = second.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
}

pub async fn only_get_and_head_are_cached(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    for _ in 0..2 {
        let reply = send(&app, Request::post("/r").body(Body::empty()).unwrap()).await;
        assert_eq!(reply.cache_status(), "tagcache; fwd=method");
    }
    assert_eq!(calls.get(), 2, "POST is never answered from the cache");
    // A POST must not have filled the GET entry either.
    let reply = get_reply(&app, "/r").await;
    assert_eq!(reply.text(), "body 3");
    assert_eq!(calls.get(), 3);
}

pub async fn head_is_answered_from_stored_get(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    // No explicit Content-Length: the HEAD hit must still announce the
    // stored body's length, not the empty body's.
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    // A HEAD miss goes to the origin and stores nothing.
    let head_miss = send(&app, Request::head("/r").body(Body::empty()).unwrap()).await;
    assert!(
        head_miss.cache_status().contains("detail=head"),
        "{}",
        head_miss.cache_status()
    );
    let filled = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 2);
    let head = send(&app, Request::head("/r").body(Body::empty()).unwrap()).await;
    assert_eq!(calls.get(), 2, "HEAD is a hit on the stored GET");
    assert!(head.is_hit());
    assert!(head.body.is_empty());
    assert_eq!(head.headers.get(header::CONTENT_LENGTH).unwrap(), "6");
    assert_eq!(filled.text(), "body 2");
}

pub async fn statuses_are_configurable(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let not_found = |_: usize, _: &http::request::Parts| StatusCode::NOT_FOUND.into_response();
    let app = counted(&cache, |l| l, calls.clone(), not_found);
    get_reply(&app, "/r").await;
    let second = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 2, "404 is not stored by default");
    assert_eq!(
        second.cache_status(),
        "tagcache; fwd=uri-miss; detail=status"
    );

    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.statuses([StatusCode::OK, StatusCode::NOT_FOUND]),
        calls.clone(),
        not_found,
    );
    get_reply(&app, "/r").await;
    let second = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 1, "404 stored when the route asks for it");
    assert_eq!(second.status, StatusCode::NOT_FOUND);
}

pub async fn unshareable_responses_are_never_stored(make: &dyn MakeCache) {
    let cases: [(&str, &str, &str); 5] = [
        ("cache-control", "no-store", "no-store"),
        ("set-cookie", "session=abc", "set-cookie"),
        ("vary", "*", "vary-any"),
        ("cache-control", "private, max-age=60", "private"),
        ("cache-control", "no-cache", "no-cache"),
    ];
    for (name, value, reason) in cases {
        let cache = make.make().await;
        let calls = Counter::default();
        let app = counted(
            &cache,
            |l| l,
            calls.clone(),
            move |n, _| {
                let mut response = plain(n);
                response.headers_mut().insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
                response
            },
        );
        let first = get_reply(&app, "/r").await;
        let second = get_reply(&app, "/r").await;
        assert_eq!(calls.get(), 2, "{name}: {value} must not be stored");
        assert_eq!(first.text(), "body 1");
        assert_eq!(
            second.text(),
            "body 2",
            "{name}: {value} served to another request"
        );
        assert_eq!(
            second.cache_status(),
            format!("tagcache; fwd=uri-miss; detail={reason}")
        );
    }
}

/// Identity taken from a bearer token, as an app would after verifying it.
fn bearer(parts: &http::request::Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// A handler that answers according to the credentials it sees.
fn by_identity(n: usize, parts: &http::request::Parts) -> Response {
    match bearer(parts).as_deref() {
        None => (StatusCode::UNAUTHORIZED, format!("anonymous {n}")).into_response(),
        Some("alice") => format!("alice's data {n}").into_response(),
        Some(_) => (StatusCode::FORBIDDEN, format!("forbidden {n}")).into_response(),
    }
}

pub async fn credentials_bypass_unless_per_user(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    // Fill the shared entry anonymously.
    assert_eq!(get_reply(&app, "/r").await.text(), "body 1");
    let with_auth = send(&app, get_with("/r", &[("authorization", "Bearer alice")])).await;
    assert_eq!(
        with_auth.cache_status(),
        "tagcache; fwd=bypass; detail=authorization"
    );
    assert_eq!(
        with_auth.text(),
        "body 2",
        "a credentialed request must not get the shared entry"
    );
    let with_cookie = send(&app, get_with("/r", &[("cookie", "sid=1")])).await;
    assert_eq!(
        with_cookie.cache_status(),
        "tagcache; fwd=bypass; detail=cookie"
    );
    assert_eq!(with_cookie.text(), "body 3");
    // ...and neither filled the shared entry with its own response.
    assert_eq!(get_reply(&app, "/r").await.text(), "body 1");
}

pub async fn per_user_never_crosses_identities(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| {
            l.per_user(bearer).statuses([
                StatusCode::OK,
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
            ])
        },
        calls.clone(),
        by_identity,
    );
    // Anonymous first: no identity, so bypass, and the 401 is stored nowhere.
    let anonymous = get_reply(&app, "/r").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.cache_status(),
        "tagcache; fwd=bypass; detail=no-identity"
    );
    let alice = send(&app, get_with("/r", &[("authorization", "Bearer alice")])).await;
    assert_eq!(
        alice.status,
        StatusCode::OK,
        "alice must not get the anonymous 401"
    );
    assert_eq!(alice.text(), "alice's data 2");
    let bob = send(&app, get_with("/r", &[("authorization", "Bearer bob")])).await;
    assert_eq!(
        bob.status,
        StatusCode::FORBIDDEN,
        "bob must not get alice's data"
    );
    let alice_again = send(&app, get_with("/r", &[("authorization", "Bearer alice")])).await;
    assert!(alice_again.is_hit());
    assert_eq!(alice_again.text(), "alice's data 2");
    let bob_again = send(&app, get_with("/r", &[("authorization", "Bearer bob")])).await;
    assert_eq!(bob_again.status, StatusCode::FORBIDDEN);
    assert_eq!(
        bob_again.text(),
        "forbidden 3",
        "bob's stored 403 is his alone"
    );
    let anonymous_again = get_reply(&app, "/r").await;
    assert_eq!(
        anonymous_again.status,
        StatusCode::UNAUTHORIZED,
        "anonymous must never get alice's 200"
    );
    assert_eq!(calls.get(), 4);
}

pub async fn private_is_stored_only_per_user(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.per_user(bearer),
        calls.clone(),
        |n, parts| {
            let mut response = format!("{} {n}", bearer(parts).unwrap_or_default()).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=60"),
            );
            response
        },
    );
    let alice = send(&app, get_with("/r", &[("authorization", "Bearer alice")])).await;
    let again = send(&app, get_with("/r", &[("authorization", "Bearer alice")])).await;
    assert_eq!(calls.get(), 1);
    assert_eq!(again.body, alice.body);
    let carol = send(&app, get_with("/r", &[("authorization", "Bearer carol")])).await;
    assert_eq!(carol.text(), "carol 2");
}

pub async fn vary_selects_variants(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l,
        calls.clone(),
        |n, parts| {
            let encoding = parts
                .headers
                .get(header::ACCEPT_ENCODING)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_else(|| "identity".into());
            let language = parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let mut response = format!("{encoding}/{language} {n}").into_response();
            response.headers_mut().insert(
                header::VARY,
                HeaderValue::from_static("accept-encoding, accept-language"),
            );
            response
        },
    );
    let variants = [
        vec![("accept-encoding", "gzip")],
        vec![("accept-encoding", "br")],
        vec![],
        vec![("accept-encoding", "gzip"), ("accept-language", "de")],
        vec![("accept-encoding", "gzip"), ("accept-language", "fr")],
    ];
    let expected = |headers: &[(&str, &str)]| {
        let find = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        format!(
            "{}/{} ",
            find("accept-encoding").unwrap_or("identity"),
            find("accept-language").unwrap_or("")
        )
    };
    // Each variant always gets its own body, whatever is stored meanwhile.
    for _ in 0..3 {
        for headers in &variants {
            let reply = send(&app, get_with("/r", headers)).await;
            assert!(
                reply.text().starts_with(&expected(headers)),
                "variant {headers:?} got {:?}",
                reply.text()
            );
        }
    }
    // Once the route has seen the response's Vary, every variant is stored.
    let origin_calls = calls.get();
    assert!(
        origin_calls <= variants.len() + 1,
        "variants are stored: {origin_calls} calls"
    );
    for headers in &variants {
        let reply = send(&app, get_with("/r", headers)).await;
        assert!(reply.is_hit(), "variant {headers:?} should hit");
        assert!(reply.text().starts_with(&expected(headers)));
    }
    assert_eq!(calls.get(), origin_calls);
}

pub async fn if_none_match_gets_304_from_cache(make: &dyn MakeCache) {
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
                .insert(header::ETAG, HeaderValue::from_static("\"abc\""));
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=60"),
            );
            response
        },
    );
    get_reply(&app, "/r").await;
    let not_modified = send(&app, get_with("/r", &[("if-none-match", "W/\"abc\"")])).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.headers.get(header::ETAG).unwrap(), "\"abc\"");
    assert_eq!(
        not_modified.headers.get(header::CACHE_CONTROL).unwrap(),
        "max-age=60"
    );
    assert!(not_modified.is_hit());
    let other = send(&app, get_with("/r", &[("if-none-match", "\"zzz\"")])).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.text(), "body 1");
    assert_eq!(
        calls.get(),
        1,
        "conditional requests answered without the handler"
    );
}

pub async fn response_max_age_caps_route_ttl(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.ttl(Duration::from_secs(300)),
        calls.clone(),
        |n, _| {
            let mut response = plain(n);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=600, s-maxage=20"),
            );
            response
        },
    );
    get_reply(&app, "/r").await;
    let hit = get_reply(&app, "/r").await;
    let ttl = hit.ttl();
    assert!(
        (10..=20).contains(&ttl),
        "s-maxage caps the TTL: {}",
        hit.cache_status()
    );

    let cache = make.make().await;
    let app = counted(
        &cache,
        |l| l.ttl(Duration::from_secs(300)).respect_response_ttl(false),
        Counter::default(),
        |n, _| {
            let mut response = plain(n);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=20"),
            );
            response
        },
    );
    get_reply(&app, "/r").await;
    let hit = get_reply(&app, "/r").await;
    let ttl = hit.ttl();
    assert!(
        ttl > 200,
        "route TTL kept when the option is off: {}",
        hit.cache_status()
    );
}

pub async fn client_no_cache_does_not_force_origin_by_default(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    get_reply(&app, "/r").await;
    let forced = send(
        &app,
        get_with(
            "/r",
            &[("cache-control", "no-cache"), ("pragma", "no-cache")],
        ),
    )
    .await;
    assert!(forced.is_hit());
    assert_eq!(calls.get(), 1);

    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.honor_request_no_cache(true),
        calls.clone(),
        |n, _| plain(n),
    );
    get_reply(&app, "/r").await;
    let forced = send(&app, get_with("/r", &[("cache-control", "no-cache")])).await;
    assert_eq!(forced.text(), "body 2");
    assert!(
        forced.cache_status().starts_with("tagcache; fwd=request"),
        "{}",
        forced.cache_status()
    );
    // The fresh response replaced the entry.
    assert_eq!(get_reply(&app, "/r").await.text(), "body 2");
    assert_eq!(calls.get(), 2);
}

pub async fn large_bodies_pass_through_unstored(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let big = Bytes::from(vec![b'x'; 10_000]);
    let body = big.clone();
    let app = counted(
        &cache,
        |l| l.max_body_bytes(1024),
        calls.clone(),
        move |_, _| body.clone().into_response(),
    );
    for _ in 0..2 {
        let reply = get_reply(&app, "/r").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, big);
        assert!(
            reply.cache_status().contains("detail=too-large"),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(calls.get(), 2);
}

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

/// The list route and the mutation route of a tiny app.
fn list_and_mutate(cache: &Cache, calls: Counter, status: StatusCode) -> Router {
    let counter = calls.clone();
    Router::new()
        .route(
            "/list",
            get(move || {
                let counter = counter.clone();
                async move { format!("list {}", counter.bump()) }
            })
            .route_layer(cache.layer("list").tags(|_, _| ["list"])),
        )
        .route(
            "/list/add",
            post(move || async move { (status, "done") })
                .route_layer(cache.invalidate_layer("add").tags(|_, _| ["list"])),
        )
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

pub async fn key_function_controls_bypass_and_sharing(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    // Key on the path only: query strings share an entry; `?nocache` bypasses.
    let app = counted(
        &cache,
        |l| {
            l.key(|parts| {
                (parts.uri.query() != Some("nocache")).then(|| parts.uri.path().to_owned())
            })
        },
        calls.clone(),
        |n, _| plain(n),
    );
    get_reply(&app, "/r?a=1").await;
    assert!(get_reply(&app, "/r?a=2").await.is_hit());
    let bypass = get_reply(&app, "/r?nocache").await;
    assert_eq!(bypass.cache_status(), "tagcache; fwd=bypass; detail=no-key");

    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.max_key_bytes(64),
        calls.clone(),
        |n, _| plain(n),
    );
    let long = format!("/r?{}", "q".repeat(10_000));
    let reply = get_reply(&app, &long).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.cache_status(),
        "tagcache; fwd=bypass; detail=key-too-long"
    );
}

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

/// A body of unknown length, in `chunks` chunks of `size` bytes.
fn chunked_body(chunks: usize, size: usize) -> Body {
    let stream =
        futures_util::stream::iter((0..chunks).map(move |i| {
            Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'a' + i as u8; size]))
        }));
    Body::from_stream(stream)
}

pub async fn streaming_bodies_are_stored_only_within_the_limit(make: &dyn MakeCache) {
    // Grows past the limit while streaming: passed through whole, not stored.
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.max_body_bytes(2500),
        calls.clone(),
        |_, _| chunked_body(3, 1000).into_response(),
    );
    let expected: Vec<u8> = (0..3u8).flat_map(|i| vec![b'a' + i; 1000]).collect();
    for _ in 0..2 {
        let reply = get_reply(&app, "/r").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body, expected,
            "the client gets every byte, unchanged"
        );
        assert!(
            !reply.cache_status().contains("stored"),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(
        calls.get(),
        2,
        "a body that outgrew the limit is not stored"
    );
    assert_eq!(cache.stats().route("r").not_stored, 2);

    // Within the limit: stored, and the hit is the same bytes.
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.max_body_bytes(2500),
        calls.clone(),
        |_, _| chunked_body(2, 1000).into_response(),
    );
    let first = get_reply(&app, "/r").await;
    let second = get_reply(&app, "/r").await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert_eq!(second.body, first.body);
    assert_eq!(second.body.len(), 2000);
    assert_eq!(calls.get(), 1);
}

pub async fn declared_vary_headers_never_mix_variants(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| {
            l.vary([
                HeaderName::from_static("x-a"),
                HeaderName::from_static("x-b"),
            ])
        },
        calls.clone(),
        |_, parts| {
            let lines = |name: &str| {
                parts
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
                    .join("+")
            };
            format!("a={} b={}", lines("x-a"), lines("x-b")).into_response()
        },
    );
    // The same line values, split differently between the two headers.
    send(
        &app,
        get_with("/r", &[("x-a", "1"), ("x-a", "2"), ("x-b", "3")]),
    )
    .await;
    let other = send(
        &app,
        get_with("/r", &[("x-a", "1"), ("x-b", "2"), ("x-b", "3")]),
    )
    .await;
    assert_eq!(other.text(), "a=1 b=2+3");
    let again = send(
        &app,
        get_with("/r", &[("x-a", "1"), ("x-a", "2"), ("x-b", "3")]),
    )
    .await;
    assert_eq!(again.text(), "a=1+2 b=3");
    assert!(again.is_hit());
}

pub async fn default_key_never_mixes_hosts(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l,
        calls.clone(),
        |_, parts| {
            let host = parts
                .headers
                .get(header::HOST)
                .map(|h| h.to_str().unwrap().to_owned());
            format!("site {}", host.unwrap_or_default()).into_response()
        },
    );
    let a = send(&app, get_with("/r", &[("host", "a.example")])).await;
    let b = send(&app, get_with("/r", &[("host", "b.example")])).await;
    assert_eq!(a.text(), "site a.example");
    assert_eq!(b.text(), "site b.example");
    assert!(send(&app, get_with("/r", &[("host", "a.example")]))
        .await
        .is_hit());
    assert_eq!(calls.get(), 2);
}

pub async fn extreme_lifetimes_do_not_overflow(make: &dyn MakeCache) {
    // A response granting itself an absurd stale window must not panic the
    // store (which derives an expiry from it).
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l,
        calls.clone(),
        |n, _| {
            let mut response = plain(n);
            response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=30, stale-while-revalidate=18446744073709551615, stale-if-error=99999999999999999999"),
        );
            response
        },
    );
    assert_eq!(get_reply(&app, "/r").await.status, StatusCode::OK);
    assert!(get_reply(&app, "/r").await.is_hit());

    // A route that keeps entries "until invalidated".
    let cache = make.make().await;
    let app = counted(
        &cache,
        |l| l.ttl(Duration::MAX).tags(|_, _| ["t"]),
        Counter::default(),
        |n, _| plain(n),
    );
    get_reply(&app, "/r").await;
    let hit = get_reply(&app, "/r").await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    let ttl = hit.ttl();
    assert!(ttl > 0, "{}", hit.cache_status());
    cache.invalidate(["t"]).await.unwrap();
    assert_eq!(get_reply(&app, "/r").await.text(), "body 2");
}

pub async fn no_304_for_stored_non_2xx(make: &dyn MakeCache) {
    let cache = make.make().await;
    let app = counted(
        &cache,
        |l| l.statuses([StatusCode::OK, StatusCode::NOT_FOUND]),
        Counter::default(),
        |_, _| {
            let mut response = (StatusCode::NOT_FOUND, "gone").into_response();
            response
                .headers_mut()
                .insert(header::ETAG, HeaderValue::from_static("\"x\""));
            response
        },
    );
    get_reply(&app, "/r").await;
    let reply = send(&app, get_with("/r", &[("if-none-match", "\"x\"")])).await;
    assert_eq!(
        reply.status,
        StatusCode::NOT_FOUND,
        "preconditions apply only to 2xx"
    );
    assert_eq!(reply.text(), "gone");
}

pub async fn request_no_store_is_answered_but_not_stored(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    let first = send(&app, get_with("/r", &[("cache-control", "no-store")])).await;
    assert_eq!(first.text(), "body 1");
    assert!(
        first.cache_status().contains("detail=request-no-store"),
        "{}",
        first.cache_status()
    );
    assert_eq!(
        get_reply(&app, "/r").await.text(),
        "body 2",
        "nothing was stored"
    );
    // A stored entry may still answer it.
    let hit = send(&app, get_with("/r", &[("cache-control", "no-store")])).await;
    assert!(hit.is_hit());
    assert_eq!(calls.get(), 2);
}
