//! The admin router over real HTTP on loopback: authentication, every
//! endpoint, and every kind of bad input, against the memory store (and
//! the entry listing against a real Redis too). Assertions are on
//! statuses, bodies and origin call counts; every wait waits on its effect.
#![cfg(feature = "admin")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use support::deadline::{backstop, eventually};
use support::harness::{Counter, Reply};
use support::http::Server;
use tagcache::inspect::ScanOutcome;
use tagcache::{
    Cache, Entry, InvalidationMode, KeyHash, Stamp, Store, StoreError, StoreErrorKind, StoreFuture,
    Tag, Tags, Validity,
};

const TOKEN: &str = "0123456789abcdef-admin-token";
const ADMIN: &str = "/admin/cache";

/// A small app: `/items/{id}` cached (tags `item:{id}`, `items`),
/// `/mine` cached per user (the bearer token is the identity) and varying
/// on `accept-language`, `POST /touch` invalidating `items`; the admin
/// router at `/admin/cache`, the bare health status at `/healthz`.
fn app(cache: &Cache, origin: Counter) -> Router {
    let items = {
        let origin = origin.clone();
        move |Path(id): Path<u32>| {
            let origin = origin.clone();
            async move {
                let n = origin.bump();
                (Tags::new([format!("item:{id}")]), format!("item {id} #{n}"))
            }
        }
    };
    let mine = move || async move { "mine" };
    Router::new()
        .route(
            "/items/{id}",
            get(items).route_layer(
                cache
                    .layer("items")
                    .tags(|_, _| ["items"])
                    .ttl(Duration::from_secs(300)),
            ),
        )
        .route(
            "/mine",
            get(mine).route_layer(
                cache
                    .layer("mine")
                    .per_user(support::apps::bearer)
                    .vary([http::header::ACCEPT_LANGUAGE])
                    .ttl(Duration::from_secs(300)),
            ),
        )
        .route(
            "/touch",
            post(|| async { "ok" })
                .route_layer(cache.invalidate_layer("touch").tags(|_, _| ["items"])),
        )
        .nest(
            ADMIN,
            cache
                .admin()
                .bearer_token(TOKEN)
                .build()
                .expect("admin builds"),
        )
        .nest("/healthz", cache.admin().health_router())
}

async fn start() -> (Server, Cache, Counter) {
    let cache = Cache::builder().cache_name("testcache").build();
    let origin = Counter::default();
    let server = Server::serve(app(&cache, origin.clone())).await;
    (server, cache, origin)
}

impl Server {
    async fn admin_get(&self, path: &str) -> Reply {
        self.get_as(&format!("{ADMIN}{path}"), TOKEN).await
    }

    async fn admin_post(&self, path: &str, body: &str) -> Reply {
        self.send(
            Method::POST,
            &format!("{ADMIN}{path}"),
            Some(TOKEN),
            Some(body),
        )
        .await
    }
}

/// Asserts a JSON error answer with `status` and `code`; returns its
/// message.
#[track_caller]
fn error(reply: &Reply, status: StatusCode, code: &str) -> String {
    assert_eq!(reply.status, status, "body {:?}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"], code, "{body}");
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
        .to_owned()
}

/// Waits until the sampler behind the windows has read the counters
/// twice: windows count from its first reading, so traffic a test wants
/// to see in them must come after.
async fn sampled(server: &Server, admin: &str) {
    eventually("the sampler read the counters twice", || async {
        let stats = server.get_as(&format!("{admin}/stats"), TOKEN).await.json();
        stats["history_seconds"] != 0
    })
    .await;
}

fn route<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {stats}"))
}

#[tokio::test]
async fn building_without_authentication_or_with_a_short_token_fails_and_says_what_to_do() {
    let cache = Cache::default();
    let error = cache.admin().build::<()>().unwrap_err().to_string();
    assert!(
        error.contains(".bearer_token(") && error.contains(".authorize("),
        "{error}"
    );
    let error = cache
        .admin()
        .bearer_token("short")
        .build::<()>()
        .unwrap_err();
    assert!(
        error.to_string().contains("shorter than 16 bytes"),
        "{error}"
    );
    assert!(cache.admin().bearer_token(TOKEN).build::<()>().is_ok());
    assert!(cache.admin().authorize(|_| false).build::<()>().is_ok());
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_the_same_401_on_every_path() {
    backstop(async {
        let (server, _cache, _) = start().await;
        let unauthorized = |reply: &Reply| {
            let message = error(reply, StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(message, "missing or invalid credentials");
            assert!(reply.headers.contains_key("www-authenticate"));
            assert!(!reply.text().contains(TOKEN));
            reply.body.clone()
        };
        let none = unauthorized(&server.get(&format!("{ADMIN}/stats")).await);
        let wrong = unauthorized(
            &server
                .get_as(&format!("{ADMIN}/stats"), "0123456789abcdef-admin-tokeN")
                .await,
        );
        let prefix = unauthorized(&server.get_as(&format!("{ADMIN}/stats"), &TOKEN[..20]).await);
        // Unknown paths and mutations reveal nothing either.
        let unknown = unauthorized(&server.get(&format!("{ADMIN}/nope")).await);
        let post = unauthorized(
            &server
                .send(
                    Method::POST,
                    &format!("{ADMIN}/purge-all"),
                    Some("x"),
                    Some(r#"{"confirm":"testcache"}"#),
                )
                .await,
        );
        assert!([&wrong, &prefix, &unknown, &post]
            .iter()
            .all(|b| **b == none));
        // A basic scheme with the token is not a bearer token.
        let basic = Request::get(format!("http://{}{ADMIN}/stats", server.addr))
            .header("authorization", format!("Basic {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        unauthorized(&server.send_request(basic).await);
        // The right token passes, whatever the scheme's case.
        assert_eq!(server.admin_get("/stats").await.status, StatusCode::OK);
        let lower = Request::get(format!("http://{}{ADMIN}/stats", server.addr))
            .header("authorization", format!("bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(server.send_request(lower).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn a_custom_check_decides_over_the_request_head() {
    backstop(async {
        let cache = Cache::default();
        let admin = cache
            .admin()
            .authorize(|parts| {
                parts
                    .headers
                    .get("x-operator")
                    .is_some_and(|v| v == "alice")
            })
            .build()
            .unwrap();
        let server = Server::serve(Router::new().nest("/a", admin)).await;
        error(
            &server.get("/a/stats").await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let request = Request::get(format!("http://{}/a/stats", server.addr))
            .header("x-operator", "alice")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = server.send_request(request).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["cache"], "tagcache");
    })
    .await;
}

#[tokio::test]
async fn stats_count_per_route_with_reasons_windows_and_the_store() {
    backstop(async {
        let (server, _cache, origin) = start().await;
        // Windows count from the sampler's first reading: take it first.
        sampled(&server, ADMIN).await;
        assert_eq!(server.get("/items/1").await.status, StatusCode::OK);
        assert!(server.get("/items/1").await.is_hit());
        assert!(server.get("/items/1").await.is_hit());
        // A request with credentials bypasses a shared route.
        assert_eq!(
            server.get_as("/items/1", "someone").await.status,
            StatusCode::OK
        );
        assert_eq!(origin.get(), 2);

        let stats = server.admin_get("/stats").await;
        assert_eq!(stats.status, StatusCode::OK);
        assert_eq!(stats.headers["cache-control"], "no-store");
        let stats = stats.json();
        assert_eq!(stats["cache"], "testcache");
        let items = route(&stats, "items");
        assert_eq!(
            (items["hits"].as_u64(), items["misses"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(items["bypasses"], 1);
        assert_eq!(items["bypasses_by_reason"]["authorization"], 1);
        assert_eq!(items["bypasses_by_reason"]["method"], 0);
        assert_eq!(items["not_stored"], 0);
        assert!((items["hit_ratio"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(route(&stats, "mine")["hit_ratio"], Value::Null);
        let store = &stats["store"];
        assert_eq!(store["kind"], "memory");
        assert_eq!(store["entries"], 1);
        assert_eq!(store["budget"], 64 * 1024 * 1024);
        assert!(store["bytes"].as_u64().unwrap() > 0);
        assert_eq!(store["evictions"], 0);
        assert_eq!(store["feed"], Value::Null);

        // The windows follow once the sampler has read the counters.
        eventually(
            "the one-minute window shows the route's traffic",
            || async {
                let stats = server.admin_get("/stats").await.json();
                route(&stats, "items")["requests_1m"] == 4
            },
        )
        .await;
        let stats = server.admin_get("/stats").await.json();
        let windows = route(&stats, "items");
        assert!(
            (windows["hit_ratio_1m"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
            "{windows}"
        );
        assert_eq!(windows["requests_5m"], 4);
        let stats = server.admin_get("/stats").await.json();
        assert_eq!(stats["overall"]["windows"]["requests_1m"], 4);
        let charted: u64 = stats["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(charted, 4, "{}", stats["series"]);
    })
    .await;
}

#[tokio::test]
async fn entries_are_listed_in_bounded_pages_with_filters() {
    backstop(async {
        let (server, _cache, _) = start().await;
        for id in 1..=5 {
            server.get(&format!("/items/{id}")).await;
        }
        server.get_as("/mine", "alice-secret-identity").await;

        let all = server.admin_get("/entries?route=items").await.json();
        let keys: Vec<&str> = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys.len(), 5, "{all}");
        for id in 1..=5 {
            assert!(keys.contains(&format!("/items/{id}").as_str()), "{keys:?}");
        }
        assert_eq!(all["next_cursor"], Value::Null);
        let first = &all["entries"][0];
        assert_eq!(first["route"], "items");
        assert_eq!(first["per_user"], false);
        assert_eq!(first["status"], 200);
        assert_eq!(first["state"], "valid");
        assert!(first["size_bytes"].as_u64().unwrap() > first["body_bytes"].as_u64().unwrap());
        assert!(
            (295..=300).contains(&first["ttl_left_secs"].as_i64().unwrap()),
            "{first}"
        );
        let tags: Vec<&str> = first["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(tags.len(), 2, "{tags:?}");
        assert!(tags.contains(&"items"));

        // Pages of two: every entry once.
        let mut seen = Vec::new();
        let mut path = "/entries?route=items&limit=2".to_owned();
        let mut pages = 0;
        loop {
            let page = server.admin_get(&path).await.json();
            pages += 1;
            let entries = page["entries"].as_array().unwrap();
            assert!(entries.len() <= 2);
            seen.extend(
                entries
                    .iter()
                    .map(|e| e["key"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/entries?route=items&limit=2&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5);

        // A prefix, and everything (the per-user entry without its identity).
        let some = server.admin_get("/entries?prefix=/items/3").await.json();
        assert_eq!(some["entries"].as_array().unwrap().len(), 1);
        assert_eq!(some["entries"][0]["key"], "/items/3");
        let everything = server.admin_get("/entries").await;
        assert_eq!(everything.json()["entries"].as_array().unwrap().len(), 6);
        assert!(!everything.text().contains("alice-secret-identity"));
    })
    .await;
}

#[tokio::test]
async fn one_key_shows_every_variant_without_identities() {
    backstop(async {
        let (server, _cache, _) = start().await;
        let get = |who: &'static str, lang: &'static str| {
            let request = Request::get(format!("http://{}/mine", server.addr))
                .header("authorization", format!("Bearer {who}"))
                .header("accept-language", lang)
                .body(Full::new(Bytes::new()))
                .unwrap();
            server.send_request(request)
        };
        get("alice-identity", "en").await;
        get("bob-identity", "fr").await;
        let reply = server.admin_get("/entry?route=mine&key=/mine").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(!reply.text().contains("alice-identity") && !reply.text().contains("bob-identity"));
        let body = reply.json();
        assert_eq!(
            (body["route"].as_str(), body["key"].as_str()),
            (Some("mine"), Some("/mine"))
        );
        let variants = body["variants"].as_array().unwrap();
        assert_eq!(variants.len(), 2, "{body}");
        assert_eq!(body["complete"], true);
        assert!(variants.iter().all(|v| v["per_user"] == true));
        let mut langs: Vec<&str> = variants
            .iter()
            .map(|v| v["vary"]["accept-language"].as_str().unwrap())
            .collect();
        langs.sort();
        assert_eq!(langs, ["en", "fr"]);

        let missing = server.admin_get("/entry?route=mine&key=/other").await;
        assert!(error(&missing, StatusCode::NOT_FOUND, "not_found").contains("/other"));
        let unknown = server.admin_get("/entry?route=nope&key=/mine").await;
        assert!(error(&unknown, StatusCode::NOT_FOUND, "not_found").contains("nope"));
        error(
            &server.admin_get("/entry?route=mine").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
        let long = format!("/entry?route=mine&key=/{}", "k".repeat(5000));
        error(
            &server.admin_get(&long).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    })
    .await;
}

#[tokio::test]
async fn listing_refuses_bad_parameters() {
    backstop(async {
        let (server, cache, _) = start().await;
        for id in 1..=3 {
            server.get(&format!("/items/{id}")).await;
        }
        for bad in [
            "/entries?limit=0",
            "/entries?limit=501",
            "/entries?limit=ten",
            "/entries?limit=-1",
            "/entries?cursor=garbage",
            "/entries?prefix=",
            "/entries?colour=red",
        ] {
            error(
                &server.admin_get(bad).await,
                StatusCode::BAD_REQUEST,
                "bad_request",
            );
        }
        let unknown = server.admin_get("/entries?route=nope").await;
        error(&unknown, StatusCode::NOT_FOUND, "not_found");
        let long_route = format!("/entries?route={}", "r".repeat(200));
        error(
            &server.admin_get(&long_route).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );

        // A cursor from before a purge of everything is stale.
        let page = server.admin_get("/entries?limit=1").await.json();
        let cursor = page["next_cursor"].as_str().expect("more pages").to_owned();
        cache.purge_all().await.unwrap();
        let stale = server.admin_get(&format!("/entries?cursor={cursor}")).await;
        assert!(error(&stale, StatusCode::BAD_REQUEST, "bad_request").contains("start again"));
    })
    .await;
}

#[tokio::test]
async fn invalidating_a_tag_makes_the_next_request_a_miss_and_is_logged_with_its_source() {
    backstop(async {
        let (server, cache, origin) = start().await;
        server.get("/items/1").await;
        server.get("/items/2").await;
        assert!(server.get("/items/1").await.is_hit());
        assert_eq!(origin.get(), 2);

        let done = server
            .admin_post("/invalidate", r#"{"tags": ["item:1"]}"#)
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text());
        let done = done.json();
        assert_eq!(
            (done["kind"].as_str(), done["tags"].clone()),
            (Some("hard"), json!(["item:1"]))
        );
        assert!(done["stamp"].as_u64().unwrap() > 0);
        assert!(!server.get("/items/1").await.is_hit());
        assert!(
            server.get("/items/2").await.is_hit(),
            "other tags untouched"
        );
        assert_eq!(origin.get(), 3);

        let soft = server
            .admin_post("/invalidate", r#"{"tags": ["item:2"], "soft": true}"#)
            .await
            .json();
        assert_eq!(soft["kind"], "soft");
        // The route has no stale window: a soft invalidation is a miss too.
        assert!(!server.get("/items/2").await.is_hit());
        assert_eq!(origin.get(), 4);

        // An invalidation from a route and one from code.
        assert_eq!(
            server.send(Method::POST, "/touch", None, None).await.status,
            StatusCode::OK
        );
        cache.invalidate(["from-code"]).await.unwrap();

        let log = server.admin_get("/invalidations?limit=10").await.json();
        let log = log["invalidations"].as_array().unwrap();
        assert_eq!(log.len(), 4, "{log:?}");
        assert_eq!(log[0]["tags"], json!(["from-code"]));
        assert_eq!(log[0]["source"], json!({"kind": "code"}));
        assert_eq!(log[1]["tags"], json!(["items"]));
        assert_eq!(log[1]["source"], json!({"kind": "route", "name": "touch"}));
        assert_eq!(log[2]["kind"], "soft");
        assert_eq!(log[2]["source"], json!({"kind": "admin"}));
        assert_eq!(log[3]["kind"], "hard");
        assert!(log
            .iter()
            .all(|r| r["error"].is_null() && r["at_unix_ms"].as_u64().unwrap() > 0));
        let stats = server.admin_get("/stats").await.json();
        assert_eq!(route(&stats, "admin-api")["invalidations"], 2);
        error(
            &server.admin_get("/invalidations?limit=0").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
        error(
            &server.admin_get("/invalidations?limit=201").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    })
    .await;
}

#[tokio::test]
async fn purging_a_key_or_everything() {
    backstop(async {
        let (server, _cache, origin) = start().await;
        server.get("/items/1?b=2&a=1").await;
        server.get("/items/2").await;
        assert_eq!(origin.get(), 2);

        // Any spelling of the query reaches the entry.
        let purged = server
            .admin_post("/purge", r#"{"key": "/items/1?b=2&a=1"}"#)
            .await;
        assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
        assert!(!server.get("/items/1?a=1&b=2").await.is_hit());
        assert!(server.get("/items/2").await.is_hit());
        assert_eq!(origin.get(), 3);
        let unknown = server
            .admin_post("/purge", r#"{"key": "/items/2", "route": "nope"}"#)
            .await;
        error(&unknown, StatusCode::NOT_FOUND, "not_found");
        assert!(
            server.get("/items/2").await.is_hit(),
            "a refused purge purges nothing"
        );

        // Purge-all needs the cache's name, typed out.
        for refused in [
            r#"{"confirm": ""}"#,
            r#"{"confirm": "TESTCACHE"}"#,
            r#"{"confirm": "yes"}"#,
            r#"{}"#,
        ] {
            let reply = server.admin_post("/purge-all", refused).await;
            error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        }
        assert!(server.get("/items/2").await.is_hit(), "nothing was purged");
        let all = server
            .admin_post("/purge-all", r#"{"confirm": "testcache"}"#)
            .await;
        assert_eq!(all.status, StatusCode::OK);
        assert_eq!(all.json()["kind"], "all");
        assert!(!server.get("/items/2").await.is_hit());
        assert_eq!(origin.get(), 4);
    })
    .await;
}

#[tokio::test]
async fn mutations_refuse_other_methods_types_and_malformed_bodies() {
    backstop(async {
        let (server, _cache, origin) = start().await;
        server.get("/items/1").await;

        for path in ["/invalidate", "/purge", "/purge-all"] {
            let reply = server.admin_get(path).await;
            error(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        }
        error(
            &server
                .send(
                    Method::POST,
                    &format!("{ADMIN}/stats"),
                    Some(TOKEN),
                    Some("{}"),
                )
                .await,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        );
        error(
            &server.admin_get("/nope").await,
            StatusCode::NOT_FOUND,
            "not_found",
        );

        // No content type, or another one.
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut request = Request::post(format!("http://{}{ADMIN}/invalidate", server.addr))
                .header("authorization", format!("Bearer {TOKEN}"));
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let request = request
                .body(Full::new(Bytes::from(r#"{"tags": ["items"]}"#)))
                .unwrap();
            let reply = server.send_request(request).await;
            error(
                &reply,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            );
        }

        let too_many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        let long_tag = "t".repeat(257);
        let long_key = format!("/{}", "k".repeat(4096));
        let bad_bodies = [
            ("/invalidate", "not json".to_owned()),
            ("/invalidate", r#"{"tags": "items"}"#.to_owned()),
            ("/invalidate", r#"{"tags": [1, 2]}"#.to_owned()),
            (
                "/invalidate",
                r#"{"tags": ["items"], "soft": "yes"}"#.to_owned(),
            ),
            (
                "/invalidate",
                r#"{"tags": ["items"], "extra": 1}"#.to_owned(),
            ),
            ("/invalidate", r#"{"tags": []}"#.to_owned()),
            ("/invalidate", r#"{"tags": [""]}"#.to_owned()),
            ("/invalidate", json!({ "tags": too_many }).to_string()),
            ("/invalidate", json!({ "tags": [long_tag] }).to_string()),
            ("/invalidate", r#"{}"#.to_owned()),
            ("/purge", r#"{"key": ""}"#.to_owned()),
            ("/purge", r#"{"key": 5}"#.to_owned()),
            ("/purge", json!({ "key": long_key }).to_string()),
            ("/purge-all", r#"{"confirm": true}"#.to_owned()),
            ("/purge-all", r#"["testcache"]"#.to_owned()),
        ];
        for (path, body) in &bad_bodies {
            let reply = server.admin_post(path, body).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{path} {body}: {}",
                reply.text()
            );
            error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        }
        let huge = json!({ "tags": ["x".repeat(70 * 1024)] }).to_string();
        error(
            &server.admin_post("/invalidate", &huge).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        );

        // None of that invalidated anything.
        assert!(server.get("/items/1").await.is_hit());
        assert_eq!(origin.get(), 1);
        let log = server.admin_get("/invalidations").await.json();
        assert_eq!(log["invalidations"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn health_reports_checks_and_the_bare_status_needs_no_credentials() {
    backstop(async {
        let (server, _cache, _) = start().await;
        let reply = server.admin_get("/health").await;
        assert_eq!(reply.status, StatusCode::OK);
        let health = reply.json();
        assert_eq!(health["status"], "healthy", "{health}");
        let names: Vec<&str> = health["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["store", "store_errors", "hit_ratio", "memory"]);
        assert!(health["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "pass"));

        let bare = server.get("/healthz").await;
        assert_eq!(bare.status, StatusCode::OK);
        assert_eq!(bare.headers["cache-control"], "no-store");
        assert_eq!(bare.json(), json!({"status": "healthy"}));
        error(
            &server.get(&format!("{ADMIN}/health")).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    })
    .await;
}

#[tokio::test]
async fn a_route_under_the_hit_ratio_floor_makes_the_cache_degraded() {
    backstop(async {
        let cache = Cache::default();
        let origin = Counter::default();
        let admin = cache
            .admin()
            .bearer_token(TOKEN)
            .health(tagcache::admin::HealthOptions {
                hit_ratio_floor: 0.5,
                min_requests: 4,
                ..Default::default()
            })
            .build()
            .unwrap();
        let app = app(&cache, origin).nest("/ops", admin);
        let server = Server::serve(app).await;
        sampled(&server, "/ops").await;
        for id in 0..4 {
            server.get(&format!("/items/{id}")).await; // four misses
        }
        eventually("the health check sees the route's misses", || async {
            let reply = server.get_as("/ops/health", TOKEN).await;
            assert_eq!(reply.status, StatusCode::OK, "degraded is still 200");
            reply.json()["status"] == "degraded"
        })
        .await;
        let last = server.get_as("/ops/health", TOKEN).await.json();
        let check = last["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "hit_ratio")
            .unwrap();
        assert_eq!(check["status"], "warn");
        assert!(
            check["detail"].as_str().unwrap().contains("items (0 %)"),
            "{check}"
        );
    })
    .await;
}

/// A store that is down: every operation fails.
struct DownStore;

fn down<T>() -> StoreFuture<T> {
    StoreFuture::ready(Err(StoreError::new(
        StoreErrorKind::Unavailable,
        "the test store is down",
    )))
}

impl Store for DownStore {
    fn get(&self, _: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        down()
    }
    fn put(&self, _: KeyHash, _: Arc<Entry>) -> StoreFuture<()> {
        down()
    }
    fn remove(&self, _: KeyHash) -> StoreFuture<()> {
        down()
    }
    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        down()
    }
    fn invalidate(&self, _: &[Tag], _: InvalidationMode) -> StoreFuture<Stamp> {
        down()
    }
    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        down()
    }
    fn validity(&self, _: &Entry) -> Validity {
        Validity::Invalid
    }
    fn max_entry_life(&self) -> Duration {
        Duration::from_secs(3600)
    }
    fn kind(&self) -> &'static str {
        "down"
    }
    fn scan(&self, _: tagcache::inspect::ScanRequest) -> StoreFuture<ScanOutcome> {
        down()
    }
}

#[tokio::test]
async fn a_failing_store_is_a_503_with_its_reason_and_makes_the_cache_unhealthy() {
    backstop(async {
        let cache = Cache::new(DownStore);
        let server = Server::serve(app(&cache, Counter::default())).await;
        // Requests still work (fail-open).
        assert_eq!(server.get("/items/1").await.status, StatusCode::OK);

        for (path, body) in [
            ("/invalidate", r#"{"tags": ["items"]}"#),
            ("/purge", r#"{"key": "/items/1"}"#),
            ("/purge-all", r#"{"confirm": "tagcache"}"#),
        ] {
            let reply = server.admin_post(path, body).await;
            let message = error(&reply, StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
            assert!(message.contains("the test store is down"), "{message}");
        }
        let listing = server.admin_get("/entries").await;
        error(
            &listing,
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
        );
        let log = server.admin_get("/invalidations").await.json();
        assert!(log["invalidations"][0]["error"]
            .as_str()
            .unwrap()
            .contains("down"));

        let health = server.admin_get("/health").await;
        assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
        let health = health.json();
        assert_eq!(health["status"], "unhealthy");
        assert_eq!(health["checks"][0]["status"], "fail");
        let bare = server.get("/healthz").await;
        assert_eq!(bare.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(bare.json(), json!({"status": "unhealthy"}));
    })
    .await;
}

#[tokio::test]
async fn a_store_that_cannot_list_says_so() {
    backstop(async {
        // A store of the tests' own, which keeps the trait's default listing.
        let store = support::stores::TestStore::new(std::time::Duration::ZERO, None);
        let cache = Cache::new(store);
        let server = Server::serve(app(&cache, Counter::default())).await;
        let reply = server.admin_get("/entries").await;
        assert!(error(&reply, StatusCode::NOT_IMPLEMENTED, "not_supported").contains("cannot list"));
    })
    .await;
}

#[tokio::test]
async fn a_full_store_that_keeps_evicting_makes_the_cache_degraded() {
    backstop(async {
        let store = tagcache::MemoryStore::builder()
            .max_bytes(16 * 1024)
            .build();
        let cache = Cache::new(store);
        let admin = cache
            .admin()
            .bearer_token(TOKEN)
            .health(tagcache::admin::HealthOptions {
                full_fraction: 0.5,
                max_evictions_per_second: 0.5,
                hit_ratio_floor: 0.0,
                ..Default::default()
            })
            .build()
            .unwrap();
        let server = Server::serve(app(&cache, Counter::default()).nest("/ops", admin)).await;
        sampled(&server, "/ops").await;
        let memory = |health: &Value| {
            health["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "memory")
                .cloned()
                .unwrap()
        };
        let before = server.get_as("/ops/health", TOKEN).await.json();
        assert_eq!(memory(&before)["status"], "pass", "{before}");
        for id in 0..200 {
            server.get(&format!("/items/{id}")).await;
        }
        let stats = server.get_as("/ops/stats", TOKEN).await.json();
        assert!(
            stats["store"]["evictions"].as_u64().unwrap() > 100,
            "{}",
            stats["store"]
        );
        eventually("the health check sees the evictions", || async {
            server.get_as("/ops/health", TOKEN).await.json()["status"] == "degraded"
        })
        .await;
        let health = server.get_as("/ops/health", TOKEN).await;
        assert_eq!(health.status, StatusCode::OK);
        let check = memory(&health.json());
        assert_eq!(check["status"], "warn", "{check}");
        assert!(
            check["detail"].as_str().unwrap().contains("evictions/s"),
            "{check}"
        );
    })
    .await;
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use support::redis_server::RedisServer;
    use support::stores::{redis_store, writes_answered};

    #[tokio::test]
    async fn redis_down_is_unhealthy_and_healthy_again_once_it_is_back() {
        let Some(mut server) = RedisServer::stopped() else {
            return;
        };
        backstop(async {
            let store = tagcache::RedisStore::builder(server.url())
                .namespace("adminhealth")
                .connect_timeout(Duration::from_millis(200))
                .response_timeout(Duration::from_millis(300))
                .build()
                .await
                .expect("fail-open: a store even without Redis");
            let cache = Cache::new(store);
            let app = Server::serve(app(&cache, Counter::default())).await;
            // Requests are served from the origin meanwhile.
            assert_eq!(app.get("/items/1").await.status, StatusCode::OK);
            let down = app.admin_get("/health").await;
            assert_eq!(
                down.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                down.text()
            );
            let down = down.json();
            assert_eq!(down["status"], "unhealthy");
            let feed = down["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "feed")
                .unwrap();
            assert_ne!(feed["status"], "pass", "{feed}");
            let stats = app.admin_get("/stats").await.json();
            assert_ne!(stats["store"]["feed"], "in_sync");
            error(
                &app.admin_get("/entries").await,
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
            );

            server.restart();
            eventually("the cache is healthy once Redis is back", || async {
                app.admin_get("/health").await.json()["status"] == "healthy"
            })
            .await;
            let stats = app.admin_get("/stats").await.json();
            assert_eq!(stats["store"]["feed"], "in_sync");
            assert_eq!(stats["store"]["breaker_open"], false);
        })
        .await;
    }

    #[tokio::test]
    async fn entries_are_listed_from_redis_with_scan_never_keys() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        backstop(async {
            let store = redis_store(&server.url(), "adminlist").await;
            let cache = Cache::new(store.clone());
            let app = Server::serve(app(&cache, Counter::default())).await;
            for id in 1..=7 {
                app.get(&format!("/items/{id}")).await;
            }
            writes_answered(&store).await;
            // Another namespace's entries are not listed.
            let other = redis_store(&server.url(), "adminother").await;
            Cache::new(other.clone());
            server.cmd_str(&["SET", "adminother:e:00000000000000000000000000000001", "x"]);

            let mut seen = Vec::new();
            let mut path = "/entries?route=items&limit=3".to_owned();
            for _ in 0..100 {
                let page = app.admin_get(&path).await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.text());
                let page = page.json();
                seen.extend(
                    page["entries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["key"].as_str().unwrap().to_owned()),
                );
                match page["next_cursor"].as_str() {
                    Some(cursor) => path = format!("/entries?route=items&limit=3&cursor={cursor}"),
                    None => break,
                }
            }
            seen.sort();
            seen.dedup();
            let expected: Vec<String> = {
                let mut keys: Vec<String> = (1..=7).map(|id| format!("/items/{id}")).collect();
                keys.sort();
                keys
            };
            assert_eq!(seen, expected);
            let one = app
                .admin_get("/entry?route=items&key=/items/4")
                .await
                .json();
            assert_eq!(one["variants"].as_array().unwrap().len(), 1, "{one}");

            let calls = server.command_calls();
            assert!(calls.get("scan").copied().unwrap_or(0) > 0, "{calls:?}");
            assert_eq!(calls.get("keys"), None, "never KEYS: {calls:?}");

            error(
                &app.admin_get("/entries?cursor=r0").await,
                StatusCode::BAD_REQUEST,
                "bad_request",
            );
            let stats = app.admin_get("/stats").await.json();
            assert_eq!(stats["store"]["kind"], "redis");
            assert_eq!(stats["store"]["feed"], "in_sync");
            assert_eq!(stats["store"]["breaker_open"], false);
            let health = app.admin_get("/health").await.json();
            assert_eq!(health["status"], "healthy", "{health}");
            assert!(health["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "feed" && c["status"] == "pass"));
        })
        .await;
    }
}

#[tokio::test]
async fn the_store_gauges_reach_the_metrics_output() {
    backstop(async {
        let metrics = support::classroom::prometheus();
        let cache = Cache::builder().cache_name("gauged").build();
        let server = Server::serve(app(&cache, Counter::default())).await;
        server.get("/items/1").await;
        server.get("/items/2").await;
        cache.invalidate(["a", "b", "c"]).await.unwrap();
        let line = |name: &str, value: &str| format!("{name}{{cache=\"gauged\"}} {value}");
        eventually("the sampler published the store's gauges", || async {
            let text = metrics.render();
            text.lines()
                .any(|l| l == line("tagcache_store_entries", "2"))
                && text
                    .lines()
                    .any(|l| l == line("tagcache_store_tag_stamps", "3"))
        })
        .await;
        let text = metrics.render();
        let budget = line(
            "tagcache_store_budget_bytes",
            &(64u64 * 1024 * 1024).to_string(),
        );
        assert!(text.lines().any(|l| l == budget), "{text}");
        assert!(
            text.lines()
                .any(|l| l == line("tagcache_store_evictions_total", "0")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("tagcache_store_bytes{cache=\"gauged\"} ")),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn warm_fills_through_the_app_one_warm_at_a_time() {
    backstop(async {
        use support::harness::Gate;
        use tagcache::admin::WarmTarget;

        let cache = Cache::default();
        let origin = Counter::default();
        let gate = Gate::default();
        let target = WarmTarget::new();
        let slow = {
            let gate = gate.clone();
            move || {
                let gate = gate.clone();
                async move {
                    gate.pass().await;
                    "slow"
                }
            }
        };
        let admin = cache
            .admin()
            .bearer_token(TOKEN)
            .warm_target(target.clone())
            .build()
            .unwrap();
        let app = app(&cache, origin.clone())
            .route("/slow", get(slow).route_layer(cache.layer("slow")))
            .nest("/ops", admin);
        assert!(target.set(app.clone()));
        assert!(!target.set(app.clone()), "the first router stays");
        let server = Server::serve(app).await;
        let warm = |body: String| {
            let server = &server;
            async move {
                server
                    .send(Method::POST, "/ops/warm", Some(TOKEN), Some(&body))
                    .await
            }
        };

        let report = warm(r#"{"paths": ["/items/1", "/items/2", "/items/1"]}"#.into()).await;
        assert_eq!(report.status, StatusCode::OK, "{}", report.text());
        let report = report.json();
        assert_eq!(report["filled"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(
            report["already_fresh"].as_array().unwrap().len()
                + report["filled"].as_array().unwrap().len(),
            3,
            "{report}"
        );
        assert_eq!(origin.get(), 2);
        // Warmed for the host the operator used, which clients use too.
        assert!(server.get("/items/1").await.is_hit());
        assert!(server.get("/items/2").await.is_hit());
        assert_eq!(origin.get(), 2);

        // One warm at a time.
        let first = {
            let addr = server.addr;
            support::deadline::spawn("the first warm never answered", async move {
                Server::connect(addr)
                    .send(
                        Method::POST,
                        "/ops/warm",
                        Some(TOKEN),
                        Some(r#"{"paths": ["/slow"]}"#),
                    )
                    .await
            })
        };
        gate.arrived(1).await;
        let second = warm(r#"{"paths": ["/items/3"]}"#.into()).await;
        error(&second, StatusCode::CONFLICT, "warm_running");
        gate.open();
        let first = first.await.expect("first warm");
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(first.json()["filled"], json!(["/slow"]));
        let third = warm(r#"{"paths": ["/items/3"]}"#.into()).await;
        assert_eq!(third.json()["filled"], json!(["/items/3"]));

        let too_many =
            json!({ "paths": (0..101).map(|i| format!("/items/{i}")).collect::<Vec<_>>() });
        for bad in [
            r#"{"paths": []}"#.to_owned(),
            r#"{"paths": ["items/1"]}"#.to_owned(),
            r#"{"paths": ["/a b"]}"#.to_owned(),
            r#"{"paths": "/items/1"}"#.to_owned(),
            too_many.to_string(),
        ] {
            error(&warm(bad).await, StatusCode::BAD_REQUEST, "bad_request");
        }
        // Without a target, warming is not available.
        let (plain, _cache, _) = start().await;
        let reply = plain
            .admin_post("/warm", r#"{"paths": ["/items/1"]}"#)
            .await;
        error(&reply, StatusCode::NOT_IMPLEMENTED, "not_supported");
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_page_loads_without_credentials_and_loads_nothing_else() {
    backstop(async {
        let (server, _cache, _) = start().await;
        let page = server.get(ADMIN).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
        let policy = page.headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.starts_with("default-src 'none'") && policy.contains("connect-src 'self'"),
            "{policy}"
        );
        assert_eq!(page.headers["cache-control"], "no-store");
        let html = page.text();
        assert!(html.contains("<svg id=\"chart\"") && html.contains("sessionStorage"));
        // Self-contained: nothing fetched from another origin.
        for external in ["http://", "https://", "src=\"//", "href=\"//"] {
            assert!(!html.contains(external), "the page refers to {external}");
        }
        // It holds no data, and the API behind it still needs the token.
        assert!(!html.contains(TOKEN));
        assert_eq!(
            server.get(&format!("{ADMIN}/stats")).await.status,
            StatusCode::UNAUTHORIZED
        );
    })
    .await;
}
