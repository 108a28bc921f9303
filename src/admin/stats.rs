//! `GET /stats`: every route's counters with their recent windows, the
//! store's usage, and a per-second series of the last minute for charts.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::AdminState;
use crate::inspect::StoreUsage;
use crate::metrics::RouteStats;
use crate::window::Window;

/// Seconds in the short and the long window.
pub(crate) const SHORT: u64 = 60;
pub(crate) const LONG: u64 = 5 * 60;
/// Points in the chart series (one a second).
const SERIES_POINTS: usize = 60;

#[derive(Serialize)]
pub(crate) struct Stats {
    cache: String,
    /// How many seconds of history the windows could use (less than five
    /// minutes after a start).
    history_seconds: u64,
    overall: Overall,
    routes: Vec<Route>,
    store: StoreUsage,
    series: Vec<Point>,
}

#[derive(Serialize)]
struct Overall {
    requests: u64,
    hit_ratio: Option<f64>,
    windows: Windows,
    store_errors: u64,
    /// Evictions per second over the last minute.
    evictions_per_second_1m: f64,
}

/// What the last minute and the last five looked like.
#[derive(Serialize)]
pub(crate) struct Windows {
    requests_1m: u64,
    requests_per_second_1m: f64,
    hit_ratio_1m: Option<f64>,
    requests_5m: u64,
    hit_ratio_5m: Option<f64>,
}

impl Windows {
    fn of(short: Window, long: Window) -> Windows {
        Windows {
            requests_1m: short.delta.requests,
            requests_per_second_1m: short.per_second(short.delta.requests),
            hit_ratio_1m: short.delta.hit_ratio(),
            requests_5m: long.delta.requests,
            hit_ratio_5m: long.delta.hit_ratio(),
        }
    }
}

#[derive(Serialize)]
struct Route {
    route: String,
    hits: u64,
    misses: u64,
    stale: u64,
    collapsed: u64,
    revalidated: u64,
    passes: u64,
    bypasses: u64,
    bypasses_by_reason: BTreeMap<&'static str, u64>,
    not_stored: u64,
    not_stored_by_reason: BTreeMap<&'static str, u64>,
    invalidations: u64,
    store_errors: u64,
    /// Over the route's whole life, `null` before any cacheable request.
    hit_ratio: Option<f64>,
    #[serde(flatten)]
    windows: Windows,
}

/// One second of the chart: requests, and how many were answered without
/// an origin call.
#[derive(Serialize)]
struct Point {
    second: u64,
    requests: u64,
    answered: u64,
    misses: u64,
}

fn ratio(stats: &RouteStats) -> Option<f64> {
    let answered = stats.hits + stats.stale + stats.collapsed;
    (answered + stats.misses > 0).then_some(stats.hit_ratio)
}

pub(crate) fn collect(state: &AdminState) -> Stats {
    let cache = &state.cache;
    let metrics = cache.all_route_metrics();
    let history = cache.history();
    let mut routes = Vec::with_capacity(metrics.len());
    let (mut answered, mut misses, mut requests, mut store_errors) = (0, 0, 0, 0);
    for route in &metrics {
        let stats = route.snapshot();
        let ring = history.routes.get(route.name());
        let window = |seconds| ring.map(|r| r.window(seconds)).unwrap_or_default();
        answered += stats.hits + stats.stale + stats.collapsed;
        misses += stats.misses;
        requests += stats.hits + stats.stale + stats.collapsed + stats.misses + stats.bypasses;
        store_errors += stats.store_errors;
        routes.push(Route {
            route: route.name().to_string(),
            hits: stats.hits,
            misses: stats.misses,
            stale: stats.stale,
            collapsed: stats.collapsed,
            revalidated: stats.revalidated,
            passes: stats.passes,
            bypasses: stats.bypasses,
            bypasses_by_reason: route.bypasses_by_reason().collect(),
            not_stored: stats.not_stored,
            not_stored_by_reason: route.not_stored_by_reason().collect(),
            invalidations: stats.invalidations,
            store_errors: stats.store_errors,
            hit_ratio: ratio(&stats),
            windows: Windows::of(window(SHORT), window(LONG)),
        });
    }
    let short = history.overall.window(SHORT);
    let long = history.overall.window(LONG);
    let series = history
        .overall
        .series(SERIES_POINTS)
        .into_iter()
        .map(|(second, delta)| Point {
            second,
            requests: delta.requests,
            answered: delta.answered,
            misses: delta.misses,
        })
        .collect();
    let cacheable = answered + misses;
    Stats {
        cache: cache.name().to_owned(),
        history_seconds: long.seconds,
        overall: Overall {
            requests,
            hit_ratio: (cacheable > 0).then(|| answered as f64 / cacheable as f64),
            windows: Windows::of(short, long),
            store_errors,
            evictions_per_second_1m: short.per_second(short.delta.evictions),
        },
        routes,
        store: cache.store().usage(),
        series,
    }
}

/// `GET /stats`
pub(crate) async fn stats(State(state): State<AdminState>) -> Json<Stats> {
    Json(collect(&state))
}
