//! `GET /health`: whether this instance's cache is working, for people and
//! load balancers. `healthy` and `degraded` answer 200, `unhealthy` 503.
//! The checks and their thresholds are listed on [`HealthOptions`].

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::stats::{LONG, SHORT};
use super::AdminState;
use crate::entry::KeyHash;
use crate::inspect::FeedState;

/// Thresholds of the health checks, defaults in parentheses:
///
/// | check | fails (unhealthy) | warns (degraded) |
/// |-------|-------------------|------------------|
/// | `store` | the store errs or does not answer within [`HealthOptions::store_timeout`] (1 s) | it answers slower than [`HealthOptions::slow_store`] (250 ms) |
/// | `feed` (shared stores) | the store is down (breaker open) | the view of the invalidations is resyncing |
/// | `store_errors` | | failed store operations over the last minute exceed [`HealthOptions::max_store_error_ratio`] (5 %) of the requests |
/// | `hit_ratio` | | a route with at least [`HealthOptions::min_requests`] (100) cacheable requests over the last five minutes answered less than [`HealthOptions::hit_ratio_floor`] (10 %) of them from the cache |
/// | `memory` | | the store holds more than [`HealthOptions::full_fraction`] (95 %) of its budget and evicts more than [`HealthOptions::max_evictions_per_second`] (10/s) over the last minute |
///
/// ```
/// use std::time::Duration;
/// use tagcache::admin::HealthOptions;
///
/// let health = HealthOptions {
///     hit_ratio_floor: 0.5,
///     slow_store: Duration::from_millis(50),
///     ..HealthOptions::default()
/// };
/// # let _ = health;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HealthOptions {
    /// Longest the store probe may take before the store counts as down.
    pub store_timeout: Duration,
    /// A store probe slower than this makes the cache degraded.
    pub slow_store: Duration,
    /// Store errors per request over the last minute above which the cache
    /// is degraded.
    pub max_store_error_ratio: f64,
    /// A route answering less than this share of its cacheable requests
    /// from the cache over the last five minutes makes the cache degraded
    /// (0 turns the check off).
    pub hit_ratio_floor: f64,
    /// Cacheable requests a route needs over the last five minutes before
    /// its hit ratio is judged.
    pub min_requests: u64,
    /// Share of the byte budget above which the store counts as full.
    pub full_fraction: f64,
    /// Evictions per second (over the last minute) that, with a full
    /// store, make the cache degraded.
    pub max_evictions_per_second: f64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            store_timeout: Duration::from_secs(1),
            slow_store: Duration::from_millis(250),
            max_store_error_ratio: 0.05,
            hit_ratio_floor: 0.1,
            min_requests: 100,
            full_fraction: 0.95,
            max_evictions_per_second: 10.0,
        }
    }
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Verdict,
    detail: String,
}

impl Check {
    fn new(name: &'static str, status: Verdict, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    status: Status,
    checks: Vec<Check>,
}

async fn probe_store(state: &AdminState, options: &HealthOptions) -> Check {
    let started = Instant::now();
    // A key no entry has: the cheapest question a store can answer.
    let probe = state.cache.store().get(KeyHash(0));
    match tokio::time::timeout(options.store_timeout, probe).await {
        Err(_) => Check::new(
            "store",
            Verdict::Fail,
            format!("no answer within {:?}", options.store_timeout),
        ),
        Ok(Err(error)) => Check::new("store", Verdict::Fail, error.to_string()),
        Ok(Ok(_)) => {
            let took = started.elapsed();
            let detail = format!("answered in {:.1} ms", took.as_secs_f64() * 1000.0);
            match took > options.slow_store {
                true => Check::new("store", Verdict::Warn, detail),
                false => Check::new("store", Verdict::Pass, detail),
            }
        }
    }
}

pub(crate) async fn report(state: &AdminState) -> Report {
    let options = &state.health;
    let mut checks = vec![probe_store(state, options).await];
    let usage = state.cache.store().usage();
    if let Some(feed) = usage.feed {
        let verdict = match feed {
            FeedState::InSync => Verdict::Pass,
            FeedState::Resyncing => Verdict::Warn,
            FeedState::Down => Verdict::Fail,
        };
        checks.push(Check::new("feed", verdict, feed.as_str()));
    }
    let routes = state.cache.all_route_metrics();
    let history = state.cache.history();
    let minute = history.overall.window(SHORT).delta;
    // Errors without any request (failed invalidations) count as all.
    let error_ratio = match (minute.requests, minute.store_errors) {
        (_, 0) => 0.0,
        (0, _) => 1.0,
        (requests, errors) => errors as f64 / requests as f64,
    };
    checks.push(Check::new(
        "store_errors",
        match error_ratio > options.max_store_error_ratio {
            true => Verdict::Warn,
            false => Verdict::Pass,
        },
        format!(
            "{} store errors over {} requests in the last minute",
            minute.store_errors, minute.requests
        ),
    ));
    if options.hit_ratio_floor > 0.0 {
        let low: Vec<String> = routes
            .iter()
            .filter_map(|route| {
                let delta = history.routes.get(route.name())?.window(LONG).delta;
                let ratio = delta.hit_ratio()?;
                (delta.answered + delta.misses >= options.min_requests
                    && ratio < options.hit_ratio_floor)
                    .then(|| format!("{} ({:.0} %)", route.name(), ratio * 100.0))
            })
            .collect();
        checks.push(match low.is_empty() {
            true => Check::new(
                "hit_ratio",
                Verdict::Pass,
                format!(
                    "no route under {:.0} % over the last five minutes",
                    options.hit_ratio_floor * 100.0
                ),
            ),
            false => Check::new(
                "hit_ratio",
                Verdict::Warn,
                format!(
                    "under {:.0} % over the last five minutes: {}",
                    options.hit_ratio_floor * 100.0,
                    low.join(", ")
                ),
            ),
        });
    }
    let short = history.overall.window(SHORT);
    drop(history);
    if let (Some(bytes), Some(budget)) = (usage.bytes, usage.budget) {
        let evictions = short.per_second(short.delta.evictions);
        let full = bytes as f64 >= budget as f64 * options.full_fraction;
        let detail =
            format!("{bytes} of {budget} bytes, {evictions:.1} evictions/s over the last minute");
        checks.push(Check::new(
            "memory",
            match full && evictions > options.max_evictions_per_second {
                true => Verdict::Warn,
                false => Verdict::Pass,
            },
            detail,
        ));
    }
    let status = checks
        .iter()
        .map(|check| match check.status {
            Verdict::Pass => Status::Healthy,
            Verdict::Warn => Status::Degraded,
            Verdict::Fail => Status::Unhealthy,
        })
        .max()
        .unwrap_or(Status::Healthy);
    Report { status, checks }
}

fn respond(status: Status, body: serde_json::Value) -> Response {
    let code = match status {
        Status::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    (code, Json(body)).into_response()
}

/// `GET /health` (authenticated): the status and every check.
pub(crate) async fn detailed(State(state): State<AdminState>) -> Response {
    let report = report(&state).await;
    let body = serde_json::to_value(&report).unwrap_or_else(|_| json!({"status": report.status}));
    respond(report.status, body)
}

/// `GET /` of [`Admin::health_router`](super::Admin::health_router): the
/// status alone, for load balancers that cannot authenticate.
pub(crate) async fn status_only(State(state): State<AdminState>) -> Response {
    let report = report(&state).await;
    respond(report.status, json!({"status": report.status}))
}
