//! The SQL the crate installs: the `tagcache_invalidate` function that
//! triggers call, and what it needs (see `sql/tagcache_postgres.sql`, the
//! same text as a migration file).

use tokio_postgres::Client;

/// The migration, as shipped in `sql/tagcache_postgres.sql`: apply it in the
/// schema of your choice (`SET search_path TO myschema;` first), or call
/// [`install`].
pub const MIGRATION: &str = include_str!("../../sql/tagcache_postgres.sql");

/// The channel the installed functions notify, and the listener's default.
pub const CHANNEL: &str = "tagcache";

/// Key of the advisory lock that serializes concurrent installs (two
/// instances starting at once would otherwise race on `CREATE ... IF NOT
/// EXISTS`). Any constant works; this one spells "tagcache" in ASCII.
const INSTALL_LOCK: i64 = 0x7461_6763_6163_6865;

/// Installs (or updates) the SQL in `schema`, creating the schema if
/// needed: tables `tagcache_pending` and `tagcache_flushes`, functions
/// `tagcache_invalidate(tags text[], soft boolean default false)`,
/// `tagcache_invalidate_all()` and `tagcache_flush()`, and one deferred
/// trigger. Idempotent, and safe to run from several instances at once.
///
/// It runs as one transaction (one simple-query batch), so it either
/// installs everything or nothing.
///
/// ```no_run
/// # async fn run() -> Result<(), tokio_postgres::Error> {
/// let (client, connection) =
///     tokio_postgres::connect("host=127.0.0.1 user=app dbname=app", tokio_postgres::NoTls).await?;
/// tokio::spawn(connection);
/// tagcache::postgres::install(&client, "app").await?;
/// // Triggers now call app.tagcache_invalidate(ARRAY['teacher:7']).
/// # Ok(()) }
/// ```
pub async fn install(client: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&install_script(schema)).await
}

/// The batch [`install`] sends. A multi-statement simple query runs as one
/// implicit transaction, so `set_config(..., true)` holds for the whole
/// batch and the functions capture it with `SET search_path FROM CURRENT`.
/// The notices of `IF NOT EXISTS` on a second install are not worth a
/// line in the application's log each: only warnings are sent back.
fn install_script(schema: &str) -> String {
    let quoted = quote_ident(schema);
    format!(
        "SELECT set_config('client_min_messages', 'warning', true);\n\
         SELECT pg_advisory_xact_lock({INSTALL_LOCK});\n\
         CREATE SCHEMA IF NOT EXISTS {quoted};\n\
         SELECT set_config('search_path', {literal}, true);\n\
         {MIGRATION}",
        literal = quote_literal(&quoted),
    )
}

/// `name` as an SQL identifier: double-quoted, inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal: single-quoted, inner quotes doubled
/// (standard_conforming_strings, the default since PostgreSQL 9.1).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("\"o'k\""), "'\"o''k\"'");
    }

    #[test]
    fn the_install_script_sets_the_schema_before_the_migration() {
        let script = install_script("my app");
        let schema = script
            .find("CREATE SCHEMA IF NOT EXISTS \"my app\";")
            .unwrap();
        let path = script
            .find("set_config('search_path', '\"my app\"', true)")
            .unwrap();
        let migration = script.find("CREATE UNLOGGED TABLE").unwrap();
        assert!(schema < path && path < migration);
    }
}
