//! Invalidations driven by PostgreSQL: each test starts its own server.
#![cfg(feature = "postgres")]

mod support;

use support::deadline::{backstop, within};
use support::postgres_server::PostgresServer;

#[tokio::test]
async fn the_test_server_answers_on_its_own_port() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let (client, connection) = within(
            "connecting to the test server",
            tokio_postgres::connect(&server.conninfo(), tokio_postgres::NoTls),
        )
        .await
        .expect("connect");
        tokio::spawn(connection);
        let row = client.query_one("SHOW port", &[]).await.expect("SHOW port");
        let port: String = row.get(0);
        assert_eq!(port, server.port().to_string());
        assert_ne!(server.port(), 5432);
    })
    .await;
}
