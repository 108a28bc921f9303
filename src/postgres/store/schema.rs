//! The store's tables and functions, installed in its schema.

use tokio_postgres::Client;

use crate::postgres::sql::quote_ident;

/// Serializes concurrent installs of the store ("tcstore" in ASCII).
const INSTALL_LOCK: i64 = 0x7463_7374_6f72_6500;

/// The store's SQL. Entries and stamps are UNLOGGED: a cache needs no WAL,
/// and after a crash both tables are empty together, which is consistent
/// (the clock follows wall time, so it never goes back far).
const SQL: &str = r#"
CREATE UNLOGGED TABLE IF NOT EXISTS tagcache_store_entries (
    key bytea PRIMARY KEY,
    expires_at bigint NOT NULL,
    entry bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS tagcache_store_entries_expiry
    ON tagcache_store_entries (expires_at);

-- mode: 'h' hard, 's' soft, 'f' the floor of invalidate_all (tag '').
CREATE UNLOGGED TABLE IF NOT EXISTS tagcache_store_stamps (
    mode text NOT NULL,
    tag text NOT NULL,
    stamp bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tagcache_store_stamps_once
    ON tagcache_store_stamps (mode, md5(tag));
CREATE INDEX IF NOT EXISTS tagcache_store_stamps_by_stamp
    ON tagcache_store_stamps (stamp);

CREATE UNLOGGED TABLE IF NOT EXISTS tagcache_store_clock (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint NOT NULL
);
INSERT INTO tagcache_store_clock (last) VALUES (0) ON CONFLICT DO NOTHING;

-- The next stamp: microseconds of the server's clock, or one past the last
-- stamp if that is later. The row lock it takes is held to the end of the
-- calling transaction, so invalidations commit in the order of their
-- stamps: a reader that has seen stamp s has seen every stamp below it.
CREATE OR REPLACE FUNCTION tagcache_store_stamp() RETURNS bigint
LANGUAGE sql SET search_path FROM CURRENT AS $fn$
    UPDATE tagcache_store_clock
    SET last = greatest(last + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
    RETURNING last;
$fn$;

-- Records a stamp for each tag (or the floor, for mode 'f') and tells
-- every instance, in one statement.
CREATE OR REPLACE FUNCTION tagcache_store_invalidate(p_tags text[], p_mode text, p_channel text)
RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    s bigint := tagcache_store_stamp();
BEGIN
    INSERT INTO tagcache_store_stamps AS old (mode, tag, stamp)
        SELECT DISTINCT p_mode, t, s
        FROM unnest(CASE WHEN p_mode = 'f' THEN ARRAY[''] ELSE p_tags END) AS t
        WHERE t IS NOT NULL
        ON CONFLICT (mode, md5(tag)) DO UPDATE SET stamp = greatest(old.stamp, excluded.stamp);
    PERFORM pg_notify(p_channel, s::text);
    RETURN s;
END
$fn$;
"#;

/// Installs the store's SQL in `schema` (creating it), idempotently.
pub(crate) async fn install(client: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    let quoted = quote_ident(schema);
    let path = quoted.replace('\'', "''");
    let batch = format!(
        "SELECT set_config('client_min_messages', 'warning', true);
         SELECT pg_advisory_xact_lock({INSTALL_LOCK});
         CREATE SCHEMA IF NOT EXISTS {quoted};
         SELECT set_config('search_path', '{path}', true);
         {SQL}"
    );
    client.batch_execute(&batch).await
}
