-- tagcache: cache invalidations sent by PostgreSQL (feature `postgres`).
--
-- Apply in the schema of your choice, as a migration:
--
--     SET search_path TO myschema;      -- the schema must exist
--     \i tagcache_postgres.sql
--
-- or let the application do it with `tagcache::postgres::install`. Applying
-- it again is harmless: it only replaces the functions and the trigger.
-- The functions remember the schema they were created in (`SET
-- search_path FROM CURRENT`), so triggers may call them from any
-- search_path as `myschema.tagcache_invalidate(...)`.
--
-- What it does: `tagcache_invalidate(tags, soft)` records the tags for the
-- current transaction; at commit, one deferred trigger sends them all on
-- the channel `tagcache` with pg_notify, in as few notifications as fit
-- (each under PostgreSQL's 8000-byte payload limit), however many rows or
-- statements asked. A transaction that rolls back sends nothing.
--
-- Payloads are JSON: {"v":1,"soft":false,"tags":["session:1","teacher:7"]},
-- or {"v":1,"all":true} to invalidate everything.

-- The tags asked for by transactions still running, at most once each.
-- UNLOGGED: rows live only until their transaction ends, so they need no
-- WAL and nothing is lost that matters if the server crashes.
CREATE UNLOGGED TABLE IF NOT EXISTS tagcache_pending (
    xact xid8 NOT NULL DEFAULT pg_current_xact_id(),
    soft boolean NOT NULL,
    tag text NOT NULL
);
-- Unique by hash: a btree entry cannot hold a tag of several kilobytes.
CREATE UNIQUE INDEX IF NOT EXISTS tagcache_pending_once
    ON tagcache_pending (xact, soft, md5(tag));

-- One row per transaction with tags pending: inserting it queues the one
-- deferred trigger event that sends them at commit.
CREATE UNLOGGED TABLE IF NOT EXISTS tagcache_flushes (
    xact xid8 PRIMARY KEY DEFAULT pg_current_xact_id()
);

-- Invalidates the entries carrying any of `tags` once the calling
-- transaction commits. `soft` marks them stale instead (routes with
-- stale-while-revalidate may still serve them while one refresh runs).
-- NULL tags and NULL elements are ignored.
CREATE OR REPLACE FUNCTION tagcache_invalidate(tags text[], soft boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    IF tags IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO tagcache_pending (soft, tag)
        SELECT DISTINCT coalesce(tagcache_invalidate.soft, false), t
        FROM unnest(tags) AS t
        WHERE t IS NOT NULL
        ON CONFLICT DO NOTHING;
    INSERT INTO tagcache_flushes DEFAULT VALUES ON CONFLICT DO NOTHING;
END
$fn$;

-- Invalidates every entry once the calling transaction commits.
CREATE OR REPLACE FUNCTION tagcache_invalidate_all()
RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $fn$
    SELECT pg_notify('tagcache', '{"v":1,"all":true}');
$fn$;

-- Sends the transaction's pending tags. Runs as a deferred trigger, that
-- is at commit (or at SET CONSTRAINTS ... IMMEDIATE, after which later
-- tags queue a new event).
CREATE OR REPLACE FUNCTION tagcache_flush()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    -- Payloads must stay under 8000 bytes; leave room for the closing "]}".
    budget constant integer := 7900;
    item record;
    piece text;
    payload text := NULL;
    payload_soft boolean := NULL;
BEGIN
    DELETE FROM tagcache_flushes WHERE xact = pg_current_xact_id();
    FOR item IN
        WITH gone AS (
            DELETE FROM tagcache_pending
            WHERE xact = pg_current_xact_id()
            RETURNING soft, tag
        )
        SELECT soft, tag FROM gone ORDER BY soft, tag
    LOOP
        piece := to_json(item.tag)::text;
        IF octet_length(piece) > budget - 40 THEN
            -- A tag too long for any notification: invalidate everything
            -- rather than let it go unsent.
            PERFORM pg_notify('tagcache', '{"v":1,"all":true}');
            CONTINUE;
        END IF;
        IF payload IS NOT NULL AND (
            item.soft IS DISTINCT FROM payload_soft
            OR octet_length(payload) + 1 + octet_length(piece) > budget
        ) THEN
            PERFORM pg_notify('tagcache', payload || ']}');
            payload := NULL;
        END IF;
        IF payload IS NULL THEN
            payload := '{"v":1,"soft":' || item.soft::text || ',"tags":[' || piece;
            payload_soft := item.soft;
        ELSE
            payload := payload || ',' || piece;
        END IF;
    END LOOP;
    IF payload IS NOT NULL THEN
        PERFORM pg_notify('tagcache', payload || ']}');
    END IF;
    RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS tagcache_flush_at_commit ON tagcache_flushes;
CREATE CONSTRAINT TRIGGER tagcache_flush_at_commit
    AFTER INSERT ON tagcache_flushes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tagcache_flush();
