//! The `classroom` example over PostgreSQL: its data in tables of a server
//! the test starts, changed with SQL from outside the app (as with `psql`),
//! and the next GET fresh. In-process with the example's own router, and
//! once as the example binary with `--database`.
#![cfg(feature = "postgres")]

#[path = "../examples/classroom/app.rs"]
mod app;
mod support;

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;
use tagcache::postgres::{PgInvalidations, PgListenerConfig};
use tagcache::Cache;
use tokio_postgres::{Client, NoTls};

use app::{router_over, AppConfig, Database, PgDb};
use support::classroom::{
    assert_hit, assert_not_hit, example_binary, prometheus, start_example, titles,
};
use support::deadline::{backstop, eventually, within, Lazy};
use support::http::Server;
use support::postgres_server::PostgresServer;

/// A client outside the app, standing in for `psql`.
async fn psql(server: &PostgresServer) -> Client {
    let (client, connection) = within(
        "connecting to the test server",
        tokio_postgres::connect(&server.conninfo(), NoTls),
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    client
}

async fn exec(client: &Client, sql: &str) {
    within(format!("SQL {sql:?}"), client.batch_execute(sql))
        .await
        .unwrap_or_else(|e| panic!("SQL {sql:?} failed: {e:?}"));
}

/// The example's app over PostgreSQL, served on loopback, with the
/// listener the binary starts.
struct App {
    server: Server,
    listener: PgInvalidations,
}

impl App {
    async fn start(pg: &PostgresServer) -> App {
        let cache = Cache::builder().cache_name("classroom").build();
        let db = within("the example's database setup", PgDb::connect(&pg.url()))
            .await
            .expect("connect and set up");
        let config = PgListenerConfig::from_url(&pg.url()).expect("listener config");
        let listener = PgInvalidations::listen(&cache, config);
        let router = router_over(
            AppConfig {
                origin_delay: Duration::ZERO,
                cache,
                metrics: Some(prometheus()),
            },
            Database::Postgres(Arc::new(db)),
        );
        let app = App {
            server: Server::serve(router).await,
            listener,
        };
        let listener = &app.listener;
        eventually("the listener is in sync", || async move {
            listener.is_in_sync()
        })
        .await;
        app
    }

    /// Runs `sql` outside the app and waits until the listener applied
    /// one more notification.
    async fn change(&self, psql: &Client, sql: &str) {
        let before = self.listener.notifications_applied();
        exec(psql, sql).await;
        let listener = &self.listener;
        let what = Lazy(move || format!("a notification applied after {sql:?} ({listener:?})"));
        eventually(
            what,
            || async move { listener.notifications_applied() > before },
        )
        .await;
    }
}

#[tokio::test]
async fn data_in_postgres_keeps_the_json_contract_and_sql_changes_invalidate() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let app = App::start(&pg).await;
        let server = &app.server;
        let psql = psql(&pg).await;

        // Seeded like the in-memory data.
        let list = server.get("/api/teachers/7/sessions").await;
        assert_eq!(list.status, StatusCode::OK);
        assert_not_hit(&list, "first list");
        assert_eq!(
            titles(&list.json()),
            (1..=5)
                .map(|n| format!("Teacher 7 session {n}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            server.get("/api/sessions/33").await.json(),
            json!({"id": 33, "teacher_id": 7, "title": "Teacher 7 session 3", "status": "active"})
        );
        let dashboard = server.get("/api/dashboard/teacher/7").await.json();
        assert_eq!(
            dashboard,
            json!({"teacher_id": 7, "sessions": 5, "active": 3, "ended": 2})
        );
        assert_hit(&server.get("/api/teachers/7/sessions").await, "list again");
        assert_hit(&server.get("/api/sessions/33").await, "detail again");
        assert_eq!(server.origin_calls("session-list").await, 1);

        // A change made with SQL, outside the app: the next GET is fresh.
        app.change(
            &psql,
            "UPDATE classroom.sessions SET title = 'Renamed in psql' WHERE id = 33",
        )
        .await;
        let after = server.get("/api/sessions/33").await;
        assert_not_hit(&after, "detail after the SQL update");
        assert_eq!(after.json()["title"], "Renamed in psql");
        let list = server.get("/api/teachers/7/sessions").await;
        assert_not_hit(&list, "list after the SQL update");
        assert!(titles(&list.json()).contains(&"Renamed in psql".to_owned()));
        assert_eq!(server.origin_calls("session-list").await, 2);

        // A session moved to another teacher, in SQL: both lists change.
        assert_hit(&server.get("/api/teachers/7/sessions").await, "list cached");
        server.get("/api/teachers/8/sessions").await;
        assert_hit(&server.get("/api/teachers/8/sessions").await, "other list");
        app.change(
            &psql,
            "UPDATE classroom.sessions SET teacher_id = 8 WHERE id = 33",
        )
        .await;
        assert_eq!(
            titles(&server.get("/api/teachers/7/sessions").await.json()).len(),
            4
        );
        assert_eq!(
            titles(&server.get("/api/teachers/8/sessions").await.json()).len(),
            6
        );

        // The API's own mutations write to PostgreSQL and still invalidate
        // through their layers, before they answer.
        server.get("/api/sessions/1").await;
        assert_hit(&server.get("/api/sessions/1").await, "detail cached");
        let updated = server
            .send(
                Method::PUT,
                "/api/sessions/1",
                None,
                Some(r#"{"status": "ended"}"#),
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK);
        let after = server.get("/api/sessions/1").await;
        assert_not_hit(&after, "detail after PUT");
        assert_eq!(after.json()["status"], "ended");
        let row = psql
            .query_one("SELECT status FROM classroom.sessions WHERE id = 1", &[])
            .await
            .expect("read the row");
        assert_eq!(row.get::<_, String>(0), "ended");
        let created = server
            .send(
                Method::POST,
                "/api/teachers/1/sessions",
                None,
                Some(r#"{"title": "Fractions"}"#),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        assert_eq!(created.json()["id"], 51);
        let deleted = server
            .send(Method::DELETE, "/api/sessions/51", None, None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_eq!(
            server.get("/api/sessions/51").await.status,
            StatusCode::NOT_FOUND
        );

        // The tables exist now: another start keeps their data.
        drop(app);
        let again = App::start(&pg).await;
        let detail = again.server.get("/api/sessions/33").await.json();
        assert_eq!(detail["title"], "Renamed in psql");
        assert_eq!(detail["teacher_id"], 8);
    })
    .await;
}

/// A metric's value in `/metrics`, 0 when absent.
async fn metric(server: &Server, line_start: &str) -> f64 {
    let text = server.get("/metrics").await.text();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_example_binary_keeps_its_data_in_postgres_with_database() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let binary = example_binary().await;
    backstop(async {
        let url = pg.url();
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--origin-delay-ms",
            "0",
            "--database",
            &url,
        ];
        let (_child, addr) = start_example(&binary, &args).await;
        let server = Server::connect(addr);
        let in_sync = r#"tagcache_pg_listener_in_sync{channel="tagcache"}"#;
        let applied = r#"tagcache_pg_notifications_total{channel="tagcache"}"#;
        let server = &server;
        eventually("the example's listener is in sync", || async move {
            metric(server, in_sync).await == 1.0
        })
        .await;

        let path = "/api/teachers/2/sessions";
        assert_not_hit(&server.get(path).await, "first GET");
        assert_hit(&server.get(path).await, "second GET");

        // As in the README: change a row with psql; the next GET is fresh.
        let before = metric(server, applied).await;
        let psql = psql(&pg).await;
        exec(
            &psql,
            "UPDATE classroom.sessions SET title = 'From psql' WHERE id = 6",
        )
        .await;
        eventually("the example applied the notification", || async move {
            metric(server, applied).await > before
        })
        .await;
        let fresh = server.get(path).await;
        assert_not_hit(&fresh, "GET after the SQL update");
        assert_eq!(titles(&fresh.json())[0], "From psql");
    })
    .await;
}
