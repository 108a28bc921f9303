//! `Freshness::Origin`: the layer as a shared cache following RFC 9111, in
//! front of a scripted origin that counts its calls and records the
//! requests it received. Staleness comes from the responses' own `Age` and
//! `Date` (an entry can be born stale), never from waiting.
//!
//! Each case names the rule it covers; the table in `src/layer/mod.rs`
//! maps RFC sections to these names.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, Method, StatusCode};
use tagcache::CacheLayer;

use super::MakeCache;
use crate::support::harness::{get, get_with, send, until_waiting, Gate};
use crate::support::scripted::*;

// §3: storing

pub async fn a_response_without_freshness_is_not_stored(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![], "plain")]);
    let (first, second) = get_twice(&app, &cache, "/plain").await;
    assert_eq!(origin.calls(), 2);
    assert!(
        first.cache_status().contains("detail=no-freshness"),
        "{}",
        first.cache_status()
    );
    assert_eq!(second.text(), "plain");
}

pub async fn explicit_freshness_is_stored_whatever_the_route_ttl(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l.ttl(Duration::from_secs(5)));
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "long")]);
    let (_, second) = get_twice(&app, &cache, "/long").await;
    assert_eq!(origin.calls(), 1);
    assert!(second.is_hit());
    // The origin's lifetime, not the route's 5 s.
    assert!(second.ttl() > 590, "{}", second.cache_status());
}

pub async fn what_must_not_be_shared_is_not_stored(make: &dyn MakeCache) {
    for (cc_or_vary, reason) in [
        (h("cache-control", "no-store, max-age=60"), "no-store"),
        (h("cache-control", "private, max-age=60"), "private"),
        (h("vary", "*"), "vary-any"),
    ] {
        let cache = make.make().await;
        let (app, origin) = origin_app(&cache, |l| l);
        let mut headers = vec![cc_or_vary];
        if reason == "vary-any" {
            headers.push(h("cache-control", "max-age=60"));
        }
        origin.answers([ok(headers, "x")]);
        let (first, _) = get_twice(&app, &cache, "/x").await;
        assert_eq!(origin.calls(), 2, "{reason}");
        let status = first.cache_status();
        assert!(
            status.contains(&format!("detail={reason}")),
            "{reason}: {status}"
        );
    }
}

pub async fn a_heuristically_cacheable_response_is_stored_for_a_share_of_its_age(
    make: &dyn MakeCache,
) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    // Modified 1000 s before its Date: fresh for 10 % of that.
    origin.answers([ok(
        vec![h("last-modified", date(-1000)), h("date", date(0))],
        "modified",
    )]);
    let (_, second) = get_twice(&app, &cache, "/modified").await;
    assert_eq!(origin.calls(), 1);
    assert!(second.is_hit());
    let ttl = second.ttl();
    assert!((98..=100).contains(&ttl), "{}", second.cache_status());
    // A 404 is heuristically cacheable too; a 302 is not.
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([(404, vec![h("last-modified", date(-1000))], "gone")]);
    let (_, second) = get_twice(&app, &cache, "/404").await;
    assert_eq!((origin.calls(), second.status), (1, StatusCode::NOT_FOUND));
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([(302, vec![h("last-modified", date(-1000))], "")]);
    get_twice(&app, &cache, "/302").await;
    assert_eq!(origin.calls(), 2);
}

pub async fn a_public_response_without_a_lifetime_gets_the_route_ttl(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l.ttl(Duration::from_secs(120)));
    origin.answers([ok(vec![h("cache-control", "public")], "pub")]);
    let (_, second) = get_twice(&app, &cache, "/pub").await;
    assert_eq!(origin.calls(), 1);
    assert!(
        (118..=120).contains(&second.ttl()),
        "{}",
        second.cache_status()
    );
}

/// §3.5: with `Authorization`, stored only when the origin says it may
/// be shared, and even then only ever served to the same identity.
pub async fn authorized_requests_are_stored_only_with_permission_and_per_identity(
    make: &dyn MakeCache,
) {
    let cache = make.make().await;
    let per_user = |l: CacheLayer| {
        l.per_user(|req| {
            let auth = req.headers.get("authorization")?.to_str().ok()?;
            Some(auth.to_owned())
        })
    };
    let (app, origin) = origin_app(&cache, per_user);
    let as_user = |user: &str| get_with("/me", &[("authorization", user)]);
    origin.answers([ok(vec![h("cache-control", "max-age=60")], "mine")]);
    ask(&app, &cache, as_user("a")).await;
    let second = ask(&app, &cache, as_user("a")).await;
    assert_eq!(origin.calls(), 2);
    assert!(second.cache_status().contains("detail=authorization"));

    let (app, origin) = origin_app(&cache, per_user);
    origin.answers([ok(vec![h("cache-control", "public, max-age=60")], "shared")]);
    ask(&app, &cache, as_user("a")).await;
    assert!(ask(&app, &cache, as_user("a")).await.is_hit());
    assert_eq!(origin.calls(), 1);
    // Another identity never gets it.
    assert!(!ask(&app, &cache, as_user("b")).await.is_hit());
    assert_eq!(origin.calls(), 2);
    // Without a per-user route, credentials bypass the cache.
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![h("cache-control", "public, max-age=60")], "shared")]);
    ask(&app, &cache, as_user("a")).await;
    ask(&app, &cache, as_user("a")).await;
    assert_eq!(origin.calls(), 2);
}

// §4.2: freshness and age

pub async fn s_maxage_wins_over_max_age_which_wins_over_expires(make: &dyn MakeCache) {
    let cache = make.make().await;
    for (headers, ttl) in [
        (
            vec![
                h("cache-control", "max-age=600, s-maxage=300"),
                h("expires", date(900)),
            ],
            300,
        ),
        (
            vec![h("cache-control", "max-age=600"), h("expires", date(900))],
            600,
        ),
        (vec![h("expires", date(900)), h("date", date(0))], 900),
    ] {
        let (app, origin) = origin_app(&cache, |l| l);
        origin.answers([ok(headers, "x")]);
        let uri = format!("/ttl{ttl}");
        let (_, second) = get_twice(&app, &cache, &uri).await;
        assert_eq!(origin.calls(), 1);
        let got = second.ttl();
        assert!(
            (ttl - 2..=ttl).contains(&got),
            "{ttl}: {}",
            second.cache_status()
        );
    }
}

pub async fn an_invalid_or_past_expires_means_already_stale(make: &dyn MakeCache) {
    let cache = make.make().await;
    for expires in ["0".to_owned(), "tomorrow".to_owned(), date(-60)] {
        let (app, origin) = origin_app(&cache, |l| l);
        origin.answers([ok(vec![h("expires", expires.clone())], "x")]);
        get_twice(&app, &cache, "/expired").await;
        assert_eq!(origin.calls(), 2, "{expires}");
    }
}

/// §4.2.3: the age counts the upstream `Age` and the `Date`, and shortens
/// the lifetime left; hits say how old the response is.
pub async fn the_upstream_age_and_date_count_against_the_lifetime(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![h("cache-control", "max-age=600"), h("age", "100")],
        "aged",
    )]);
    let (_, second) = get_twice(&app, &cache, "/aged").await;
    assert_eq!(origin.calls(), 1);
    assert!((100..=102).contains(&age(&second)), "Age {}", age(&second));
    assert!(
        (498..=500).contains(&second.ttl()),
        "{}",
        second.cache_status()
    );

    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![h("cache-control", "max-age=600"), h("date", date(-200))],
        "dated",
    )]);
    let (_, second) = get_twice(&app, &cache, "/dated").await;
    assert!((200..=202).contains(&age(&second)), "Age {}", age(&second));

    // Older than its lifetime already: not stored (no validator).
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![h("cache-control", "max-age=60"), h("age", "61")],
        "old",
    )]);
    get_twice(&app, &cache, "/old").await;
    assert_eq!(origin.calls(), 2);
}

// Stale: where allowed

/// A response born stale (its `Age` covers its lifetime) with a stale
/// window: served stale when the origin fails, unless it says
/// `must-revalidate` (or `s-maxage`, or `proxy-revalidate`).
pub async fn stale_is_served_only_where_the_origin_allows(make: &dyn MakeCache) {
    let cache = make.make().await;
    for (cc, served_stale) in [
        ("max-age=10, stale-if-error=600", true),
        ("max-age=10, stale-if-error=600, must-revalidate", false),
        ("max-age=10, proxy-revalidate", false),
        ("s-maxage=10", false),
    ] {
        let (app, origin) = origin_app(&cache, |l| l.stale_if_error(Duration::from_secs(600)));
        origin.answers([
            ok(
                vec![h("cache-control", cc), h("age", "20"), h("etag", "\"v1\"")],
                "v1",
            ),
            (503, vec![], "down"),
        ]);
        ask(&app, &cache, get("/s")).await;
        let second = ask(&app, &cache, get("/s")).await;
        assert_eq!(origin.calls(), 2, "{cc}");
        match served_stale {
            true => {
                assert_eq!(
                    (second.status, second.text().as_str()),
                    (StatusCode::OK, "v1"),
                    "{cc}"
                );
                assert!(second.cache_status().contains("detail=stale-if-error"));
            }
            false => assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{cc}"),
        }
    }
}

// §4.3: validation

pub async fn a_stale_entry_is_revalidated_and_a_304_refreshes_it(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([
        ok(
            vec![
                h("cache-control", "max-age=60"),
                h("age", "60"),
                h("etag", "\"v1\""),
                h("x-version", "1"),
            ],
            "body v1",
        ),
        (
            304,
            vec![
                h("cache-control", "max-age=300"),
                h("etag", "\"v1\""),
                h("x-version", "2"),
            ],
            "",
        ),
    ]);
    let first = ask(&app, &cache, get("/v")).await;
    assert_eq!(first.text(), "body v1");
    let second = ask(&app, &cache, get("/v")).await;
    assert_eq!(origin.calls(), 2);
    assert_eq!(header_in(&origin.last(), "if-none-match"), "\"v1\"");
    assert_eq!(
        (second.status, second.text().as_str()),
        (StatusCode::OK, "body v1")
    );
    assert_eq!(header(&second, "x-version"), "2");
    assert_eq!(header(&second, "content-length"), "7");
    let status = second.cache_status();
    assert!(
        status.contains("fwd=stale") && status.contains("fwd-status=304"),
        "{status}"
    );
    assert!(status.contains("stored"), "{status}");
    // Refreshed: a hit for the 304's lifetime, with the updated headers.
    let third = ask(&app, &cache, get("/v")).await;
    assert_eq!(origin.calls(), 2);
    assert!(third.is_hit());
    assert_eq!(header(&third, "x-version"), "2");
    assert!(
        (298..=300).contains(&third.ttl()),
        "{}",
        third.cache_status()
    );
    assert_eq!(cache.stats().route("origin").revalidated, 1);
}

pub async fn last_modified_is_sent_back_as_if_modified_since(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    let modified = date(-3600);
    origin.answers([
        ok(
            vec![
                h("cache-control", "max-age=0"),
                h("last-modified", modified.clone()),
            ],
            "m",
        ),
        (304, vec![], ""),
    ]);
    ask(&app, &cache, get("/m")).await;
    let second = ask(&app, &cache, get("/m")).await;
    let seen = origin.last();
    assert_eq!(header_of(&seen, "if-modified-since"), modified);
    assert!(seen.headers.get("if-none-match").is_none());
    assert_eq!(second.text(), "m");
}

/// A 200 to the conditional request replaces the entry.
pub async fn a_changed_response_replaces_the_entry(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([
        ok(
            vec![h("cache-control", "max-age=0"), h("etag", "\"v1\"")],
            "v1",
        ),
        ok(
            vec![h("cache-control", "max-age=60"), h("etag", "\"v2\"")],
            "v2",
        ),
    ]);
    ask(&app, &cache, get("/c")).await;
    let second = ask(&app, &cache, get("/c")).await;
    assert_eq!(second.text(), "v2");
    let third = ask(&app, &cache, get("/c")).await;
    assert!(third.is_hit());
    assert_eq!(
        (third.text().as_str(), header(&third, "etag")),
        ("v2", "\"v2\"")
    );
    assert_eq!(origin.calls(), 2);
    assert_eq!(cache.stats().route("origin").revalidated, 0);
}

/// `no-cache` with a validator: stored, and revalidated before every use.
pub async fn a_no_cache_response_is_revalidated_every_time(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([
        ok(
            vec![h("cache-control", "no-cache"), h("etag", "\"n\"")],
            "nc",
        ),
        (304, vec![h("etag", "\"n\"")], ""),
    ]);
    for round in 1..=3 {
        let reply = ask(&app, &cache, get("/nc")).await;
        eprintln!("round {round}: {reply:?}");
        assert_eq!(reply.text(), "nc", "round {round}: {reply:?}");
        assert_eq!(origin.calls(), round);
    }
    assert_eq!(header_in(&origin.last(), "if-none-match"), "\"n\"");
    assert_eq!(cache.stats().route("origin").revalidated, 2);
}

/// The client's own validators are answered from the revalidated entry.
pub async fn the_clients_condition_is_answered_after_revalidation(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([
        ok(
            vec![h("cache-control", "max-age=0"), h("etag", "\"v1\"")],
            "v1",
        ),
        (304, vec![], ""),
    ]);
    ask(&app, &cache, get("/cond")).await;
    let reply = ask(
        &app,
        &cache,
        get_with("/cond", &[("if-none-match", "\"old\"")]),
    )
    .await;
    // The origin was asked about the stored response, not the client's.
    assert_eq!(header_in(&origin.last(), "if-none-match"), "\"v1\"");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (StatusCode::OK, "v1")
    );
    let reply = ask(
        &app,
        &cache,
        get_with("/cond", &[("if-none-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
}

/// A herd on a stale entry sends one conditional request.
pub async fn validations_are_coalesced_like_fills(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l.coalesce_timeout(Duration::from_secs(600)));
    origin.answers([
        ok(
            vec![h("cache-control", "max-age=0"), h("etag", "\"h\"")],
            "herd",
        ),
        (304, vec![h("cache-control", "max-age=60")], ""),
    ]);
    ask(&app, &cache, get("/herd")).await;
    let gate = Gate::default();
    origin.hold_at(gate.clone());
    let herd: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, get("/herd")).await })
        })
        .collect();
    gate.arrived(1).await;
    until_waiting(&cache, 19).await;
    gate.open();
    for reply in herd {
        assert_eq!(reply.await.unwrap().text(), "herd");
    }
    assert_eq!(origin.calls(), 2);
    assert_eq!(header_in(&origin.last(), "if-none-match"), "\"h\"");
}

// §5.2.1: request directives

pub async fn max_stale_takes_a_stale_entry_the_origin_did_not_forbid(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=10"),
            h("age", "30"),
            h("etag", "\"s\""),
        ],
        "stale",
    )]);
    ask(&app, &cache, get("/ms")).await;
    let reply = ask(
        &app,
        &cache,
        get_with("/ms", &[("cache-control", "max-stale=60")]),
    )
    .await;
    assert_eq!((origin.calls(), reply.text().as_str()), (1, "stale"));
    assert!(reply.ttl() < 0, "{}", reply.cache_status());
    // Not stale enough for the client: revalidated.
    ask(
        &app,
        &cache,
        get_with("/ms", &[("cache-control", "max-stale=5")]),
    )
    .await;
    assert_eq!(origin.calls(), 2);

    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=10, must-revalidate"),
            h("age", "30"),
            h("etag", "\"s\""),
        ],
        "strict",
    )]);
    ask(&app, &cache, get("/strict")).await;
    ask(
        &app,
        &cache,
        get_with("/strict", &[("cache-control", "max-stale")]),
    )
    .await;
    assert_eq!(origin.calls(), 2);
}

pub async fn only_if_cached_answers_504_when_nothing_is_stored(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![h("cache-control", "max-age=60")], "c")]);
    let only = || get_with("/oic", &[("cache-control", "only-if-cached")]);
    let reply = ask(&app, &cache, only()).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(reply.cache_status().contains("detail=only-if-cached"));
    assert_eq!(origin.calls(), 0);
    ask(&app, &cache, get("/oic")).await;
    let reply = ask(&app, &cache, only()).await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "c"));
    assert_eq!(origin.calls(), 1);
}

/// `no-cache`, `max-age` and `min-fresh` in a request only add origin
/// load: followed when the route says so, with a conditional request.
pub async fn fresher_requests_are_followed_only_where_configured(make: &dyn MakeCache) {
    let cache = make.make().await;
    let stored = ok(
        vec![h("cache-control", "max-age=60"), h("etag", "\"f\"")],
        "fresh",
    );
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([stored.clone()]);
    ask(&app, &cache, get("/f")).await;
    for cc in ["no-cache", "max-age=0", "min-fresh=3600"] {
        let reply = ask(&app, &cache, get_with("/f", &[("cache-control", cc)])).await;
        assert!(reply.is_hit(), "{cc}: {}", reply.cache_status());
    }
    assert!(ask(&app, &cache, get_with("/f", &[("pragma", "no-cache")]))
        .await
        .is_hit());
    assert_eq!(origin.calls(), 1);

    let (app, origin) = origin_app(&cache, |l| l.honor_request_no_cache(true));
    origin.answers([stored, (304, vec![], "")]);
    ask(&app, &cache, get("/g")).await;
    let mut calls = 1;
    for cc in ["no-cache", "max-age=0", "min-fresh=3600"] {
        let reply = ask(&app, &cache, get_with("/g", &[("cache-control", cc)])).await;
        calls += 1;
        assert_eq!(origin.calls(), calls, "{cc}");
        assert_eq!(header_in(&origin.last(), "if-none-match"), "\"f\"", "{cc}");
        assert!(
            reply.cache_status().contains("fwd=request"),
            "{cc}: {}",
            reply.cache_status()
        );
        assert_eq!(reply.text(), "fresh");
    }
    // A request content with the entry's age is still a hit.
    assert!(ask(
        &app,
        &cache,
        get_with("/g", &[("cache-control", "max-age=60")])
    )
    .await
    .is_hit());
}

pub async fn a_no_store_request_stores_nothing(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![h("cache-control", "max-age=60")], "ns")]);
    ask(
        &app,
        &cache,
        get_with("/ns", &[("cache-control", "no-store")]),
    )
    .await;
    ask(&app, &cache, get("/ns")).await;
    assert_eq!(origin.calls(), 2);
}

// §4.4: invalidation by unsafe methods

pub async fn a_successful_unsafe_request_invalidates_its_target(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "item")]);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        fill(&app, &cache, "/items/1?b=2&a=1").await;
        let answer = ask(&app, &cache, request(method.clone(), "/items/1?a=1&b=2")).await;
        assert!(answer.cache_status().contains("fwd=method"));
        let after = ask(&app, &cache, request(Method::GET, "/items/1?b=2&a=1")).await;
        assert!(!after.is_hit(), "{method}: {}", after.cache_status());
    }
    assert_eq!(origin.calls_to(Method::POST), 1);
    assert_eq!(header_in(&origin.last(), "host"), "shop.example");
}

pub async fn a_failed_unsafe_request_invalidates_nothing(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "item")]);
    fill(&app, &cache, "/items/2").await;
    origin.answers([(500, vec![], "failed")]);
    ask(&app, &cache, request(Method::POST, "/items/2")).await;
    origin.answers([(404, vec![], "no")]);
    ask(&app, &cache, request(Method::DELETE, "/items/2")).await;
    assert!(ask(&app, &cache, request(Method::GET, "/items/2"))
        .await
        .is_hit());
}

pub async fn every_variant_of_the_target_is_invalidated(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=600"),
            h("vary", "accept-language"),
        ],
        "v",
    )]);
    let in_lang = |lang| {
        http::Request::get("/doc")
            .header("host", "shop.example")
            .header("accept-language", lang)
            .body(Body::empty())
            .unwrap()
    };
    for lang in ["en", "de"] {
        ask(&app, &cache, in_lang(lang)).await;
        assert!(ask(&app, &cache, in_lang(lang)).await.is_hit());
    }
    ask(&app, &cache, request(Method::PUT, "/doc")).await;
    for lang in ["en", "de"] {
        assert!(!ask(&app, &cache, in_lang(lang)).await.is_hit(), "{lang}");
    }
}

pub async fn location_and_content_location_on_the_same_host_are_invalidated(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "x")]);
    for uri in ["/list", "/items/9", "/elsewhere"] {
        fill(&app, &cache, uri).await;
    }
    origin.answers([(
        201,
        vec![
            h("location", "/items/9"),
            h("content-location", "http://shop.example/list"),
        ],
        "created",
    )]);
    ask(&app, &cache, request(Method::POST, "/new")).await;
    assert!(!ask(&app, &cache, request(Method::GET, "/items/9"))
        .await
        .is_hit());
    assert!(!ask(&app, &cache, request(Method::GET, "/list"))
        .await
        .is_hit());
    // Another host's URI is not this origin's to invalidate.
    origin.answers([(
        201,
        vec![h("location", "http://other.example/elsewhere")],
        "",
    )]);
    ask(&app, &cache, request(Method::POST, "/new")).await;
    assert!(ask(&app, &cache, request(Method::GET, "/elsewhere"))
        .await
        .is_hit());
}

/// The URI invalidation composes with tags: both reach the same entries.
pub async fn tag_invalidation_still_applies(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l.tags(|_, _| ["catalog"]));
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "x")]);
    fill(&app, &cache, "/cat").await;
    cache.invalidate(["catalog"]).await.unwrap();
    assert!(!ask(&app, &cache, request(Method::GET, "/cat"))
        .await
        .is_hit());
}

// RFC 9213: targeted fields

pub async fn targeted_fields_take_precedence_over_cache_control(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![
            h("cache-control", "no-store"),
            h("cdn-cache-control", "max-age=120"),
        ],
        "cdn",
    )]);
    let (first, second) = get_twice(&app, &cache, "/cdn").await;
    assert_eq!(origin.calls(), 1);
    assert!((118..=120).contains(&second.ttl()));
    // CDN-Cache-Control goes on to any CDN in front; Cache-Control too.
    assert_eq!(header(&first, "cdn-cache-control"), "max-age=120");
    assert_eq!(header(&second, "cache-control"), "no-store");

    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![
            h("cdn-cache-control", "max-age=120"),
            h("tagcache-cache-control", "max-age=30"),
        ],
        "own",
    )]);
    let (first, second) = get_twice(&app, &cache, "/own").await;
    assert!(
        (28..=30).contains(&second.ttl()),
        "{}",
        second.cache_status()
    );
    // Ours concerns no one else: removed from misses and hits.
    for reply in [&first, &second] {
        assert!(reply.headers.get("tagcache-cache-control").is_none());
    }

    let (app, origin) = origin_app(&cache, |l| l.strip_targeted_fields(true));
    origin.answers([ok(vec![h("cdn-cache-control", "max-age=120")], "stripped")]);
    let (first, second) = get_twice(&app, &cache, "/stripped").await;
    assert!(first.headers.get("cdn-cache-control").is_none());
    assert!(second.headers.get("cdn-cache-control").is_none() && second.is_hit());

    let own = HeaderName::from_static("x-edge-control");
    let (app, origin) = origin_app(&cache, |l| l.targeted_fields([own]));
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=60"),
            h("x-edge-control", "no-store"),
        ],
        "e",
    )]);
    get_twice(&app, &cache, "/edge").await;
    assert_eq!(origin.calls(), 2);
}

// Tags from a response header

pub async fn tags_come_from_a_response_header_which_is_removed(make: &dyn MakeCache) {
    let cache = make.make().await;
    let surrogate = HeaderName::from_static("surrogate-key");
    let (app, origin) = origin_app(&cache, |l| l.tags_from_header(surrogate));
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=600"),
            h("surrogate-key", "product:1 catalog"),
        ],
        "p",
    )]);
    let (first, second) = get_twice(&app, &cache, "/p/1").await;
    assert!(second.is_hit());
    for reply in [&first, &second] {
        assert!(reply.headers.get("surrogate-key").is_none());
    }
    cache.invalidate(["product:1"]).await.unwrap();
    assert!(!ask(&app, &cache, get("/p/1")).await.is_hit());
    assert!(ask(&app, &cache, get("/p/1")).await.is_hit());
    cache.invalidate(["catalog"]).await.unwrap();
    assert!(!ask(&app, &cache, get("/p/1")).await.is_hit());
    assert_eq!(origin.calls(), 3);
}

// Range, in this mode too

pub async fn a_range_of_a_stored_response_comes_from_the_cache(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "0123456789")]);
    ask(&app, &cache, get("/r")).await;
    let part = ask(&app, &cache, get_with("/r", &[("range", "bytes=2-4")])).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        (part.text().as_str(), header(&part, "content-range")),
        ("234", "bytes 2-4/10")
    );
    assert_eq!(origin.calls(), 1);
}

// Found in review: what a revalidation must keep, what a client's
// directives refuse, what an unsafe request reaches.

/// A 304 need not repeat the tags header: the refreshed entry keeps every
/// tag it had, so invalidating one still reaches it.
pub async fn a_revalidated_entry_keeps_its_tags(make: &dyn MakeCache) {
    let cache = make.make().await;
    let surrogate = HeaderName::from_static("surrogate-key");
    let (app, origin) = origin_app(&cache, |l| l.tags_from_header(surrogate));
    origin.answers([
        ok(
            vec![
                h("cache-control", "max-age=0"),
                h("etag", "\"v1\""),
                h("surrogate-key", "product:1"),
            ],
            "v1",
        ),
        (304, vec![h("cache-control", "max-age=600")], ""),
    ]);
    ask(&app, &cache, get("/p")).await;
    let second = ask(&app, &cache, get("/p")).await;
    assert!(second.cache_status().contains("fwd-status=304"));
    assert!(ask(&app, &cache, get("/p")).await.is_hit());
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "v2")]);
    cache.invalidate(["product:1"]).await.unwrap();
    let after = ask(&app, &cache, get("/p")).await;
    assert_eq!(after.text(), "v2", "{}", after.cache_status());
}

/// A targeted field is kept with the entry (and removed from answers), so
/// a 304 that does not repeat it is still judged by it.
pub async fn a_revalidation_is_judged_by_the_targeted_field(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([
        ok(
            vec![
                h("cache-control", "no-store"),
                h("tagcache-cache-control", "max-age=600"),
                h("etag", "\"t\""),
                h("age", "700"),
            ],
            "t",
        ),
        (304, vec![h("etag", "\"t\"")], ""),
    ]);
    ask(&app, &cache, get("/t")).await;
    let second = ask(&app, &cache, get("/t")).await;
    let status = second.cache_status();
    assert!(
        status.contains("fwd-status=304") && status.contains("stored"),
        "{status}"
    );
    assert!(second.headers.get("tagcache-cache-control").is_none());
    let third = ask(&app, &cache, get("/t")).await;
    assert!(third.is_hit(), "{}", third.cache_status());
    assert!(third.headers.get("tagcache-cache-control").is_none());
}

/// A 304 that withdraws what the origin allowed (`no-store` now) answers
/// this request and takes the stored response away.
pub async fn a_304_that_forbids_storing_removes_the_entry(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([
        ok(
            vec![
                h("cache-control", "max-age=10"),
                h("age", "20"),
                h("etag", "\"w\""),
            ],
            "withdrawn",
        ),
        (304, vec![h("cache-control", "no-store")], ""),
    ]);
    ask(&app, &cache, get("/w")).await;
    let reply = ask(&app, &cache, get("/w")).await;
    assert_eq!(reply.text(), "withdrawn");
    assert!(reply.cache_status().contains("detail=no-store"));
    // Not even a client that takes any staleness gets it now.
    origin.answers([ok(vec![h("cache-control", "no-store")], "fresh")]);
    let reply = ask(
        &app,
        &cache,
        get_with("/w", &[("cache-control", "max-stale")]),
    )
    .await;
    assert_eq!(reply.text(), "fresh", "{}", reply.cache_status());
}

/// On a route that follows them, `no-cache` and `max-age` refuse a stale
/// entry too, rather than take it while it is refreshed.
pub async fn fresher_requests_refuse_stale_entries(make: &dyn MakeCache) {
    for asks in ["no-cache", "max-age=5"] {
        let cache = make.make().await;
        let (app, origin) = origin_app(&cache, |l| l.honor_request_no_cache(true));
        origin.answers([
            ok(
                vec![
                    h("cache-control", "max-age=10, stale-while-revalidate=600"),
                    h("age", "20"),
                    h("etag", "\"s\""),
                ],
                "old",
            ),
            ok(vec![h("cache-control", "max-age=600")], "new"),
        ]);
        ask(&app, &cache, get("/s")).await;
        let reply = ask(&app, &cache, get_with("/s", &[("cache-control", asks)])).await;
        assert_eq!(reply.text(), "new", "{asks}: {}", reply.cache_status());
        assert_eq!(
            header_in(&origin.last(), "if-none-match"),
            "\"s\"",
            "{asks}"
        );
    }
}

/// A range request that finds the entry stale refreshes it in the
/// background without its range, so the refresh can be stored.
pub async fn a_background_refresh_asks_for_the_whole_response(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=10, stale-while-revalidate=600"),
            h("age", "20"),
            h("etag", "\"s\""),
        ],
        "0123456789",
    )]);
    ask(&app, &cache, get("/v")).await;
    origin.answers([(304, vec![h("cache-control", "max-age=600")], "")]);
    let part = ask(&app, &cache, get_with("/v", &[("range", "bytes=0-1")])).await;
    assert_eq!(
        (part.status, part.text().as_str()),
        (StatusCode::PARTIAL_CONTENT, "01")
    );
    let refresh = origin.last();
    assert!(refresh.headers.get("range").is_none());
    assert_eq!(header_in(&refresh, "if-none-match"), "\"s\"");
    assert!(ask(&app, &cache, get("/v")).await.is_hit());
}

/// An unsafe request reaches the entries of its target by the route's key
/// too: those that requests for other URIs filled when the key ignores part
/// of the URI (a query parameter, the host).
pub async fn an_unsafe_request_reaches_its_target_by_key(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l.query_keys(["page"]));
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "item")]);
    ask(
        &app,
        &cache,
        request(Method::GET, "/items/1?utm_source=mail"),
    )
    .await;
    assert!(ask(&app, &cache, request(Method::GET, "/items/1"))
        .await
        .is_hit());
    ask(&app, &cache, request(Method::PUT, "/items/1")).await;
    assert!(!ask(&app, &cache, request(Method::GET, "/items/1"))
        .await
        .is_hit());

    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l.key(|req| Some(req.uri.path().to_owned())));
    origin.answers([ok(vec![h("cache-control", "max-age=600")], "item")]);
    let on = |method: Method, host: &str| {
        http::Request::builder()
            .method(method)
            .uri("/items/1")
            .header("host", host)
            .body(Body::empty())
            .unwrap()
    };
    ask(&app, &cache, on(Method::GET, "www.shop.example")).await;
    assert!(ask(&app, &cache, on(Method::GET, "shop.example"))
        .await
        .is_hit());
    ask(&app, &cache, on(Method::PUT, "shop.example")).await;
    assert!(!ask(&app, &cache, on(Method::GET, "shop.example"))
        .await
        .is_hit());
}

/// A response listing more tags than an entry may carry is not stored
/// (rather than stored without some, which invalidating would not reach).
pub async fn a_response_with_too_many_tags_is_not_stored(make: &dyn MakeCache) {
    let cache = make.make().await;
    let surrogate = HeaderName::from_static("surrogate-key");
    let (app, origin) = origin_app(&cache, |l| l.tags_from_header(surrogate));
    let many: Vec<String> = (0..2000).map(|i| format!("t{i}")).collect();
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=600"),
            h("surrogate-key", many.join(" ")),
        ],
        "tagged",
    )]);
    let (first, _) = get_twice(&app, &cache, "/many").await;
    assert_eq!(origin.calls(), 2);
    assert!(first.cache_status().contains("detail=too-many-tags"));
    assert!(first.headers.get("surrogate-key").is_none());
}

/// What is removed from answers is removed from responses that bypass the
/// cache too (a request with a cookie, an unsafe method).
pub async fn bypassed_responses_lose_what_never_leaves(make: &dyn MakeCache) {
    let cache = make.make().await;
    let surrogate = HeaderName::from_static("surrogate-key");
    let (app, origin) = origin_app(&cache, |l| l.tags_from_header(surrogate));
    origin.answers([ok(
        vec![
            h("cache-control", "max-age=600"),
            h("surrogate-key", "a b"),
            h("tagcache-cache-control", "max-age=60"),
        ],
        "x",
    )]);
    let cookie = ask(&app, &cache, get_with("/b", &[("cookie", "c=1")])).await;
    assert!(cookie.cache_status().contains("detail=cookie"));
    let post = ask(&app, &cache, request(Method::POST, "/b")).await;
    for reply in [&cookie, &post] {
        assert!(reply.headers.get("surrogate-key").is_none());
        assert!(reply.headers.get("tagcache-cache-control").is_none());
        assert_eq!(header(reply, "cache-control"), "max-age=600");
    }
}

/// A range request that finds a stale entry goes to the origin as it is,
/// not as a conditional request about the whole stored response.
pub async fn a_range_request_is_never_made_conditional(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, origin) = origin_app(&cache, |l| l);
    origin.answers([ok(
        vec![h("cache-control", "max-age=0"), h("etag", "\"r\"")],
        "0123456789",
    )]);
    ask(&app, &cache, get("/rc")).await;
    origin.answers([(206, vec![h("content-range", "bytes 0-1/10")], "01")]);
    let part = ask(&app, &cache, get_with("/rc", &[("range", "bytes=0-1")])).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    let seen = origin.last();
    assert_eq!(header_in(&seen, "range"), "bytes=0-1");
    assert!(seen.headers.get("if-none-match").is_none());
}
