//! The in-memory "database" behind the example: teachers and their sessions.
//!
//! It stands in for a real database, so it only offers what the routes need
//! and hands out owned copies: a handler reads a snapshot, then answers
//! slowly, exactly like a handler that awaited a query.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// Teachers have ids `1..=TEACHERS`.
pub const TEACHERS: u32 = 10;
/// Sessions each teacher starts with.
pub const SESSIONS_PER_TEACHER: u64 = 5;
/// Longest session title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Whether a session is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Running.
    Active,
    /// Over.
    Ended,
}

/// One teaching session, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Assigned by the server.
    pub id: u64,
    /// The owner; never changes.
    pub teacher_id: u32,
    /// What the session is about.
    pub title: String,
    /// Running or over.
    pub status: Status,
}

/// A validated title: trimmed, not empty, at most [`MAX_TITLE_CHARS`]
/// characters. Validating while deserializing keeps bad titles out of every
/// handler, and the error reaches the client through the JSON rejection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Title(String);

impl TryFrom<String> for Title {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        let title = raw.trim();
        if title.is_empty() {
            return Err("title must not be empty".to_owned());
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(format!(
                "title must be at most {MAX_TITLE_CHARS} characters"
            ));
        }
        if title.chars().any(char::is_control) {
            return Err("title must not contain control characters".to_owned());
        }
        Ok(Title(title.to_owned()))
    }
}

impl Title {
    /// The title text.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Session counts of one teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TeacherCounts {
    /// Whose counts these are.
    pub teacher_id: u32,
    /// All sessions.
    pub sessions: usize,
    /// Sessions still running.
    pub active: usize,
    /// Sessions over.
    pub ended: usize,
}

/// Counts over every teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Number of teachers.
    pub teachers: u32,
    /// All sessions.
    pub sessions: usize,
    /// Sessions still running.
    pub active: usize,
    /// Sessions over.
    pub ended: usize,
}

/// The database: one lock over all tables is plenty for an example.
#[derive(Debug)]
pub struct Db {
    tables: Mutex<Tables>,
}

#[derive(Debug)]
struct Tables {
    sessions: BTreeMap<u64, Session>,
    next_id: u64,
}

impl Db {
    /// Ten teachers with five sessions each (ids `1..=50`), the first three
    /// of every teacher active and the last two ended.
    pub fn seeded() -> Db {
        let mut sessions = BTreeMap::new();
        let mut id = 0;
        for teacher_id in 1..=TEACHERS {
            for n in 1..=SESSIONS_PER_TEACHER {
                id += 1;
                let status = if n <= 3 {
                    Status::Active
                } else {
                    Status::Ended
                };
                let title = format!("Teacher {teacher_id} session {n}");
                sessions.insert(
                    id,
                    Session {
                        id,
                        teacher_id,
                        title,
                        status,
                    },
                );
            }
        }
        Db {
            tables: Mutex::new(Tables {
                sessions,
                next_id: id + 1,
            }),
        }
    }

    // A panic while holding the lock cannot leave the tables half-updated
    // (every change is a single insert or remove), so a poisoned lock is
    // still safe to use.
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `teacher_id` exists.
    pub fn teacher_exists(teacher_id: u32) -> bool {
        (1..=TEACHERS).contains(&teacher_id)
    }

    /// The teacher's sessions, optionally only those with `status`; `None`
    /// for an unknown teacher.
    pub fn sessions_of(&self, teacher_id: u32, status: Option<Status>) -> Option<Vec<Session>> {
        if !Db::teacher_exists(teacher_id) {
            return None;
        }
        let tables = self.tables();
        let list = tables
            .sessions
            .values()
            .filter(|s| s.teacher_id == teacher_id)
            .filter(|s| status.is_none() || status == Some(s.status))
            .cloned()
            .collect();
        Some(list)
    }

    /// One session.
    pub fn session(&self, id: u64) -> Option<Session> {
        self.tables().sessions.get(&id).cloned()
    }

    /// Adds an active session for `teacher_id`; `None` for an unknown teacher.
    pub fn create(&self, teacher_id: u32, title: Title) -> Option<Session> {
        if !Db::teacher_exists(teacher_id) {
            return None;
        }
        let mut tables = self.tables();
        let id = tables.next_id;
        tables.next_id += 1;
        let session = Session {
            id,
            teacher_id,
            title: title.into_string(),
            status: Status::Active,
        };
        tables.sessions.insert(id, session.clone());
        Some(session)
    }

    /// Changes a session's title and/or status; `None` for an unknown id.
    pub fn update(&self, id: u64, title: Option<Title>, status: Option<Status>) -> Option<Session> {
        let mut tables = self.tables();
        let session = tables.sessions.get_mut(&id)?;
        if let Some(title) = title {
            session.title = title.into_string();
        }
        if let Some(status) = status {
            session.status = status;
        }
        Some(session.clone())
    }

    /// Removes a session and returns it; `None` for an unknown id.
    pub fn delete(&self, id: u64) -> Option<Session> {
        self.tables().sessions.remove(&id)
    }

    /// Counts for one teacher; `None` for an unknown teacher.
    pub fn teacher_counts(&self, teacher_id: u32) -> Option<TeacherCounts> {
        let sessions = self.sessions_of(teacher_id, None)?;
        let active = sessions
            .iter()
            .filter(|s| s.status == Status::Active)
            .count();
        Some(TeacherCounts {
            teacher_id,
            sessions: sessions.len(),
            active,
            ended: sessions.len() - active,
        })
    }

    /// Counts over every teacher.
    pub fn totals(&self) -> Totals {
        let tables = self.tables();
        let sessions = tables.sessions.len();
        let active = tables
            .sessions
            .values()
            .filter(|s| s.status == Status::Active)
            .count();
        Totals {
            teachers: TEACHERS,
            sessions,
            active,
            ended: sessions - active,
        }
    }
}
