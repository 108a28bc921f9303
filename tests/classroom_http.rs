//! End-to-end tests of the `classroom` example over real HTTP on loopback:
//! the router from `examples/classroom/app.rs`, served by `axum::serve`, and
//! once the example binary itself. Assertions are on statuses, headers,
//! bodies and `/stats` counters, never on timing.

#[path = "../examples/classroom/app.rs"]
mod app;
mod support;

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;
use support::classroom::{
    assert_hit, assert_not_hit, example_binary, prometheus, start_example, titles,
};
use support::deadline::{backstop, eventually, spawn, within};
use support::http::Server;
use tagcache::Cache;

use app::{router, AppConfig};

const NO_DELAY: Duration = Duration::ZERO;
const SHORT_DELAY: Duration = Duration::from_millis(20);

/// Starts a fresh app (fresh data, fresh cache) on 127.0.0.1:0.
async fn start(origin_delay: Duration) -> Server {
    Server::serve(router(AppConfig {
        origin_delay,
        cache: Cache::default(),
        metrics: Some(prometheus()),
    }))
    .await
}

#[tokio::test]
async fn session_list_misses_then_hits_and_a_new_session_invalidates_it() {
    backstop(async {
        let server = start(SHORT_DELAY).await;
        let path = "/api/teachers/1/sessions";

        let first = server.get(path).await;
        assert_eq!(first.status, StatusCode::OK);
        assert!(
            first.cache_status().contains("fwd=uri-miss"),
            "first GET misses: {:?}",
            first.cache_status()
        );
        assert!(!first.headers.contains_key("age"));
        assert_eq!(titles(&first.json()).len(), 5);
        assert_eq!(server.origin_calls("session-list").await, 1);

        let second = server.get(path).await;
        assert_hit(&second, "second GET");
        assert_eq!(second.body, first.body);
        assert_eq!(server.origin_calls("session-list").await, 1);

        let created = server
            .send(Method::POST, path, None, Some(r#"{"title": "Fractions"}"#))
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let session = created.json();
        assert_eq!(session["teacher_id"], 1);
        assert_eq!(session["title"], "Fractions");
        assert_eq!(session["status"], "active");
        assert!(session["id"].as_u64().is_some_and(|id| id > 50));

        let third = server.get(path).await;
        assert_eq!(third.status, StatusCode::OK);
        assert_not_hit(&third, "GET after POST");
        let list = titles(&third.json());
        assert_eq!(list.len(), 6);
        assert!(list.contains(&"Fractions".to_owned()), "{list:?}");
        assert_eq!(server.origin_calls("session-list").await, 2);

        // The status filter is its own entry, and filters.
        let active = server.get("/api/teachers/1/sessions?status=active").await;
        assert_eq!(active.status, StatusCode::OK);
        assert_not_hit(&active, "filtered list");
        let active = active.json();
        assert_eq!(titles(&active).len(), 4);
        assert!(active["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "active"));
        assert_eq!(server.origin_calls("session-list").await, 3);
        assert_hit(
            &server.get("/api/teachers/1/sessions?status=active").await,
            "filtered list again",
        );
    })
    .await;
}

#[tokio::test]
async fn session_detail_is_tagged_from_its_data() {
    backstop(async {
        let server = start(SHORT_DELAY).await;

        // Session 3 belongs to teacher 1, session 6 to teacher 2.
        let before = server.get("/api/sessions/3").await;
        assert_eq!(before.status, StatusCode::OK);
        assert_eq!(
            before.json(),
            json!({"id": 3, "teacher_id": 1, "title": "Teacher 1 session 3", "status": "active"})
        );
        assert_hit(&server.get("/api/sessions/3").await, "detail again");
        assert_eq!(server.get("/api/sessions/6").await.status, StatusCode::OK);
        assert_eq!(server.origin_calls("session-detail").await, 2);

        let updated = server
            .send(
                Method::PUT,
                "/api/sessions/3",
                None,
                Some(r#"{"title": "Geometry"}"#),
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK);
        assert_eq!(updated.json()["title"], "Geometry");

        let after = server.get("/api/sessions/3").await;
        assert_not_hit(&after, "detail after PUT");
        assert_eq!(after.json()["title"], "Geometry");
        assert_eq!(server.origin_calls("session-detail").await, 3);
        // Another session's entry is untouched.
        assert_hit(&server.get("/api/sessions/6").await, "other detail");

        // The URL names only the session; the `teacher:1` tag came from the
        // data, so a change to teacher 1's sessions reaches the detail entry.
        assert_hit(&server.get("/api/sessions/3").await, "detail cached again");
        let created = server
            .send(
                Method::POST,
                "/api/teachers/1/sessions",
                None,
                Some(r#"{"title": "Extra"}"#),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        assert_not_hit(
            &server.get("/api/sessions/3").await,
            "detail after a change to its owner",
        );
        assert_hit(
            &server.get("/api/sessions/6").await,
            "other teacher's detail",
        );

        // The teacher dashboard follows status changes and deletions.
        let dashboard = server.get("/api/dashboard/teacher/1").await;
        assert_eq!(
            dashboard.json(),
            json!({"teacher_id": 1, "sessions": 6, "active": 4, "ended": 2})
        );
        assert_hit(&server.get("/api/dashboard/teacher/1").await, "dashboard");
        let ended = server
            .send(
                Method::PUT,
                "/api/sessions/3",
                None,
                Some(r#"{"status": "ended"}"#),
            )
            .await;
        assert_eq!(ended.json()["status"], "ended");
        assert_eq!(ended.json()["title"], "Geometry");
        let dashboard = server.get("/api/dashboard/teacher/1").await;
        assert_not_hit(&dashboard, "dashboard after PUT");
        assert_eq!(
            dashboard.json(),
            json!({"teacher_id": 1, "sessions": 6, "active": 3, "ended": 3})
        );

        let deleted = server
            .send(Method::DELETE, "/api/sessions/3", None, None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert!(deleted.body.is_empty());
        let gone = server.get("/api/sessions/3").await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert!(gone.error_message().contains("session 3"));
        let list = server.get("/api/teachers/1/sessions").await.json();
        assert!(!titles(&list).contains(&"Geometry".to_owned()));
        assert_eq!(
            server.get("/api/dashboard/teacher/1").await.json()["sessions"],
            5
        );

        // Unknown ids answer 404 and are never stored: each asks the origin.
        let calls = server.origin_calls("session-detail").await;
        for _ in 0..2 {
            let missing = server.get("/api/sessions/999999").await;
            assert_eq!(missing.status, StatusCode::NOT_FOUND);
            assert!(!missing.is_hit());
            assert!(missing.error_message().contains("not found"));
        }
        assert_eq!(server.origin_calls("session-detail").await, calls + 2);
    })
    .await;
}

#[tokio::test]
async fn my_sessions_are_cached_per_teacher_and_never_cross_identities() {
    backstop(async {
        let server = start(SHORT_DELAY).await;
        let path = "/api/me/sessions";

        // Anonymous first: a 401 that must not be stored for anyone.
        for _ in 0..2 {
            let anonymous = server.get(path).await;
            assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
            assert!(!anonymous.is_hit());
            assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
            anonymous.error_message();
        }

        let one = server.get_as(path, "teacher-1").await;
        assert_eq!(one.status, StatusCode::OK);
        assert_not_hit(&one, "teacher 1 first");
        assert_eq!(one.json()["teacher_id"], 1);
        assert_eq!(titles(&one.json())[0], "Teacher 1 session 1");

        let two = server.get_as(path, "teacher-2").await;
        assert_eq!(two.status, StatusCode::OK);
        assert_not_hit(&two, "teacher 2 first");
        assert_eq!(two.json()["teacher_id"], 2);
        assert!(titles(&two.json())
            .iter()
            .all(|t| t.starts_with("Teacher 2 ")));
        assert_eq!(server.origin_calls("my-sessions").await, 2);

        let one_again = server.get_as(path, "teacher-1").await;
        assert_hit(&one_again, "teacher 1 again");
        assert_eq!(one_again.body, one.body);
        let two_again = server.get_as(path, "teacher-2").await;
        assert_hit(&two_again, "teacher 2 again");
        assert_eq!(two_again.body, two.body);
        assert_eq!(server.origin_calls("my-sessions").await, 2);

        // An authorised body is never handed to a caller without a valid token.
        for token in [None, Some("teacher-99"), Some("teacher-01"), Some("nobody")] {
            let reply = server.send(Method::GET, path, token, None).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "token {token:?}");
            assert_ne!(reply.body, one.body);
            assert!(reply.error_message().len() > 1);
        }
        // Nor with a scheme other than Bearer.
        let basic = hyper::Request::builder()
            .uri(format!("http://{}{path}", server.addr))
            .header("authorization", "Basic dGVhY2hlci0xOg==")
            .body(Default::default())
            .unwrap();
        assert_eq!(
            server.send_request(basic).await.status,
            StatusCode::UNAUTHORIZED
        );

        // A change to teacher 1 refreshes teacher 1's list only.
        let created = server
            .send(
                Method::POST,
                "/api/teachers/1/sessions",
                None,
                Some(r#"{"title": "Mine"}"#),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let one_after = server.get_as(path, "teacher-1").await;
        assert_not_hit(&one_after, "teacher 1 after POST");
        assert!(titles(&one_after.json()).contains(&"Mine".to_owned()));
        assert_hit(
            &server.get_as(path, "teacher-2").await,
            "teacher 2 after POST",
        );
    })
    .await;
}

#[tokio::test]
async fn admin_dashboard_answers_by_role_and_never_mixes_them() {
    backstop(async {
        let server = start(SHORT_DELAY).await;
        let path = "/api/dashboard/admin";

        // Refusals first, so a stored refusal would show up for the admin.
        for _ in 0..2 {
            let anonymous = server.get(path).await;
            assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
            anonymous.error_message();
            let teacher = server.get_as(path, "teacher-1").await;
            assert_eq!(teacher.status, StatusCode::FORBIDDEN);
            assert!(!teacher.is_hit());
            teacher.error_message();
        }

        let admin = server.get_as(path, "admin").await;
        assert_eq!(admin.status, StatusCode::OK);
        assert_not_hit(&admin, "admin first");
        let totals = json!({"teachers": 10, "sessions": 50, "active": 30, "ended": 20});
        assert_eq!(admin.json(), totals);
        let admin_again = server.get_as(path, "admin").await;
        assert_hit(&admin_again, "admin again");
        assert_eq!(admin_again.json(), totals);

        // And the stored admin answer never reaches the others.
        let teacher = server.get_as(path, "teacher-1").await;
        assert_eq!(teacher.status, StatusCode::FORBIDDEN);
        assert_ne!(teacher.body, admin.body);
        let anonymous = server.get(path).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_ne!(anonymous.body, admin.body);

        // Mutations reach the totals.
        let deleted = server
            .send(Method::DELETE, "/api/sessions/1", None, None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let after = server.get_as(path, "admin").await;
        assert_not_hit(&after, "admin after DELETE");
        assert_eq!(
            after.json(),
            json!({"teachers": 10, "sessions": 49, "active": 29, "ended": 20})
        );
    })
    .await;
}

/// A request the app must refuse with `expected` and a JSON error.
struct BadInput {
    method: Method,
    path: String,
    token: Option<&'static str>,
    body: Option<String>,
    expected: u16,
}

fn bad(method: Method, path: &str, body: Option<&str>, expected: u16) -> BadInput {
    BadInput {
        method,
        path: path.to_owned(),
        token: None,
        body: body.map(str::to_owned),
        expected,
    }
}

impl BadInput {
    fn with_token(mut self, token: &'static str) -> Self {
        self.token = Some(token);
        self
    }
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_is_never_cached() {
    backstop(async {
        use Method as M;
        const LIST: &str = "/api/teachers/1/sessions";
        const ONE: &str = "/api/sessions/1";

        let server = start(NO_DELAY).await;
        let long_query = format!("{LIST}?status={}", "a".repeat(10 * 1024));
        let long_path = format!("/api/sessions/{}", "9".repeat(10 * 1024));
        let long_title = format!(r#"{{"title": "{}"}}"#, "x".repeat(201));
        let big_body = format!(r#"{{"title": "{}"}}"#, "x".repeat(20 * 1024));

        let cases = [
            // Malformed JSON.
            bad(M::POST, LIST, Some("{"), 400),
            bad(M::POST, LIST, Some("title=x"), 400),
            bad(M::PUT, ONE, Some(r#"{"title": }"#), 400),
            // No JSON content type.
            bad(M::POST, LIST, None, 415),
            // Wrong types and shapes.
            bad(M::POST, LIST, Some(r#"{"title": 5}"#), 422),
            bad(M::POST, LIST, Some("[]"), 422),
            bad(M::POST, LIST, Some("{}"), 422),
            bad(M::PUT, ONE, Some(r#"{"title": ["x"]}"#), 422),
            bad(M::PUT, ONE, Some(r#"{"titel": "typo"}"#), 422),
            // Unknown status values and query parameters.
            bad(M::PUT, ONE, Some(r#"{"status": "paused"}"#), 422),
            bad(M::GET, &format!("{LIST}?status=paused"), None, 400),
            bad(M::GET, &format!("{LIST}?status="), None, 400),
            bad(M::GET, &format!("{LIST}?sort=title"), None, 400),
            // Empty and oversized titles, oversized bodies.
            bad(M::POST, LIST, Some(r#"{"title": ""}"#), 422),
            bad(M::POST, LIST, Some(r#"{"title": "   "}"#), 422),
            bad(M::PUT, ONE, Some(&long_title), 422),
            bad(M::POST, LIST, Some(&big_body), 413),
            // Unknown ids.
            bad(M::GET, "/api/teachers/11/sessions", None, 404),
            bad(M::GET, "/api/teachers/0/sessions", None, 404),
            bad(M::GET, "/api/sessions/0", None, 404),
            bad(M::GET, "/api/dashboard/teacher/11", None, 404),
            bad(
                M::POST,
                "/api/teachers/11/sessions",
                Some(r#"{"title": "x"}"#),
                404,
            ),
            bad(M::PUT, "/api/sessions/999", Some(r#"{"title": "x"}"#), 404),
            bad(M::DELETE, "/api/sessions/999", None, 404),
            // Non-numeric, negative, fractional and overflowing ids.
            bad(M::GET, "/api/sessions/abc", None, 400),
            bad(M::GET, "/api/sessions/-1", None, 400),
            bad(M::GET, "/api/sessions/1.5", None, 400),
            bad(M::GET, "/api/sessions/99999999999999999999999", None, 400),
            bad(M::GET, "/api/teachers/one/sessions", None, 400),
            bad(M::GET, "/api/dashboard/teacher/x", None, 400),
            bad(M::DELETE, "/api/sessions/abc", None, 400),
            bad(
                M::POST,
                "/api/teachers/x/sessions",
                Some(r#"{"title": "x"}"#),
                400,
            ),
            // Very long URLs.
            bad(M::GET, &long_query, None, 414),
            bad(M::GET, &long_path, None, 414),
            bad(M::GET, &long_path, None, 414).with_token("admin"),
            // Unknown routes and methods.
            bad(M::GET, "/api/nothing", None, 404),
            bad(M::GET, "/", None, 404),
            bad(M::PATCH, ONE, Some("{}"), 405),
            bad(M::DELETE, LIST, None, 405),
            // Bad credentials.
            bad(M::GET, "/api/me/sessions", None, 401).with_token("teacher-abc"),
            bad(M::GET, "/api/dashboard/admin", None, 401).with_token(""),
        ];

        for case in &cases {
            let what = format!("{} {:.80} body {:.40?}", case.method, case.path, case.body);
            // Twice: the second would be a hit if the first had been stored.
            for attempt in 0..2 {
                let reply = server
                    .send(
                        case.method.clone(),
                        &case.path,
                        case.token,
                        case.body.as_deref(),
                    )
                    .await;
                assert!(!reply.status.is_server_error(), "{what}: {}", reply.status);
                assert_eq!(
                    reply.status.as_u16(),
                    case.expected,
                    "{what} (attempt {attempt})"
                );
                let message = reply.error_message();
                assert!(!message.is_empty(), "{what}: empty error message");
                assert!(message.len() < 1024, "{what}: error echoes the input");
                assert!(
                    !reply.is_hit(),
                    "{what}: an error was served from the cache"
                );
            }
        }

        // Nothing was changed or stored by the refused requests.
        let stats = server.stats().await;
        for (route, counters) in stats["cache"].as_object().unwrap() {
            assert_eq!(counters["hits"], 0, "{route}: {counters}");
            assert_eq!(counters["invalidations"], 0, "{route}: {counters}");
        }
        let list = server.get("/api/teachers/1/sessions").await;
        assert_eq!(titles(&list.json()).len(), 5);
        assert_eq!(
            server.get("/api/sessions/1").await.json()["title"],
            "Teacher 1 session 1"
        );
    })
    .await;
}

/// Waits for every request of `herd` (`n` of them): each must answer 200,
/// all with the same body.
async fn all_the_same(mut herd: tokio::task::JoinSet<support::harness::Reply>, n: usize) {
    let mut bodies = Vec::new();
    while let Some(reply) = within(
        format!("{} of {n} requests never answered", herd.len()),
        herd.join_next(),
    )
    .await
    {
        let reply = reply.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.cache_status());
        bodies.push(reply.body);
    }
    assert_eq!(bodies.len(), n);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_herd_makes_one_origin_call() {
    backstop(async {
        let server = start(SHORT_DELAY).await;
        let before = server.origin_calls("admin-dashboard").await;

        let mut herd = tokio::task::JoinSet::new();
        let server = std::sync::Arc::new(server);
        for _ in 0..200 {
            let server = server.clone();
            herd.spawn(async move { server.get_as("/api/dashboard/admin", "admin").await });
        }
        all_the_same(herd, 200).await;
        assert_eq!(server.origin_calls("admin-dashboard").await, before + 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_overtaken_by_a_write_is_not_served_afterwards() {
    backstop(async {
        let server = std::sync::Arc::new(start(Duration::from_millis(300)).await);
        let path = "/api/sessions/7";
        let before = server.origin_calls("session-detail").await;

        let slow = spawn("the slow GET never answered", {
            let server = server.clone();
            async move { server.get(path).await }
        });
        // The origin counts a call once it has read its data: from then on the
        // slow GET carries the old title, whenever it answers.
        eventually("the slow GET reached the origin", || async {
            server.origin_calls("session-detail").await > before
        })
        .await;

        let updated = server
            .send(Method::PUT, path, None, Some(r#"{"title": "Renamed"}"#))
            .await;
        assert_eq!(updated.status, StatusCode::OK);
        assert_eq!(updated.json()["title"], "Renamed");

        let slow = slow.await.expect("slow GET task");
        assert_eq!(slow.status, StatusCode::OK);
        assert_eq!(slow.json()["title"], "Teacher 2 session 2");

        let fresh = server.get(path).await;
        assert_eq!(fresh.status, StatusCode::OK);
        assert_not_hit(&fresh, "GET after the write");
        assert_eq!(fresh.json()["title"], "Renamed");
        let again = server.get(path).await;
        assert_hit(&again, "GET after the refill");
        assert_eq!(again.json()["title"], "Renamed");
    })
    .await;
}

#[tokio::test]
async fn the_example_binary_serves_and_exports_metrics() {
    let binary = example_binary().await;
    backstop(async {
        let (_child, addr) = start_example(
            &binary,
            &["--listen", "127.0.0.1:0", "--origin-delay-ms", "0"],
        )
        .await;

        let server = Server::connect(addr);
        let miss = server.get("/api/teachers/2/sessions").await;
        assert_eq!(miss.status, StatusCode::OK);
        assert!(
            miss.cache_status().contains("fwd=uri-miss"),
            "{:?}",
            miss.cache_status()
        );
        let hit = server.get("/api/teachers/2/sessions").await;
        assert_hit(&hit, "second GET on the binary");
        assert_eq!(hit.body, miss.body);
        assert_eq!(server.origin_calls("session-list").await, 1);

        let metrics = server.get("/metrics").await;
        assert_eq!(metrics.status, StatusCode::OK);
        let text = String::from_utf8(metrics.body.to_vec()).expect("metrics are text");
        assert!(
            text.lines().any(|l| l.starts_with("tagcache_hits_total{")
                && l.contains("session-list")
                && l.ends_with(" 1")),
            "no hit counted in /metrics:\n{text}"
        );
    })
    .await;
}

/// With `--redis`, entries live in Redis: a restarted example process
/// answers from them without calling its handlers, and invalidation still
/// works across the restart.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_example_over_redis_keeps_entries_across_restarts() {
    let binary = example_binary().await;
    backstop(async {
        let Some(redis) = support::redis_server::RedisServer::start() else {
            return;
        };
        let url = redis.url();
        // Restart on the same address: the default key matches the Host header,
        // which behind a load balancer is the same for every instance.
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let args = [
            "--listen",
            listen.as_str(),
            "--origin-delay-ms",
            "0",
            "--redis",
            url.as_str(),
        ];
        let path = "/api/teachers/4/sessions";

        let (first, addr) = start_example(&binary, &args).await;
        let server = Server::connect(addr);
        let miss = server.get(path).await;
        assert_eq!(miss.status, StatusCode::OK);
        assert_not_hit(&miss, "first GET over Redis");
        assert_hit(&server.get(path).await, "second GET over Redis");
        // The hit may be the process's own write still on its way to Redis:
        // killed before it lands, the entry would be lost.
        let redis_ref = &redis;
        eventually("the entry is in Redis", || async move {
            redis_ref.entry_keys("classroom").len() == 1
        })
        .await;
        drop(first);

        let (_second, addr) = start_example(&binary, &args).await;
        let server = Server::connect(addr);
        let after_restart = server.get(path).await;
        assert_hit(&after_restart, "GET after the example restarted");
        assert_eq!(after_restart.body, miss.body);
        assert_eq!(
            server.origin_calls("session-list").await,
            0,
            "the new process never ran the handler"
        );

        // Each process seeds its own in-memory data, so invalidation is what
        // keeps the shared entries honest: a write in this process replaces them.
        let created = server
            .send(
                Method::POST,
                "/api/teachers/4/sessions",
                None,
                Some(r#"{"title": "Chemistry"}"#),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let fresh = server.get(path).await;
        assert_not_hit(&fresh, "GET after the write");
        assert!(String::from_utf8_lossy(&fresh.body).contains("Chemistry"));
    })
    .await;
}

/// Three example processes on one Redis (one with `--local-tier`) behind
/// what a load balancer would send them (the same `Host`): a cold herd of
/// 300 spread over them costs one origin call in all.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_over_three_example_processes_makes_one_origin_call() {
    let binary = example_binary().await;
    backstop(async {
        let Some(redis) = support::redis_server::RedisServer::start() else {
            return;
        };
        let url = redis.url();
        let mut processes = Vec::new();
        let mut servers = Vec::new();
        for extra in [&[][..], &[][..], &["--local-tier"][..]] {
            let mut args = vec![
                "--listen",
                "127.0.0.1:0",
                "--origin-delay-ms",
                "200",
                "--redis",
                url.as_str(),
            ];
            args.extend_from_slice(extra);
            let (process, addr) = start_example(&binary, &args).await;
            processes.push(process);
            servers.push(std::sync::Arc::new(Server::connect(addr)));
        }
        let path = "/api/teachers/4/sessions";
        let mut herd = tokio::task::JoinSet::new();
        for i in 0..300 {
            let server = servers[i % 3].clone();
            herd.spawn(async move {
                let request = hyper::Request::get(format!("http://{}{path}", server.addr))
                    .header(hyper::header::HOST, "classroom.example")
                    .body(Default::default())
                    .expect("valid request");
                server.send_request(request).await
            });
        }
        all_the_same(herd, 300).await;
        let mut calls = 0;
        for server in &servers {
            calls += server.origin_calls("session-list").await;
        }
        assert_eq!(calls, 1, "one origin call for three processes");
    })
    .await;
}
