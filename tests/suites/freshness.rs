//! How long an entry stays fresh: response lifetimes against the route's
//! TTL, client `no-cache`, lifetimes at the edge of the representable.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};

use super::MakeCache;
use crate::support::apps::*;
use crate::support::harness::*;

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

/// With `respect_response_ttl` (the default), a past or invalid `Expires`
/// and an upstream `Age` shorten the route's TTL as `max-age` does; with
/// it off, the route's TTL stands.
pub async fn expires_and_age_shorten_the_route_ttl(make: &dyn MakeCache) {
    let with = |pairs: &'static [(&'static str, &'static str)]| {
        move |n: usize, _: &http::request::Parts| {
            let mut response = plain(n);
            for (name, value) in pairs {
                response
                    .headers_mut()
                    .append(*name, HeaderValue::from_static(value));
            }
            response
        }
    };
    let past: [&'static [(&str, &str)]; 3] = [
        &[("expires", "0")],
        &[("expires", "not a date")],
        &[("expires", "Thu, 01 Jan 1970 00:00:01 GMT")],
    ];
    for pairs in past {
        let cache = make.make().await;
        let calls = Counter::default();
        let expires = pairs[0].1;
        let app = counted(&cache, |l| l, calls.clone(), with(pairs));
        let first = get_reply(&app, "/r").await;
        assert!(
            first.cache_status().contains("detail=zero-ttl"),
            "{expires}: {}",
            first.cache_status()
        );
        get_reply(&app, "/r").await;
        assert_eq!(calls.get(), 2, "{expires}");
    }

    let cache = make.make().await;
    let calls = Counter::default();
    let aged = with(&[("age", "100")]);
    let app = counted(
        &cache,
        |l| l.ttl(Duration::from_secs(300)),
        calls.clone(),
        aged,
    );
    get_reply(&app, "/r").await;
    let hit = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 1);
    assert!((198..=200).contains(&hit.ttl()), "{}", hit.cache_status());
    let age: u64 = hit.headers[header::AGE].to_str().unwrap().parse().unwrap();
    assert!((100..=102).contains(&age), "Age {age}");

    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.ttl(Duration::from_secs(300)).respect_response_ttl(false),
        calls.clone(),
        with(&[("age", "100"), ("expires", "0")]),
    );
    get_reply(&app, "/r").await;
    let hit = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 1);
    assert!(hit.ttl() > 290, "{}", hit.cache_status());
}
