//! Where the example keeps its data: in memory (the default) or in
//! PostgreSQL (`--database`, feature `postgres`). Handlers see one async
//! interface; a database that fails answers 503, never a cached error.

use std::sync::Arc;

#[cfg(feature = "postgres")]
use axum::http::StatusCode;

use super::data::{Db, Session, Status, TeacherCounts, Title, Totals};
use super::errors::ApiError;
#[cfg(feature = "postgres")]
use super::pg::PgDb;

/// What a read or a write gives a handler.
pub type DbResult<T> = Result<T, ApiError>;

/// The example's data.
#[derive(Debug, Clone)]
pub enum Database {
    /// The in-memory tables, freshly seeded.
    Memory(Arc<Db>),
    /// Tables in PostgreSQL, whose triggers invalidate the cache.
    #[cfg(feature = "postgres")]
    #[cfg_attr(test, allow(dead_code))] // tests may serve only the in-memory app
    Postgres(Arc<PgDb>),
}

impl Database {
    /// Ten teachers with five sessions each, in memory.
    pub fn memory() -> Database {
        Database::Memory(Arc::new(Db::seeded()))
    }

    /// The teacher's sessions, optionally only those with `status`; `None`
    /// for an unknown teacher.
    pub async fn sessions_of(
        &self,
        teacher_id: u32,
        status: Option<Status>,
    ) -> DbResult<Option<Vec<Session>>> {
        match self {
            Database::Memory(db) => Ok(db.sessions_of(teacher_id, status)),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.sessions_of(teacher_id, status).await.map_err(failed),
        }
    }

    /// One session.
    pub async fn session(&self, id: u64) -> DbResult<Option<Session>> {
        match self {
            Database::Memory(db) => Ok(db.session(id)),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.session(id).await.map_err(failed),
        }
    }

    /// Adds an active session; `None` for an unknown teacher.
    pub async fn create(&self, teacher_id: u32, title: Title) -> DbResult<Option<Session>> {
        match self {
            Database::Memory(db) => Ok(db.create(teacher_id, title)),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.create(teacher_id, title).await.map_err(failed),
        }
    }

    /// Changes a session's title and/or status; `None` for an unknown id.
    pub async fn update(
        &self,
        id: u64,
        title: Option<Title>,
        status: Option<Status>,
    ) -> DbResult<Option<Session>> {
        match self {
            Database::Memory(db) => Ok(db.update(id, title, status)),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.update(id, title, status).await.map_err(failed),
        }
    }

    /// Removes a session and returns it; `None` for an unknown id.
    pub async fn delete(&self, id: u64) -> DbResult<Option<Session>> {
        match self {
            Database::Memory(db) => Ok(db.delete(id)),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.delete(id).await.map_err(failed),
        }
    }

    /// Counts for one teacher; `None` for an unknown teacher.
    pub async fn teacher_counts(&self, teacher_id: u32) -> DbResult<Option<TeacherCounts>> {
        match self {
            Database::Memory(db) => Ok(db.teacher_counts(teacher_id)),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.teacher_counts(teacher_id).await.map_err(failed),
        }
    }

    /// Counts over every teacher.
    pub async fn totals(&self) -> DbResult<Totals> {
        match self {
            Database::Memory(db) => Ok(db.totals()),
            #[cfg(feature = "postgres")]
            Database::Postgres(db) => db.totals().await.map_err(failed),
        }
    }
}

/// A database error, logged here and answered as a bare 503: its text may
/// name tables and values the client has no business seeing.
#[cfg(feature = "postgres")]
fn failed(error: tokio_postgres::Error) -> ApiError {
    tracing::error!(%error, "classroom: database query failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable",
    )
}
