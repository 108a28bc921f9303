//! Invalidations driven by PostgreSQL (`tagcache::postgres`), against a real
//! server each test starts for itself. The data changes outside the app, by
//! SQL on another connection; assertions are on what the app answers and
//! how often its handlers ran, never on timing. Every wait for the
//! listener waits on what it reports (`notifications_applied`,
//! `is_in_sync`), under a deadline.
#![cfg(feature = "postgres")]

mod support;

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tagcache::entry::{Entry, KeyHash, Tag};
use tagcache::postgres::{self, PgInvalidations, PgListenerConfig};
use tagcache::stamp::{InvalidationMode, Stamp, Validity};
use tagcache::{Cache, MemoryStore, Store, StoreError, StoreErrorKind, StoreFuture, Tags};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use support::deadline::{backstop, eventually, spawn, within, Lazy};
use support::harness::{get_reply, Gate, Reply};
use support::postgres_server::PostgresServer;

/// The sessions table and its trigger, as the module docs show it: tags
/// from both the old and the new row.
const SCHEMA: &str = "
    CREATE TABLE sessions (
        id bigserial PRIMARY KEY,
        teacher_id integer NOT NULL,
        title text NOT NULL
    );
    INSERT INTO sessions (teacher_id, title) VALUES
        (1, 'Algebra'), (1, 'Geometry'), (2, 'Poetry');
    CREATE FUNCTION sessions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            PERFORM tagcache_invalidate(ARRAY['session:' || OLD.id, 'teacher:' || OLD.teacher_id]);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            PERFORM tagcache_invalidate(ARRAY['session:' || NEW.id, 'teacher:' || NEW.teacher_id]);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER sessions_changed AFTER INSERT OR UPDATE OR DELETE ON sessions
        FOR EACH ROW EXECUTE FUNCTION sessions_changed();
    CREATE ROLE listener LOGIN;
";

/// Connects a client to `server` as `user`, driving its connection in a
/// task of its own.
async fn connect(server: &PostgresServer, user: &str) -> Client {
    let conninfo = format!("{} user={user}", server.conninfo());
    let (client, connection) = within(
        format!("connecting as {user}"),
        tokio_postgres::connect(&conninfo, NoTls),
    )
    .await
    .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

/// Runs `sql` (several statements allowed), panicking with the error.
async fn exec(client: &Client, sql: &str) {
    within(format!("SQL {sql:?}"), client.batch_execute(sql))
        .await
        .unwrap_or_else(|e| panic!("SQL {sql:?} failed: {e:?}"));
}

/// A server with the SQL installed (twice: it is idempotent), the sessions
/// table and its trigger, an admin connection that changes data "outside
/// the app", and the app with its cache and listener.
struct World {
    server: PostgresServer,
    admin: Client,
    cache: Cache,
    listener: PgInvalidations,
    app: Router,
    origin: Origin,
    gate: Gate,
}

/// How often each path's handler ran.
#[derive(Clone, Default)]
struct Origin(Arc<Mutex<HashMap<String, usize>>>);

impl Origin {
    fn count(&self, path: &str) {
        *self.0.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    }

    fn calls(&self, path: &str) -> usize {
        self.0.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

#[derive(Clone)]
struct AppState {
    db: Arc<Client>,
    origin: Origin,
    /// Where `/slow/sessions/{id}` waits after reading.
    gate: Gate,
}

async fn session(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(Tags, Json<Value>), StatusCode> {
    app.origin.count(&format!("/sessions/{id}"));
    read_session(&app, id).await
}

/// Like `session`, but waits at the gate after reading: a slow origin
/// whose answer carries the data as of its read.
async fn slow_session(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(Tags, Json<Value>), StatusCode> {
    app.origin.count(&format!("/slow/sessions/{id}"));
    let read = read_session(&app, id).await;
    app.gate.pass().await;
    read
}

async fn read_session(app: &AppState, id: i64) -> Result<(Tags, Json<Value>), StatusCode> {
    let row = app
        .db
        .query_opt(
            "SELECT teacher_id, title FROM sessions WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .ok_or(StatusCode::NOT_FOUND)?;
    let (teacher, title): (i32, String) = (row.get(0), row.get(1));
    // One session's page shows only that session: its own tag is enough.
    let tags = Tags::new([format!("session:{id}")]);
    Ok((
        tags,
        Json(json!({"id": id, "teacher_id": teacher, "title": title})),
    ))
}

async fn teacher_sessions(
    State(app): State<AppState>,
    Path(teacher): Path<i32>,
) -> Result<(Tags, Json<Value>), StatusCode> {
    app.origin.count(&format!("/teachers/{teacher}/sessions"));
    let rows = app
        .db
        .query(
            "SELECT title FROM sessions WHERE teacher_id = $1 ORDER BY id",
            &[&teacher],
        )
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let titles: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok((
        Tags::new([format!("teacher:{teacher}")]),
        Json(json!(titles)),
    ))
}

async fn item(State(app): State<AppState>, Path(n): Path<u32>) -> (Tags, String) {
    app.origin.count(&format!("/items/{n}"));
    (Tags::new([item_tag(n)]), format!("item {n}"))
}

/// A response carrying the tag named in its path, whatever its characters.
async fn tagged(State(app): State<AppState>, Path(name): Path<String>) -> (Tags, String) {
    app.origin.count(&format!("/tag/{name}"));
    (Tags::new([name.clone()]), format!("tagged {name}"))
}

/// Long tags, so that a few hundred of them overflow one notification.
fn item_tag(n: u32) -> String {
    format!("item:{n:05}:{}", "x".repeat(40))
}

fn app(cache: &Cache, state: AppState) -> Router {
    let ttl = Duration::from_secs(300);
    Router::new()
        .route(
            "/sessions/{id}",
            get(session).route_layer(cache.layer("session").ttl(ttl)),
        )
        .route(
            "/slow/sessions/{id}",
            get(slow_session).route_layer(cache.layer("slow-session").ttl(ttl)),
        )
        .route(
            "/teachers/{tid}/sessions",
            get(teacher_sessions).route_layer(cache.layer("teacher-sessions").ttl(ttl)),
        )
        .route(
            "/soft/sessions/{id}",
            get(session).route_layer(
                cache
                    .layer("soft-session")
                    .ttl(ttl)
                    .stale_while_revalidate(Duration::from_secs(60)),
            ),
        )
        .route(
            "/tag/{name}",
            get(tagged).route_layer(cache.layer("tagged").ttl(ttl)),
        )
        .route(
            "/items/{n}",
            get(item).route_layer(cache.layer("item").ttl(ttl)),
        )
        .with_state(state)
}

impl World {
    /// `None` when PostgreSQL is not installed (the skip line is printed).
    async fn start() -> Option<World> {
        World::start_with(Cache::default(), |config| config).await
    }

    /// [`start`](Self::start) with `cache`, and the listener's options
    /// changed by `options`.
    async fn start_with(
        cache: Cache,
        options: impl FnOnce(PgListenerConfig) -> PgListenerConfig,
    ) -> Option<World> {
        let server = PostgresServer::start()?;
        let admin = connect(&server, "postgres").await;
        within("installing", postgres::install(&admin, "public"))
            .await
            .expect("install");
        within("installing again", postgres::install(&admin, "public"))
            .await
            .expect("install is idempotent");
        exec(&admin, SCHEMA).await;

        let config = PgListenerConfig::from_url(&format!("{} user=listener", server.conninfo()))
            .expect("listener config")
            .max_backoff(Duration::from_millis(100));
        let listener = PgInvalidations::listen(&cache, options(config));
        let origin = Origin::default();
        let gate = Gate::default();
        let state = AppState {
            db: Arc::new(connect(&server, "postgres").await),
            origin: origin.clone(),
            gate: gate.clone(),
        };
        let app = app(&cache, state);
        let world = World {
            server,
            admin,
            cache,
            listener,
            app,
            origin,
            gate,
        };
        world.until_in_sync(1).await;
        Some(world)
    }

    async fn get(&self, path: &str) -> Reply {
        get_reply(&self.app, path).await
    }

    /// Waits until the listener is in sync for the `n`th time.
    async fn until_in_sync(&self, n: u64) {
        let listener = &self.listener;
        let what = Lazy(move || format!("listener in sync for the {n}th time ({listener:?})"));
        eventually(what, || async move {
            listener.is_in_sync() && listener.resyncs() == n
        })
        .await;
    }

    /// Runs `sql` as one transaction outside the app and waits until the
    /// listener has applied `notifications` more notifications.
    async fn change(&self, sql: &str, notifications: u64) {
        let before = self.listener.notifications_applied();
        exec(&self.admin, sql).await;
        self.until_applied(before + notifications).await;
    }

    async fn until_applied(&self, n: u64) {
        let listener = &self.listener;
        let what = Lazy(move || format!("{n} notifications applied ({listener:?})"));
        eventually(
            what,
            || async move { listener.notifications_applied() >= n },
        )
        .await;
    }

    /// GETs `path` and asserts a hit with `body`, the handler having run
    /// `calls` times in all.
    async fn assert_hit(&self, path: &str, body: &Value, calls: usize) {
        let reply = self.get(path).await;
        assert!(
            reply.is_hit(),
            "{path}: expected a hit, got {:?}",
            reply.cache_status()
        );
        assert_eq!(&reply.json(), body, "{path}");
        assert_eq!(self.origin.calls(path), calls, "{path}: origin calls");
    }

    /// GETs `path` and asserts the origin answered it with `body` (one
    /// more handler run, `calls` in all).
    async fn assert_fresh(&self, path: &str, body: &Value, calls: usize) {
        let reply = self.get(path).await;
        assert!(
            !reply.is_hit(),
            "{path}: expected a miss, got {:?}",
            reply.cache_status()
        );
        assert_eq!(&reply.json(), body, "{path}");
        assert_eq!(self.origin.calls(path), calls, "{path}: origin calls");
    }
}

fn session_json(id: i64, teacher: i32, title: &str) -> Value {
    json!({"id": id, "teacher_id": teacher, "title": title})
}

#[tokio::test]
async fn the_test_server_answers_on_its_own_port() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let client = connect(&server, "postgres").await;
        let row = client.query_one("SHOW port", &[]).await.expect("SHOW port");
        let port: String = row.get(0);
        assert_eq!(port, server.port().to_string());
        assert_ne!(server.port(), 5432);
    })
    .await;
}

#[tokio::test]
async fn update_insert_and_delete_outside_the_app_invalidate_exactly_their_tags() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let s1 = session_json(1, 1, "Algebra");
        let s2 = session_json(2, 1, "Geometry");
        let t1 = json!(["Algebra", "Geometry"]);
        let t2 = json!(["Poetry"]);
        for (path, body) in [
            ("/sessions/1", &s1),
            ("/sessions/2", &s2),
            ("/teachers/1/sessions", &t1),
            ("/teachers/2/sessions", &t2),
        ] {
            w.assert_fresh(path, body, 1).await;
            w.assert_hit(path, body, 1).await;
        }
        let before = w.cache.stats().routes[postgres::SOURCE].invalidations;

        // UPDATE: session 1 and its teacher's list; nothing else.
        w.change("UPDATE sessions SET title = 'Algebra II' WHERE id = 1", 1)
            .await;
        let s1 = session_json(1, 1, "Algebra II");
        let t1 = json!(["Algebra II", "Geometry"]);
        w.assert_fresh("/sessions/1", &s1, 2).await;
        w.assert_fresh("/teachers/1/sessions", &t1, 2).await;
        w.assert_hit("/sessions/2", &s2, 1).await;
        w.assert_hit("/teachers/2/sessions", &t2, 1).await;

        // INSERT: teacher 2's list only.
        w.change(
            "INSERT INTO sessions (teacher_id, title) VALUES (2, 'Prose')",
            1,
        )
        .await;
        let t2 = json!(["Poetry", "Prose"]);
        w.assert_fresh("/teachers/2/sessions", &t2, 2).await;
        w.assert_hit("/teachers/1/sessions", &t1, 2).await;
        w.assert_hit("/sessions/1", &s1, 2).await;

        // DELETE: session 2 and teacher 1's list.
        w.change("DELETE FROM sessions WHERE id = 2", 1).await;
        let gone = w.get("/sessions/2").await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(w.origin.calls("/sessions/2"), 2);
        w.assert_fresh("/teachers/1/sessions", &json!(["Algebra II"]), 3)
            .await;
        w.assert_hit("/sessions/1", &s1, 2).await;
        w.assert_hit("/teachers/2/sessions", &t2, 2).await;

        // Counted as the database's invalidations.
        let after = w.cache.stats().routes[postgres::SOURCE].invalidations;
        assert!(
            after > before,
            "invalidations under route postgres: {before} -> {after}"
        );
        assert_eq!(w.listener.notifications_rejected(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_rolled_back_change_invalidates_nothing() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let s1 = session_json(1, 1, "Algebra");
        w.assert_fresh("/sessions/1", &s1, 1).await;
        w.assert_hit("/sessions/1", &s1, 1).await;
        let before = w.listener.notifications_applied();

        exec(
            &w.admin,
            "BEGIN; UPDATE sessions SET title = 'Nope' WHERE id = 1; ROLLBACK;",
        )
        .await;
        // A savepoint rolled back takes its tags with it; the rest of its
        // transaction still sends its own. Notifications arrive in commit
        // order: once this commit's has been applied, the rolled-back one
        // would have been too.
        w.change(
            "BEGIN;
             SAVEPOINT first;
             UPDATE sessions SET title = 'Nope again' WHERE id = 1;
             ROLLBACK TO SAVEPOINT first;
             UPDATE sessions SET title = 'Sonnets' WHERE id = 3;
             COMMIT;",
            1,
        )
        .await;
        assert_eq!(w.listener.notifications_applied(), before + 1);
        w.assert_hit("/sessions/1", &s1, 1).await;
        w.assert_fresh("/sessions/3", &session_json(3, 2, "Sonnets"), 1)
            .await;
    })
    .await;
}

#[tokio::test]
async fn moving_a_session_to_another_teacher_invalidates_both_teachers() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let t1 = json!(["Algebra", "Geometry"]);
        let t2 = json!(["Poetry"]);
        w.assert_fresh("/teachers/1/sessions", &t1, 1).await;
        w.assert_fresh("/teachers/2/sessions", &t2, 1).await;
        w.assert_fresh("/sessions/2", &session_json(2, 1, "Geometry"), 1)
            .await;

        w.change("UPDATE sessions SET teacher_id = 2 WHERE id = 2", 1)
            .await;
        w.assert_fresh("/teachers/1/sessions", &json!(["Algebra"]), 2)
            .await;
        w.assert_fresh("/teachers/2/sessions", &json!(["Geometry", "Poetry"]), 2)
            .await;
        w.assert_fresh("/sessions/2", &session_json(2, 2, "Geometry"), 2)
            .await;
    })
    .await;
}

/// A connection of the test's own that counts what is sent on the
/// `tagcache` channel.
struct Tap {
    client: Client,
    received: mpsc::UnboundedReceiver<(String, String)>,
}

impl Tap {
    async fn start(server: &PostgresServer) -> Tap {
        let conninfo = format!("{} user=postgres", server.conninfo());
        let (client, mut connection) =
            within("tap connects", tokio_postgres::connect(&conninfo, NoTls))
                .await
                .expect("connect");
        let (sender, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = sender.send((n.channel().to_owned(), n.payload().to_owned()));
                }
            }
        });
        exec(&client, "LISTEN tagcache; LISTEN tap_marker").await;
        Tap { client, received }
    }

    /// The payloads sent on `tagcache` since the last call: a marker
    /// notified now arrives after them all (notifications are delivered in
    /// commit order).
    async fn payloads(&mut self) -> Vec<String> {
        exec(&self.client, "NOTIFY tap_marker").await;
        let mut payloads = Vec::new();
        loop {
            let (channel, payload) = within("the tap's marker", self.received.recv())
                .await
                .expect("tap connection open");
            match channel.as_str() {
                "tap_marker" => return payloads,
                _ => payloads.push(payload),
            }
        }
    }
}

#[tokio::test]
async fn a_tag_set_larger_than_one_payload_arrives_whole() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let mut tap = Tap::start(&w.server).await;
        let (first, last, outside) = (0, 1999, 2000);
        for n in [first, 1000, last, outside] {
            let body = get_reply(&w.app, &format!("/items/{n}")).await;
            assert_eq!(body.text(), format!("item {n}"));
            assert!(get_reply(&w.app, &format!("/items/{n}")).await.is_hit());
        }

        let before = w.listener.notifications_applied();
        exec(
            &w.admin,
            "SELECT tagcache_invalidate(ARRAY(
                 SELECT format('item:%s:%s', lpad(n::text, 5, '0'), repeat('x', 40))
                 FROM generate_series(0, 1999) AS n))",
        )
        .await;
        let payloads = tap.payloads().await;
        let bytes: usize = payloads.iter().map(String::len).sum();
        assert!(bytes > 100_000, "the tags take {bytes} bytes");
        assert!(payloads.len() > 1, "one payload cannot hold them");
        for payload in &payloads {
            assert!(payload.len() < 8000, "payload of {} bytes", payload.len());
        }
        // Every tag arrived, once.
        let mut tags: Vec<String> = payloads
            .iter()
            .flat_map(|p| {
                let value: Value = serde_json::from_str(p).expect("JSON payload");
                assert_eq!(value["soft"], json!(false));
                value["tags"].as_array().expect("tags").clone()
            })
            .map(|t| t.as_str().expect("a string").to_owned())
            .collect();
        tags.sort();
        let expected: Vec<String> = (0..2000).map(item_tag).collect();
        assert_eq!(tags, expected);

        w.until_applied(before + payloads.len() as u64).await;
        for n in [first, 1000, last] {
            let reply = get_reply(&w.app, &format!("/items/{n}")).await;
            assert!(!reply.is_hit(), "item {n}: {:?}", reply.cache_status());
            assert_eq!(w.origin.calls(&format!("/items/{n}")), 2);
        }
        assert!(get_reply(&w.app, &format!("/items/{outside}"))
            .await
            .is_hit());
    })
    .await;
}

#[tokio::test]
async fn a_bulk_update_of_10_000_rows_sends_few_notifications() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let mut tap = Tap::start(&w.server).await;
        exec(
            &w.admin,
            "INSERT INTO sessions (teacher_id, title)
             SELECT 3 + n % 10, 'Bulk ' || n FROM generate_series(1, 10000) AS n",
        )
        .await;
        // The insert's own notifications are applied before anything is
        // filled, so none of them can reach what follows.
        let inserted = tap.payloads().await;
        w.until_applied(inserted.len() as u64).await;
        let s1 = session_json(1, 1, "Algebra");
        w.assert_fresh("/sessions/1", &s1, 1).await;
        let t5 = w.get("/teachers/5/sessions").await;
        assert!(!t5.is_hit(), "{:?}", t5.cache_status());
        assert_eq!(t5.json().as_array().map(Vec::len), Some(1000));
        w.assert_hit("/teachers/5/sessions", &t5.json(), 1).await;
        let before = w.listener.notifications_applied();

        exec(
            &w.admin,
            "UPDATE sessions SET title = title || '!' WHERE teacher_id >= 3",
        )
        .await;
        let payloads = tap.payloads().await;
        // 10 000 session tags and 10 teacher tags fill about 20 payloads;
        // one notification per row would be 10 000.
        assert!(
            (2..=40).contains(&payloads.len()),
            "{} notifications for one bulk update",
            payloads.len()
        );
        w.until_applied(before + payloads.len() as u64).await;
        let reply = w.get("/teachers/5/sessions").await;
        assert!(!reply.is_hit(), "{:?}", reply.cache_status());
        assert!(reply.json()[0].as_str().unwrap().ends_with('!'));
        w.assert_hit("/sessions/1", &s1, 1).await;
    })
    .await;
}

#[tokio::test]
async fn a_killed_listener_connection_fails_closed_and_serves_no_stale_hit_after_reconnecting() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let s1 = session_json(1, 1, "Algebra");
        w.assert_fresh("/sessions/1", &s1, 1).await;
        w.assert_hit("/sessions/1", &s1, 1).await;

        // The listener may not log in again until the test allows it, so
        // the change below is certainly made while it is away.
        exec(&w.admin, "ALTER ROLE listener NOLOGIN").await;
        let pid = w.listener.backend_pid().expect("the listener's backend");
        let killed = w
            .admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("pg_terminate_backend");
        assert!(killed.get::<_, bool>(0));
        let listener = &w.listener;
        eventually("the listener notices it lost its session", || async move {
            !listener.is_in_sync()
        })
        .await;

        // Its notification is lost: nobody listens.
        exec(
            &w.admin,
            "UPDATE sessions SET title = 'Calculus' WHERE id = 1",
        )
        .await;
        let s1 = session_json(1, 1, "Calculus");
        // Out of sync: every lookup goes to the origin, nothing is stored.
        w.assert_fresh("/sessions/1", &s1, 2).await;
        w.assert_fresh("/sessions/1", &s1, 3).await;
        w.assert_fresh("/sessions/2", &session_json(2, 1, "Geometry"), 1)
            .await;

        exec(&w.admin, "ALTER ROLE listener LOGIN").await;
        w.until_in_sync(2).await;
        // Everything filled before the reconnection was invalidated.
        w.assert_fresh("/sessions/1", &s1, 4).await;
        w.assert_hit("/sessions/1", &s1, 4).await;

        // And the new session receives what follows.
        w.change("UPDATE sessions SET title = 'Calculus II' WHERE id = 1", 1)
            .await;
        w.assert_fresh("/sessions/1", &session_json(1, 1, "Calculus II"), 5)
            .await;
    })
    .await;
}

#[tokio::test]
async fn a_fill_that_read_before_the_commit_is_never_served_after_it() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let path = "/slow/sessions/1";
        // The origin reads "Algebra", then waits at the gate.
        let app = w.app.clone();
        let slow = spawn("the slow fill", async move { get_reply(&app, path).await });
        w.gate.arrived(1).await;

        // The change commits, and its notification is applied, while the
        // fill is still on its way.
        w.change("UPDATE sessions SET title = 'Topology' WHERE id = 1", 1)
            .await;
        w.gate.open();
        let late = slow.await.expect("the slow fill answers");
        // Its own request gets what it read (it started before the change)...
        assert_eq!(late.json(), session_json(1, 1, "Algebra"));
        assert!(
            !late.cache_status().contains("stored"),
            "{:?}",
            late.cache_status()
        );
        // ...but it was not stored: the next request reads the new title.
        let next = w.get(path).await;
        assert!(!next.is_hit(), "{:?}", next.cache_status());
        assert_eq!(next.json(), session_json(1, 1, "Topology"));
        assert_eq!(w.origin.calls(path), 2);
        let again = w.get(path).await;
        assert!(again.is_hit(), "{:?}", again.cache_status());
        assert_eq!(again.json(), session_json(1, 1, "Topology"));
    })
    .await;
}

#[tokio::test]
async fn unreadable_notifications_are_counted_and_ignored() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let s1 = session_json(1, 1, "Algebra");
        w.assert_fresh("/sessions/1", &s1, 1).await;
        exec(
            &w.admin,
            r#"NOTIFY tagcache, 'teacher:1';
               NOTIFY tagcache, '{"v":1,"tags":[1]}';
               NOTIFY tagcache, '{"v":9,"tags":["session:1"]}';
               NOTIFY tagcache, '{"v":1,"tags":["session:1"'"#,
        )
        .await;
        let listener = &w.listener;
        eventually("four rejected notifications", || async move {
            listener.notifications_rejected() == 4
        })
        .await;
        assert!(w.listener.is_in_sync());
        assert_eq!(w.listener.resyncs(), 1);
        w.assert_hit("/sessions/1", &s1, 1).await;

        // A payload written by hand in the documented shape is applied.
        w.change(
            r#"NOTIFY tagcache, '{"v":1,"soft":false,"tags":["session:1"]}'"#,
            1,
        )
        .await;
        w.assert_fresh("/sessions/1", &s1, 2).await;
    })
    .await;
}

#[tokio::test]
async fn a_listener_that_cannot_connect_keeps_every_lookup_a_miss() {
    backstop(async {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let cache = Cache::default();
        let config = PgListenerConfig::from_url(&format!("host=127.0.0.1 port={port} user=x"))
            .expect("config")
            .max_backoff(Duration::from_millis(50));
        let listener = PgInvalidations::listen(&cache, config);
        assert!(cache.is_out_of_sync(), "held from the start");

        let calls = support::harness::Counter::default();
        let app =
            support::apps::counted(&cache, |l| l, calls.clone(), |n, _| support::apps::plain(n));
        for round in 1..=3 {
            let reply = get_reply(&app, "/r").await;
            assert!(!reply.is_hit(), "{:?}", reply.cache_status());
            assert_eq!(calls.get(), round);
        }
        assert!(!listener.is_in_sync());
        assert_eq!(listener.resyncs(), 0);

        // Dropping the listener stops it and lets go of the cache.
        drop(listener);
        let cache = &cache;
        eventually("the dropped listener releases the cache", || async move {
            !cache.is_out_of_sync()
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn the_documented_statement_level_trigger_invalidates_old_and_new_owners() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        // The module docs' trigger for tables changed in bulk, in place of
        // the row-level one.
        exec(
            &w.admin,
            "DROP TRIGGER sessions_changed ON sessions;
             CREATE OR REPLACE FUNCTION sessions_updated() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM tagcache_invalidate(ARRAY(
                     SELECT DISTINCT t FROM (
                         SELECT 'session:' || id AS t FROM old_rows
                         UNION SELECT 'teacher:' || teacher_id FROM old_rows
                         UNION SELECT 'teacher:' || teacher_id FROM new_rows) AS tags));
                 RETURN NULL;
             END $$;
             CREATE TRIGGER sessions_updated AFTER UPDATE ON sessions
                 REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION sessions_updated();",
        )
        .await;
        let mut tap = Tap::start(&w.server).await;
        w.assert_fresh("/teachers/1/sessions", &json!(["Algebra", "Geometry"]), 1)
            .await;
        w.assert_fresh("/teachers/2/sessions", &json!(["Poetry"]), 1)
            .await;
        w.assert_fresh("/sessions/3", &session_json(3, 2, "Poetry"), 1)
            .await;

        // Both of teacher 1's sessions move to teacher 2 in one statement.
        let before = w.listener.notifications_applied();
        exec(
            &w.admin,
            "UPDATE sessions SET teacher_id = 2 WHERE teacher_id = 1",
        )
        .await;
        let payloads = tap.payloads().await;
        assert_eq!(payloads.len(), 1, "{payloads:?}");
        let sent: Value = serde_json::from_str(&payloads[0]).expect("JSON");
        assert_eq!(
            sent["tags"],
            json!(["session:1", "session:2", "teacher:1", "teacher:2"])
        );
        w.until_applied(before + 1).await;
        w.assert_fresh("/teachers/1/sessions", &json!([]), 2).await;
        w.assert_fresh(
            "/teachers/2/sessions",
            &json!(["Algebra", "Geometry", "Poetry"]),
            2,
        )
        .await;
        w.assert_hit("/sessions/3", &session_json(3, 2, "Poetry"), 1)
            .await;
    })
    .await;
}

#[tokio::test]
async fn a_soft_invalidation_from_sql_serves_stale_while_one_refresh_runs() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        let path = "/soft/sessions/1";
        let counted = "/sessions/1"; // the handler counts its data's path
        w.get(path).await;
        assert!(w.get(path).await.is_hit());
        assert_eq!(w.origin.calls(counted), 1);

        // A change whose transaction asks for a soft invalidation only (the
        // row trigger, which invalidates hard, is off for it).
        w.change(
            "BEGIN;
             ALTER TABLE sessions DISABLE TRIGGER sessions_changed;
             UPDATE sessions SET title = 'Revised' WHERE id = 1;
             SELECT tagcache_invalidate(ARRAY['session:1'], soft => true);
             ALTER TABLE sessions ENABLE TRIGGER sessions_changed;
             COMMIT;",
            1,
        )
        .await;
        let stale = w.get(path).await;
        assert!(
            stale.cache_status().contains("fwd=stale"),
            "{:?}",
            stale.cache_status()
        );
        assert_eq!(stale.json()["title"], "Algebra");
        // One background refresh, after which the entry is fresh again.
        let app = &w.app;
        eventually("the refreshed entry is a hit", || async move {
            get_reply(app, path).await.is_hit()
        })
        .await;
        let fresh = w.get(path).await;
        assert!(fresh.is_hit(), "{:?}", fresh.cache_status());
        assert_eq!(fresh.json()["title"], "Revised");
        assert_eq!(w.origin.calls(counted), 2);
    })
    .await;
}

/// Resumes a stopped process when dropped, whatever the test did.
struct Thaw(i32);

impl Thaw {
    fn freeze(pid: i32) -> Thaw {
        signal("-STOP", pid);
        Thaw(pid)
    }
}

impl Drop for Thaw {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(signal: &str, pid: i32) {
    let status = std::process::Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn a_session_that_stops_answering_is_noticed_by_the_checks() {
    let fast_checks = |config: PgListenerConfig| {
        config
            .ping_interval(Duration::from_millis(50))
            .response_timeout(Duration::from_millis(500))
    };
    let Some(w) = World::start_with(Cache::default(), fast_checks).await else {
        return;
    };
    backstop(async {
        let s1 = session_json(1, 1, "Algebra");
        w.assert_fresh("/sessions/1", &s1, 1).await;
        w.assert_hit("/sessions/1", &s1, 1).await;

        // The listener's backend freezes: its connection stays open, but
        // nothing comes back on it, and nothing says so but the checks. It
        // may not log in again until the test allows it, so the change
        // below is certainly made while it is away.
        exec(&w.admin, "ALTER ROLE listener NOLOGIN").await;
        let pid = w.listener.backend_pid().expect("the listener's backend");
        let frozen = Thaw::freeze(pid);
        let listener = &w.listener;
        eventually(
            "the listener notices its session stopped answering",
            || async move { !listener.is_in_sync() },
        )
        .await;
        exec(
            &w.admin,
            "UPDATE sessions SET title = 'Frozen out' WHERE id = 1",
        )
        .await;
        let s1 = session_json(1, 1, "Frozen out");
        w.assert_fresh("/sessions/1", &s1, 2).await;

        w.assert_fresh("/sessions/1", &s1, 3).await;

        // It reconnects on a new backend, and purges on the way.
        exec(&w.admin, "ALTER ROLE listener LOGIN").await;
        w.until_in_sync(2).await;
        assert_ne!(w.listener.backend_pid(), Some(pid));
        drop(frozen);
        w.assert_fresh("/sessions/1", &s1, 4).await;
        w.assert_hit("/sessions/1", &s1, 4).await;
    })
    .await;
}

#[tokio::test]
async fn tags_with_any_characters_arrive_intact_and_an_oversized_one_invalidates_everything() {
    let Some(w) = World::start().await else {
        return;
    };
    backstop(async {
        // `we"ird\ tag é` and a plain neighbour, percent-encoded in the path.
        let weird = "/tag/we%22ird%5C%20tag%20%C3%A9";
        let plain = "/tag/plain";
        let weird_calls = r#"/tag/we"ird\ tag é"#;
        for path in [weird, plain] {
            w.get(path).await;
            assert!(w.get(path).await.is_hit(), "{path}");
        }

        w.change(r#"SELECT tagcache_invalidate(ARRAY['we"ird\ tag é'])"#, 1)
            .await;
        let reply = w.get(weird).await;
        assert!(!reply.is_hit(), "{:?}", reply.cache_status());
        assert_eq!(reply.text(), r#"tagged we"ird\ tag é"#);
        assert_eq!(w.origin.calls(weird_calls), 2);
        assert!(w.get(plain).await.is_hit());

        // No notification can carry a 9000-byte tag: everything goes.
        w.change("SELECT tagcache_invalidate(ARRAY[repeat('x', 9000)])", 1)
            .await;
        assert!(!w.get(plain).await.is_hit());
        assert!(!w.get(weird).await.is_hit());
        assert_eq!(w.origin.calls("/tag/plain"), 2);
        assert_eq!(w.origin.calls(weird_calls), 3);
    })
    .await;
}

#[tokio::test]
async fn the_migration_file_works_in_a_schema_of_ones_choice_and_installs_run_concurrently() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let admin = connect(&server, "postgres").await;
        // As `psql -f sql/tagcache_postgres.sql` after `SET search_path`.
        exec(&admin, "CREATE SCHEMA app; SET search_path TO app;").await;
        exec(&admin, postgres::MIGRATION).await;
        exec(&admin, postgres::MIGRATION).await;
        exec(&admin, "RESET search_path").await;

        // Two instances installing into one new schema at once.
        let (a, b) = (
            connect(&server, "postgres").await,
            connect(&server, "postgres").await,
        );
        let (first, second) = within("two concurrent installs", async {
            tokio::join!(
                postgres::install(&a, "other"),
                postgres::install(&b, "other")
            )
        })
        .await;
        first.expect("first install");
        second.expect("second install");

        // Called from sessions whose search_path does not name the schemas,
        // the functions still find their tables.
        let mut tap = Tap::start(&server).await;
        exec(
            &admin,
            "SET search_path TO pg_catalog;
             BEGIN;
             SELECT app.tagcache_invalidate(ARRAY['a:1', 'a:1', NULL, 'a:2']);
             SELECT other.tagcache_invalidate(ARRAY['b:1'], true);
             COMMIT;
             SELECT app.tagcache_invalidate_all();",
        )
        .await;
        let payloads: Vec<Value> = tap
            .payloads()
            .await
            .iter()
            .map(|p| serde_json::from_str(p).expect("JSON"))
            .collect();
        assert_eq!(
            payloads,
            vec![
                json!({"v": 1, "soft": false, "tags": ["a:1", "a:2"]}),
                json!({"v": 1, "soft": true, "tags": ["b:1"]}),
                json!({"v": 1, "all": true}),
            ]
        );
    })
    .await;
}

/// An in-memory store whose invalidations fail while `failing` is set,
/// like a network store that is down.
struct Flaky {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
}

impl Flaky {
    fn refuse(&self) -> Option<StoreError> {
        self.failing
            .load(Ordering::SeqCst)
            .then(|| StoreError::new(StoreErrorKind::Unavailable, "down for the test"))
    }
}

impl Store for Flaky {
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        self.inner.get(key)
    }
    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()> {
        self.inner.put(key, entry)
    }
    fn remove(&self, key: KeyHash) -> StoreFuture<()> {
        self.inner.remove(key)
    }
    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        self.inner.fill_stamp()
    }
    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp> {
        match self.refuse() {
            Some(error) => StoreFuture::ready(Err(error)),
            None => self.inner.invalidate(tags, mode),
        }
    }
    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        match self.refuse() {
            Some(error) => StoreFuture::ready(Err(error)),
            None => self.inner.invalidate_all(),
        }
    }
    fn validity(&self, entry: &Entry) -> Validity {
        self.inner.validity(entry)
    }
    fn max_entry_life(&self) -> Duration {
        self.inner.max_entry_life()
    }
    fn kind(&self) -> &'static str {
        "flaky"
    }
}

#[tokio::test]
async fn a_notification_the_store_fails_to_take_puts_the_listener_out_of_sync_until_it_can_purge() {
    let failing = Arc::new(AtomicBool::new(false));
    let cache = Cache::new(Flaky {
        inner: MemoryStore::default(),
        failing: failing.clone(),
    });
    let Some(w) = World::start_with(cache, |config| config).await else {
        return;
    };
    backstop(async {
        let s1 = session_json(1, 1, "Algebra");
        w.assert_fresh("/sessions/1", &s1, 1).await;
        w.assert_hit("/sessions/1", &s1, 1).await;

        failing.store(true, Ordering::SeqCst);
        exec(&w.admin, "UPDATE sessions SET title = 'Lost?' WHERE id = 1").await;
        let listener = &w.listener;
        eventually("the listener gives up its session", || async move {
            !listener.is_in_sync()
        })
        .await;
        assert_eq!(w.listener.notifications_applied(), 0);
        let s1 = session_json(1, 1, "Lost?");
        // The invalidation never reached the store; misses cover for it.
        w.assert_fresh("/sessions/1", &s1, 2).await;
        w.assert_fresh("/sessions/1", &s1, 3).await;
        assert_eq!(w.listener.resyncs(), 1, "no resync while the store refuses");

        failing.store(false, Ordering::SeqCst);
        w.until_in_sync(2).await;
        w.assert_fresh("/sessions/1", &s1, 4).await;
        w.assert_hit("/sessions/1", &s1, 4).await;
    })
    .await;
}
