//! Herds over several instances sharing one Redis: origin calls per herd,
//! the latency of requests on the instance that called the origin and on
//! the others, and what Redis did for it. Each instance is a `Cache` with
//! its own `RedisStore` (its own connections and feed), in one process.
//!
//! ```text
//! cargo run --release --features redis --example fleet_herd -- \
//!     --redis redis://127.0.0.1:6379 --instances 4 [--herd 300] [--rounds 20] \
//!     [--origin-ms 50] [--no-leases] [--poll]
//! ```
//!
//! `benchmarks/fleet-herd.sh` runs it for 1, 2 and 4 instances, with and
//! without leases, and with waiters notified or polling, on a Redis of its
//! own. Use a Redis nothing else uses: the counts come from its `INFO`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use tagcache::{Cache, RedisStore};
use tower::ServiceExt;

struct Options {
    redis: String,
    instances: usize,
    herd: usize,
    rounds: usize,
    origin: Duration,
    leases: bool,
    notify: bool,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        redis: "redis://127.0.0.1:6379".to_owned(),
        instances: 2,
        herd: 300,
        rounds: 20,
        origin: Duration::from_millis(50),
        leases: true,
        notify: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |raw: String| raw.parse::<usize>().map_err(|e| format!("{raw}: {e}"));
        match flag.as_str() {
            "--redis" => options.redis = value()?,
            "--instances" => options.instances = number(value()?)?.max(1),
            "--herd" => options.herd = number(value()?)?.max(1),
            "--rounds" => options.rounds = number(value()?)?.max(1),
            "--origin-ms" => options.origin = Duration::from_millis(number(value()?)? as u64),
            "--no-leases" => options.leases = false,
            "--poll" => options.notify = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// One instance: its router and how often its handler ran.
struct Instance {
    app: Router,
    calls: Arc<AtomicUsize>,
}

async fn instance(options: &Options, namespace: &str) -> Result<Instance, String> {
    let store = RedisStore::builder(options.redis.as_str())
        .namespace(namespace)
        .response_timeout(Duration::from_secs(1))
        .leases(options.leases)
        .lease_notifications(options.notify)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let cache = Cache::new(store);
    let calls = Arc::new(AtomicUsize::new(0));
    let (counted, delay) = (calls.clone(), options.origin);
    let handler = move |Path(id): Path<u64>| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            format!("item {id}")
        }
    };
    let app = Router::new().route(
        "/items/{id}",
        get(handler).route_layer(
            cache
                .layer("items")
                .ttl(Duration::from_secs(600))
                .tags(|_, _| ["items"]),
        ),
    );
    Ok(Instance { app, calls })
}

/// `INFO` fields of the Redis server, as numbers.
fn redis_info(client: &redis::Client) -> Result<std::collections::HashMap<String, u64>, String> {
    let mut conn = client.get_connection().map_err(|e| e.to_string())?;
    let text: String = redis::cmd("INFO")
        .arg("all")
        .query(&mut conn)
        .map_err(|e| e.to_string())?;
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(rest) = name.strip_prefix("cmdstat_") {
            if let Some(calls) = value.split(',').find_map(|f| f.strip_prefix("calls=")) {
                out.insert(format!("calls.{rest}"), calls.parse().unwrap_or(0));
            }
        } else if let Ok(number) = value.trim().parse() {
            out.insert(name.to_owned(), number);
        }
    }
    Ok(out)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let options = parse()?;
    let namespace = format!("fleet-herd-{}", std::process::id());
    let mut instances = Vec::new();
    for _ in 0..options.instances {
        instances.push(instance(&options, &namespace).await?);
    }
    let client = redis::Client::open(options.redis.as_str()).map_err(|e| e.to_string())?;
    // Let every feed settle before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = redis_info(&client)?;
    let mut origin_calls = 0;
    let (mut holder_side, mut other_side) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let calls_before: Vec<usize> = instances
            .iter()
            .map(|i| i.calls.load(Ordering::Relaxed))
            .collect();
        let mut herd = tokio::task::JoinSet::new();
        for n in 0..options.herd {
            let which = n % instances.len();
            let app = instances[which].app.clone();
            herd.spawn(async move {
                let started = Instant::now();
                let request = Request::get(format!("/items/{round}"))
                    .body(Body::empty())
                    .expect("valid request");
                let response = app.oneshot(request).await.expect("infallible");
                let _ = response.into_body().collect().await;
                (which, started.elapsed())
            });
        }
        let mut timings = Vec::new();
        while let Some(done) = herd.join_next().await {
            timings.push(done.map_err(|e| e.to_string())?);
        }
        let called: Vec<usize> = instances
            .iter()
            .zip(&calls_before)
            .map(|(i, before)| i.calls.load(Ordering::Relaxed) - before)
            .collect();
        origin_calls += called.iter().sum::<usize>();
        for (which, took) in timings {
            if called[which] > 0 {
                holder_side.push(took);
            } else {
                other_side.push(took);
            }
        }
    }
    let after = redis_info(&client)?;
    let delta =
        |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    holder_side.sort();
    other_side.sort();
    let rounds = options.rounds as f64;
    println!(
        "instances={} herd={} rounds={} origin={}ms leases={} waiters={}",
        options.instances,
        options.herd,
        options.rounds,
        options.origin.as_millis(),
        options.leases,
        if options.notify {
            "notified"
        } else {
            "polling"
        },
    );
    println!(
        "  origin calls per herd: {:.2}",
        origin_calls as f64 / rounds
    );
    println!(
        "  latency on an instance that called the origin: p50 {} ms, p99 {} ms ({} requests)",
        ms(percentile(&holder_side, 0.5)),
        ms(percentile(&holder_side, 0.99)),
        holder_side.len()
    );
    if !other_side.is_empty() {
        println!(
            "  latency on the other instances:                p50 {} ms, p99 {} ms ({} requests)",
            ms(percentile(&other_side, 0.5)),
            ms(percentile(&other_side, 0.99)),
            other_side.len()
        );
    }
    println!(
        "  Redis per herd: {:.1} commands processed (scripts' own included), {:.1} EVALSHA, {:.1} GET, {:.1} messages published",
        delta("total_commands_processed") as f64 / rounds,
        delta("calls.evalsha") as f64 / rounds,
        delta("calls.get") as f64 / rounds,
        delta("calls.publish") as f64 / rounds,
    );
    Ok(())
}
