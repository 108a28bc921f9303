//! Keys and identity: what is never shared between users or hosts, and
//! what the key function decides.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;

use super::MakeCache;
use crate::support::apps::*;
use crate::support::harness::*;

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
