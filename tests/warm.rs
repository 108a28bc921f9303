//! Warming through the application's own router: outcomes read from
//! `Cache-Status`, fresh keys skipped without an origin call, the
//! concurrency bound and the per-request timeout.

mod support;

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use support::deadline::{backstop, spawn};
use support::harness::{get_with, send, Counter, Gate};
use tagcache::{Cache, WarmReport};

const HOST: &str = "app.example:3000";

fn app(cache: &Cache, origin: Counter, gate: Option<Gate>) -> Router {
    let counted = {
        let origin = origin.clone();
        move || {
            let (origin, gate) = (origin.clone(), gate.clone());
            async move {
                let n = origin.bump();
                if let Some(gate) = gate {
                    gate.pass().await;
                }
                format!("answer {n}")
            }
        }
    };
    Router::new()
        .route("/a", get(counted.clone()).route_layer(cache.layer("a")))
        .route("/b", get(counted.clone()).route_layer(cache.layer("b")))
        .route("/list", get(counted).route_layer(cache.layer("list")))
        .route(
            "/cookie",
            get(|| async { ([(header::SET_COOKIE, "s=1")], "hi").into_response() })
                .route_layer(cache.layer("cookie")),
        )
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }).route_layer(cache.layer("broken")),
        )
        .route("/plain", get(|| async { "not cached" }))
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths
}

#[tokio::test]
async fn warming_fills_through_the_router_and_skips_what_is_fresh() {
    backstop(async {
        let cache = Cache::default();
        let origin = Counter::default();
        let app = app(&cache, origin.clone(), None);
        let warmer = cache.warmer(app.clone()).host(HOST);
        let report = warmer
            .warm([
                "/a",
                "/list?b=2&a=1",
                "/cookie",
                "/broken",
                "/plain",
                "nope",
            ])
            .await;
        assert_eq!(sorted(report.filled.clone()), ["/a", "/list?b=2&a=1"]);
        assert_eq!(report.already_fresh, Vec::<String>::new());
        let mut not_storable = report.not_storable.clone();
        not_storable.sort();
        assert_eq!(
            not_storable,
            [
                ("/cookie".to_owned(), "set-cookie".to_owned()),
                ("/plain".to_owned(), "no-cache-layer".to_owned())
            ]
        );
        let mut failed = report.failed.clone();
        failed.sort();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert_eq!(failed[0].0, "/broken");
        assert!(failed[0].1.contains("500"), "{failed:?}");
        assert_eq!(
            failed[1],
            ("nope".to_owned(), "not a path and query".to_owned())
        );
        assert_eq!(origin.get(), 2);

        // A client on that host is answered from the warmed entries.
        let hit = send(&app, get_with("/a", &[("host", HOST)])).await;
        assert!(hit.is_hit(), "{:?}", hit.cache_status());
        let hit = send(&app, get_with("/list?a=1&b=2", &[("host", HOST)])).await;
        assert!(hit.is_hit(), "{:?}", hit.cache_status());
        assert_eq!(origin.get(), 2);

        // Warming again calls no origin.
        let again = warmer.warm(["/a", "/list?b=2&a=1", "/b"]).await;
        assert_eq!(sorted(again.already_fresh), ["/a", "/list?b=2&a=1"]);
        assert_eq!(again.filled, ["/b"]);
        assert_eq!(origin.get(), 3);
    })
    .await;
}

// On one thread, the warm's task starts as many requests as it may in one
// poll before the test's task runs again: had the bound been ignored, every
// request would have reached the gate by then.
#[tokio::test(flavor = "current_thread")]
async fn at_most_the_configured_number_of_requests_run_at_once() {
    backstop(async {
        let cache = Cache::default();
        let origin = Counter::default();
        let gate = Gate::default();
        let app = app(&cache, origin.clone(), Some(gate.clone()));
        let warmer = cache.warmer(app).concurrency(2);
        let paths: Vec<String> = (0..6).map(|i| format!("/list?page={i}")).collect();
        let warm = spawn("the warm never finished", async move {
            warmer.warm(paths).await
        });
        gate.arrived(2).await;
        assert_eq!(origin.get(), 2, "only two requests started");
        gate.open();
        let report: WarmReport = warm.await.expect("warm task");
        assert_eq!(report.filled.len(), 6);
        assert_eq!(origin.get(), 6);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_request_past_its_timeout_fails_and_the_others_go_on() {
    backstop(async {
        let cache = Cache::default();
        let gate = Gate::default(); // never opened
        let slow = app(&cache, Counter::default(), Some(gate));
        let app = slow.merge(Router::new().route(
            "/quick",
            get(|| async { "quick" }).route_layer(cache.layer("quick")),
        ));
        let report = cache
            .warmer(app)
            .timeout(Duration::from_secs(2))
            .warm(["/a", "/quick"])
            .await;
        assert_eq!(report.filled, ["/quick"]);
        assert_eq!(
            report.failed,
            [("/a".to_owned(), "no answer within 2s".to_owned())]
        );
    })
    .await;
}
