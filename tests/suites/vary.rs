//! Variants: `Vary` from the response and headers the route declares.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::IntoResponse;

use super::MakeCache;
use crate::support::apps::*;
use crate::support::harness::*;

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
