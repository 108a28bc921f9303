//! The example's data in PostgreSQL (`--database URL`, feature
//! `postgres`): the same ten teachers and fifty sessions as in memory, in
//! the schema `classroom`, with triggers that invalidate the cache however
//! a row changes (through the API, `psql`, another program).
//!
//! The tables are created and seeded only when missing, so data changed
//! with `psql` survives restarts. One connection serves every request
//! (tokio-postgres pipelines concurrent queries on it); if it drops,
//! requests answer 503 until the example is restarted.

use tagcache::postgres;
use tokio_postgres::{Client, NoTls, Row};

use super::data::{
    Db, Session, Status, TeacherCounts, Title, Totals, SESSIONS_PER_TEACHER, TEACHERS,
};

/// The schema everything lives in, tagcache's functions included.
pub const SCHEMA: &str = "classroom";

/// Creates the table when missing (seeded like the in-memory one: the
/// first three sessions of every teacher active, the last two ended), and
/// the triggers. Runs as one transaction, serialized across instances.
const SETUP: &str = "
SELECT set_config('client_min_messages', 'warning', true);
SELECT pg_advisory_xact_lock(hashtext('classroom setup'));
DO $$
BEGIN
    IF to_regclass('classroom.sessions') IS NULL THEN
        CREATE TABLE classroom.sessions (
            id bigserial PRIMARY KEY,
            teacher_id integer NOT NULL,
            title text NOT NULL,
            status text NOT NULL CHECK (status IN ('active', 'ended'))
        );
        CREATE INDEX sessions_by_teacher ON classroom.sessions (teacher_id, id);
        INSERT INTO classroom.sessions (id, teacher_id, title, status)
            SELECT (t - 1) * $PER + n, t, format('Teacher %s session %s', t, n),
                   CASE WHEN n <= 3 THEN 'active' ELSE 'ended' END
            FROM generate_series(1, $TEACHERS) AS t, generate_series(1, $PER) AS n;
        PERFORM setval(pg_get_serial_sequence('classroom.sessions', 'id'), $TEACHERS * $PER);
    END IF;
END $$;

-- What a change invalidates: the session, its teacher before and after
-- (a session may move), and every list and dashboard (they all count
-- sessions): the tags the API's own mutations invalidate.
CREATE OR REPLACE FUNCTION classroom.sessions_changed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM classroom.tagcache_invalidate(ARRAY[
            'session:' || OLD.id, 'teacher:' || OLD.teacher_id, 'sessions', 'dashboard']);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM classroom.tagcache_invalidate(ARRAY[
            'session:' || NEW.id, 'teacher:' || NEW.teacher_id, 'sessions', 'dashboard']);
    END IF;
    RETURN NULL;
END $fn$;
CREATE OR REPLACE TRIGGER sessions_changed
    AFTER INSERT OR UPDATE OR DELETE ON classroom.sessions
    FOR EACH ROW EXECUTE FUNCTION classroom.sessions_changed();

-- TRUNCATE has no rows to name: everything goes.
CREATE OR REPLACE FUNCTION classroom.sessions_truncated() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM classroom.tagcache_invalidate_all();
    RETURN NULL;
END $fn$;
CREATE OR REPLACE TRIGGER sessions_truncated
    AFTER TRUNCATE ON classroom.sessions
    FOR EACH STATEMENT EXECUTE FUNCTION classroom.sessions_truncated();
";

const COLUMNS: &str = "id, teacher_id, title, status";

/// The PostgreSQL tables.
#[derive(Debug)]
pub struct PgDb {
    client: Client,
}

impl PgDb {
    /// Connects, installs tagcache's SQL in `classroom` and creates what is
    /// missing.
    pub async fn connect(url: &str) -> Result<PgDb, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::error!(%error, "classroom: lost the database connection");
            }
        });
        // Creates the schema too.
        postgres::install(&client, SCHEMA).await?;
        let setup = SETUP
            .replace("$TEACHERS", &TEACHERS.to_string())
            .replace("$PER", &SESSIONS_PER_TEACHER.to_string());
        client.batch_execute(&setup).await?;
        Ok(PgDb { client })
    }

    pub async fn sessions_of(
        &self,
        teacher_id: u32,
        status: Option<Status>,
    ) -> Result<Option<Vec<Session>>, tokio_postgres::Error> {
        let Some(teacher) = known_teacher(teacher_id) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM classroom.sessions
             WHERE teacher_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY id"
        );
        let status = status.map(status_text);
        let rows = self.client.query(&sql, &[&teacher, &status]).await?;
        Ok(Some(rows.iter().map(session).collect()))
    }

    pub async fn session(&self, id: u64) -> Result<Option<Session>, tokio_postgres::Error> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let sql = format!("SELECT {COLUMNS} FROM classroom.sessions WHERE id = $1");
        Ok(self
            .client
            .query_opt(&sql, &[&id])
            .await?
            .as_ref()
            .map(session))
    }

    pub async fn create(
        &self,
        teacher_id: u32,
        title: Title,
    ) -> Result<Option<Session>, tokio_postgres::Error> {
        let Some(teacher) = known_teacher(teacher_id) else {
            return Ok(None);
        };
        let sql = format!(
            "INSERT INTO classroom.sessions (teacher_id, title, status)
             VALUES ($1, $2, 'active') RETURNING {COLUMNS}"
        );
        let row = self
            .client
            .query_one(&sql, &[&teacher, &title.into_string()])
            .await?;
        Ok(Some(session(&row)))
    }

    pub async fn update(
        &self,
        id: u64,
        title: Option<Title>,
        status: Option<Status>,
    ) -> Result<Option<Session>, tokio_postgres::Error> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let sql = format!(
            "UPDATE classroom.sessions
             SET title = coalesce($2, title), status = coalesce($3, status)
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let title = title.map(Title::into_string);
        let status = status.map(status_text);
        let row = self.client.query_opt(&sql, &[&id, &title, &status]).await?;
        Ok(row.as_ref().map(session))
    }

    pub async fn delete(&self, id: u64) -> Result<Option<Session>, tokio_postgres::Error> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let sql = format!("DELETE FROM classroom.sessions WHERE id = $1 RETURNING {COLUMNS}");
        Ok(self
            .client
            .query_opt(&sql, &[&id])
            .await?
            .as_ref()
            .map(session))
    }

    pub async fn teacher_counts(
        &self,
        teacher_id: u32,
    ) -> Result<Option<TeacherCounts>, tokio_postgres::Error> {
        let Some(teacher) = known_teacher(teacher_id) else {
            return Ok(None);
        };
        let row = self
            .client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'active')
                 FROM classroom.sessions WHERE teacher_id = $1",
                &[&teacher],
            )
            .await?;
        let (sessions, active) = counts(&row);
        Ok(Some(TeacherCounts {
            teacher_id,
            sessions,
            active,
            ended: sessions - active,
        }))
    }

    pub async fn totals(&self) -> Result<Totals, tokio_postgres::Error> {
        let row = self
            .client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'active')
                 FROM classroom.sessions",
                &[],
            )
            .await?;
        let (sessions, active) = counts(&row);
        Ok(Totals {
            teachers: TEACHERS,
            sessions,
            active,
            ended: sessions - active,
        })
    }
}

/// The teacher id as the column's type, if such a teacher exists.
fn known_teacher(teacher_id: u32) -> Option<i32> {
    Db::teacher_exists(teacher_id)
        .then(|| i32::try_from(teacher_id).ok())
        .flatten()
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Ended => "ended",
    }
}

/// A row of `COLUMNS` (the table's CHECK allows only `active` and `ended`).
fn session(row: &Row) -> Session {
    let id: i64 = row.get(0);
    let teacher_id: i32 = row.get(1);
    let status: String = row.get(3);
    Session {
        id: u64::try_from(id).unwrap_or(0),
        teacher_id: u32::try_from(teacher_id).unwrap_or(0),
        title: row.get(2),
        status: match status.as_str() {
            "active" => Status::Active,
            _ => Status::Ended,
        },
    }
}

/// `(count, active)` from a counting row.
fn counts(row: &Row) -> (usize, usize) {
    let count = |i| usize::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    (count(0), count(1))
}
