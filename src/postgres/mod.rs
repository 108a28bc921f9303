//! Invalidations driven by the database (feature `postgres`): triggers in
//! PostgreSQL name the tags a change touches, and every instance's cache
//! forgets the responses that carry them, however the data changed (the
//! application, a migration, a `psql` session, another service).
//!
//! ```no_run
//! use tagcache::postgres::{self, PgInvalidations, PgListenerConfig};
//! use tagcache::Cache;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgres://app@127.0.0.1:5432/app";
//! let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! postgres::install(&client, "public").await?; // or apply sql/tagcache_postgres.sql
//! client
//!     .batch_execute(
//!         "CREATE OR REPLACE FUNCTION sessions_changed() RETURNS trigger
//!          LANGUAGE plpgsql AS $$
//!          BEGIN
//!              IF TG_OP IN ('UPDATE', 'DELETE') THEN
//!                  PERFORM tagcache_invalidate(ARRAY['session:' || OLD.id, 'teacher:' || OLD.teacher_id]);
//!              END IF;
//!              IF TG_OP IN ('INSERT', 'UPDATE') THEN
//!                  PERFORM tagcache_invalidate(ARRAY['session:' || NEW.id, 'teacher:' || NEW.teacher_id]);
//!              END IF;
//!              RETURN NULL;
//!          END $$;
//!          CREATE OR REPLACE TRIGGER sessions_changed
//!              AFTER INSERT OR UPDATE OR DELETE ON sessions
//!              FOR EACH ROW EXECUTE FUNCTION sessions_changed();",
//!     )
//!     .await?;
//!
//! let cache = Cache::default();
//! // Keep the handle for as long as the cache serves: dropping it stops
//! // the listener.
//! let invalidations = PgInvalidations::listen(&cache, PgListenerConfig::from_url(url)?);
//! # let _ = invalidations;
//! # Ok(()) }
//! ```
//!
//! # What the database sends
//!
//! [`install`] (or the migration file `sql/tagcache_postgres.sql`, applied
//! in a schema of your choice) creates `tagcache_invalidate(tags text[],
//! soft boolean default false)` for triggers to call, and
//! `tagcache_invalidate_all()`.
//!
//! * **At commit, never before, never after a rollback.** The tags are
//!   recorded for the transaction (in an `UNLOGGED` table, once each) and
//!   sent by one deferred trigger when it commits, with `pg_notify` on the
//!   channel `tagcache`. A transaction (or savepoint) that rolls back sends
//!   nothing.
//! * **Whole, however large.** A notification's payload must stay under
//!   8000 bytes, so the tags are sent in as many notifications as needed,
//!   all delivered together at commit; a single tag too long for any
//!   notification invalidates everything instead.
//! * **Few notifications per transaction.** Tags are deduplicated per
//!   transaction and sent once, at commit, whatever the number of rows or
//!   statements: a bulk `UPDATE` of 10 000 rows under a row-level trigger
//!   sends as many notifications as its distinct tags fill 7900-byte
//!   payloads (19 for 10 000 `session:<id>` tags and ten `teacher:<id>`
//!   ones), not 10 000. `NOTIFY` takes a global lock at
//!   commit, which serializes the commits of concurrent notifying
//!   transactions: few notifications keep that short. For tables changed
//!   in bulk, a statement-level trigger with transition tables also saves
//!   the per-row calls:
//!
//!   ```sql
//!   CREATE OR REPLACE FUNCTION sessions_updated() RETURNS trigger LANGUAGE plpgsql AS $$
//!   BEGIN
//!       PERFORM tagcache_invalidate(ARRAY(
//!           SELECT DISTINCT t FROM (
//!               SELECT 'session:' || id AS t FROM old_rows
//!               UNION SELECT 'teacher:' || teacher_id FROM old_rows
//!               UNION SELECT 'teacher:' || teacher_id FROM new_rows) AS tags));
//!       RETURN NULL;
//!   END $$;
//!   CREATE TRIGGER sessions_updated AFTER UPDATE ON sessions
//!       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
//!       FOR EACH STATEMENT EXECUTE FUNCTION sessions_updated();
//!   ```
//!
//!   (one such trigger per operation: `INSERT` has only `NEW TABLE`,
//!   `DELETE` only `OLD TABLE`).
//! * **Tags of the old and the new row.** A change that moves a row
//!   (a session given to another teacher) must invalidate what showed it
//!   before and what shows it now: use both `OLD` and `NEW`, as above.
//!
//! Payloads are JSON, `{"v":1,"soft":false,"tags":["session:1"]}` or
//! `{"v":1,"all":true}`, so a `LISTEN tagcache` in `psql` shows them as they
//! go. Other code may send the same shape; anything the listener cannot
//! read is counted (`tagcache_pg_rejected_notifications_total`) and logged
//! (at most once a second), never applied.
//!
//! The roles whose transactions call `tagcache_invalidate` need `INSERT`
//! and `DELETE` on `tagcache_pending` and `tagcache_flushes`. Prepared
//! transactions (`PREPARE TRANSACTION`) cannot notify, so they cannot
//! invalidate either.
//!
//! # The listener
//!
//! [`PgInvalidations::listen`] holds one session with `LISTEN tagcache` and
//! applies each notification to the [`Cache`] like
//! [`Cache::invalidate`] (or `invalidate_soft`, or `purge_all`) would, on
//! any store; those invalidations are counted and logged under the route
//! name [`SOURCE`] (`postgres`).
//!
//! The session must be a real one: a PgBouncer in *transaction* pooling
//! mode hands each transaction a different server connection, and a
//! `LISTEN` made through it is lost. Point the listener at the server (or
//! at a session-pooling proxy), even when the application's queries go
//! through transaction pooling.
//!
//! # Failing closed
//!
//! PostgreSQL delivers notifications only to sessions listening when the
//! transaction commits, and never replays them. So the listener counts
//! itself out of sync from the moment it starts, and again from the moment
//! its session fails (an error, the server closing it, or a `SELECT 1`
//! check every [`ping_interval`](PgListenerConfig::ping_interval) that does
//! not come back within the
//! [`response_timeout`](PgListenerConfig::response_timeout)). While out of
//! sync, it holds the cache with [`Cache::hold_out_of_sync`]: every lookup
//! misses and nothing is stored. It reconnects with backoff (50 ms
//! doubling to [`max_backoff`](PgListenerConfig::max_backoff)), logging the
//! loss once and the recovery once; then, after `LISTEN` has returned, it
//! invalidates every entry (`purge_all`) before releasing the hold. Every
//! entry filled before that is invalid, so none filled from data a lost
//! notification changed can be served; every commit after `LISTEN` is
//! delivered. A notification the store fails to take (Redis down) is
//! treated the same way, since its invalidation may be lost: the session
//! ends, and the listener resyncs once the store answers again. Gauge
//! `tagcache_pg_listener_in_sync` and
//! [`PgInvalidations::is_in_sync`] tell the state; each return to sync
//! counts in `tagcache_pg_listener_resyncs_total`.
//!
//! # The commit/fill race
//!
//! A request may read the database just before a transaction commits and
//! store its response just after the notification was applied. The tag
//! stamp rule ([`crate::stamp`]) already covers it: the fill took its stamp
//! before calling the origin, so before its read, so before the commit,
//! so before the notification arrived and took the invalidation's stamp.
//! The entry's fill stamp is older than its tag's stamp, and it is never
//! served, however late it is stored. (`tests/postgres_invalidation.rs`
//! holds such a fill at a gate across the commit to show it.)
//!
//! What remains is delivery time: between a commit and the moment its
//! notification is applied (normally a millisecond or so), a hit may still
//! answer with the old data, as with an instance that has not yet received
//! a Redis invalidation. A notification queue the listener drains slowly
//! widens that window, never loses an invalidation.
//!
//! # Several instances and Redis
//!
//! Run a listener in every instance. With an in-memory store each instance
//! must, since its entries are its own. With a shared Redis store one
//! listener would be enough to invalidate the shared entries, but an
//! instance without a listener cannot know when that listener is out of
//! sync, and would keep serving then; with one in every instance, each
//! instance fails closed on its own. The same notification is then applied
//! once per instance: harmless, since a tag invalidated again is only
//! invalidated at a later stamp (a few extra misses for entries filled
//! between the two). After a reconnect, the `purge_all` reaches the shared
//! store, so every instance loses its entries: a lost notification may
//! have been lost by all of them, and none can tell.
//!
//! # Metrics
//!
//! Labelled `channel`: `tagcache_pg_notifications_total` (applied),
//! `tagcache_pg_rejected_notifications_total`,
//! `tagcache_pg_listener_resyncs_total`, and the gauge
//! `tagcache_pg_listener_in_sync` (1 or 0). The invalidations themselves
//! are counted as those of the route `postgres`.
//!
//! # A store in PostgreSQL
//!
//! [`PostgresStore`] keeps the entries themselves in PostgreSQL, shared by
//! every instance, for applications that have a database and no Redis; see
//! its [module docs](store). It is independent of the listener: the
//! listener applies the database's own invalidations to any store,
//! `PostgresStore` included.
//!
//! # Why tokio-postgres
//!
//! It runs on the tokio runtime the crate already uses, and its
//! connection hands out notifications as messages
//! ([`tokio_postgres::AsyncMessage`]) of the session it drives, with no
//! pool, macros or compile-time query checking to pull in. The listener
//! needs one session and two simple queries. TLS is whatever
//! [`MakeTlsConnect`](tokio_postgres::tls::MakeTlsConnect) is given to
//! [`PgListenerConfig::tls`].
//!
//! [`Cache`]: crate::Cache
//! [`Cache::invalidate`]: crate::Cache::invalidate
//! [`Cache::hold_out_of_sync`]: crate::Cache::hold_out_of_sync

mod config;
mod connect;
mod listener;
mod payload;
mod sql;
pub mod store;
mod task;

pub use config::{
    PgListenerConfig, DEFAULT_APPLICATION_NAME, DEFAULT_MAX_BACKOFF, DEFAULT_PING_INTERVAL,
    DEFAULT_RESPONSE_TIMEOUT,
};
pub use listener::{PgInvalidations, SOURCE};
pub use sql::{install, CHANNEL, MIGRATION};
pub use store::{
    PostgresStore, PostgresStoreBuilder, DEFAULT_STORE_RESPONSE_TIMEOUT, DEFAULT_TRIM_INTERVAL,
};
