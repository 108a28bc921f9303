//! Keys whose responses vary (`Vary`): each key keeps a variant index, so
//! learning that one key varies never loses what other keys stored, every
//! variant is stored once, and a herd of mixed variants costs one origin
//! call per variant, each request answered with its own.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::Router;
use tagcache::Cache;

use super::MakeCache;
use crate::support::deadline::spawn;
use crate::support::harness::*;

/// The request's `Accept-Language`, or `-` without one.
fn language(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(header::ACCEPT_LANGUAGE)
        .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
}

/// `/v/{name}`: answers `<name> <language> call<n>`; the key `varying`
/// varies on `Accept-Language`, every other key on nothing. Calls wait at
/// `gate` when `gated`.
fn app(cache: &Cache, calls: Counter, gate: Gate, gated: bool) -> Router {
    let handler = move |Path(name): Path<String>, request: Request<Body>| {
        let (calls, gate) = (calls.clone(), gate.clone());
        async move {
            let n = calls.bump();
            if gated {
                gate.pass().await;
            }
            let (parts, _) = request.into_parts();
            let mut response: Response =
                format!("{name} {} call{n}", language(&parts)).into_response();
            if name == "varying" {
                response
                    .headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept-language"));
            }
            response
        }
    };
    Router::new().route(
        "/v/{name}",
        routing::get(handler).route_layer(cache.layer("v").ttl(Duration::from_secs(300))),
    )
}

fn with_language(uri: &str, language: Option<&str>) -> Request<Body> {
    match language {
        Some(language) => get_with(uri, &[("accept-language", language)]),
        None => get(uri),
    }
}

pub async fn learning_that_a_key_varies_keeps_other_keys(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = app(&cache, calls.clone(), Gate::default(), false);
    send(&app, get("/v/plain")).await;
    assert!(send(&app, get("/v/plain")).await.is_hit());
    assert_eq!(calls.get(), 1);
    // Another key's response says `Vary: Accept-Language`.
    let varying = send(&app, with_language("/v/varying", Some("de"))).await;
    assert_eq!(varying.text(), "varying de call2");
    // What was stored before is still found.
    let plain = send(&app, get("/v/plain")).await;
    assert!(plain.is_hit(), "{:?}", plain.cache_status());
    assert_eq!(plain.text(), "plain - call1");
    assert_eq!(calls.get(), 2, "no origin call for the key stored earlier");
}

pub async fn every_variant_is_stored_once(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = app(&cache, calls.clone(), Gate::default(), false);
    let languages = [Some("de"), Some("en"), None];
    for round in 0..3 {
        for language in languages {
            let reply = send(&app, with_language("/v/varying", language)).await;
            let expected = format!("varying {}", language.unwrap_or("-"));
            assert!(
                reply.text().starts_with(&expected),
                "{language:?} got {:?}",
                reply.text()
            );
            assert_eq!(reply.is_hit(), round > 0, "{language:?} in round {round}");
        }
    }
    assert_eq!(calls.get(), languages.len(), "one origin call per variant");
}

/// Requests for three variants of a key nobody has seen yet all join one
/// flight. The leader's response turns out to vary: the waiters of its own
/// variant take it, the others must not, and each other variant is fetched
/// once for all its waiters.
pub async fn herd_of_variants_gets_each_its_own_with_one_call_per_variant(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (calls, gate) = (Counter::default(), Gate::default());
    let app = app(&cache, calls.clone(), gate.clone(), true);
    let spawn = |language: Option<&'static str>| {
        let app = app.clone();
        let what = format!("request for {language:?} never answered");
        spawn(what, async move {
            let reply = send(&app, with_language("/v/varying", language)).await;
            (language, reply)
        })
    };
    let leader = spawn(Some("de"));
    gate.arrived(1).await;
    let mut herd = vec![leader];
    for language in [Some("de"), Some("en"), None] {
        for _ in 0..4 {
            herd.push(spawn(language));
        }
    }
    until_waiting(&cache, 12).await;
    gate.open();
    for request in herd {
        let (language, reply) = request.await.unwrap();
        let expected = format!("varying {}", language.unwrap_or("-"));
        assert!(
            reply.text().starts_with(&expected),
            "a request for {language:?} got {:?} ({})",
            reply.text(),
            reply.cache_status()
        );
    }
    assert_eq!(calls.get(), 3, "one origin call per variant");
}
