//! The tests' PostgreSQL server helper (`tests/support/postgres_server.rs`),
//! used as is: the same `initdb` template, fast settings and
//! run-as-`postgres`-when-root handling, so a benchmark's server starts like
//! a test's and never touches a server already running.

// Not every helper is used here (`port`, `conninfo`).
#![allow(dead_code)]

pub mod deadline {
    /// How long the helper waits for `initdb` or a server start.
    pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
}

#[path = "../../../tests/support/postgres_server.rs"]
pub mod postgres_server;
