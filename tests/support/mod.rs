//! Helpers shared by the test binaries. Each binary declares `mod support;`
//! (and `#[macro_use] mod suites;` where the store-agnostic cases run):
//!
//! * [`deadline`]: every wait fails with a message instead of hanging.
//! * [`harness`]: drive a router in-process: requests, replies, gates,
//!   counters.
//! * [`apps`]: the routes the cases drive.
//! * [`http`]: serve a router on a loopback port and talk to it over real
//!   HTTP.
//! * [`examples`]: example binaries run as processes of their own.
//! * [`classroom`]: what the classroom example's tests add to that.
//! * [`redis_server`]: real `redis-server` processes and a Redis Cluster.
//! * [`postgres_server`]: real PostgreSQL servers, one per test.
//! * [`stores`]: the stores the tests build over them, and a test store.
//!
//! No binary uses every helper, hence the `allow`.
#![allow(dead_code)]

pub mod apps;
pub mod classroom;
pub mod deadline;
pub mod examples;
pub mod harness;
pub mod http;
pub mod postgres_server;
pub mod redis_server;
pub mod scripted;
pub mod stores;
