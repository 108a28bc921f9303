//! Herds over several instances sharing one Redis: origin calls per herd,
//! the latency of requests on the instance that called the origin and on
//! the others, and what Redis did for it. Each instance is a `Cache` with
//! its own `RedisStore` (its own connections and feed), in one process.
//!
//! ```text
//! cargo run --release --features redis --example fleet_herd -- \
//!     --redis redis://127.0.0.1:6379 --instances 4 [--herd 300] [--rounds 20] \
//!     [--origin-ms 50] [--no-leases] [--poll] [--too-large]
//! ```
//!
//! With `--too-large` every response is over the route's `max_body_bytes`
//! (not storable) and every herd asks for the same key: the first herd
//! learns that the key's response cannot be shared, the later ones pass
//! (go to the origin side by side, without queueing).
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
    too_large: bool,
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
        too_large: false,
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
            "--too-large" => options.too_large = true,
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
    let layer = cache
        .layer("items")
        .ttl(Duration::from_secs(600))
        .tags(|_, _| ["items"]);
    // "item N" is 6 bytes or more: over 4, never stored.
    let layer = if options.too_large {
        layer.max_body_bytes(4)
    } else {
        layer
    };
    let app = Router::new().route("/items/{id}", get(handler).route_layer(layer));
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
    let (mut first_herd, mut first_calls) = (Vec::new(), 0);
    for round in 0..options.rounds {
        let key = if options.too_large { 0 } else { round };
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
                let request = Request::get(format!("/items/{key}"))
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
        if options.too_large && round == 0 {
            // The herd that learns the key passes: reported apart.
            first_calls = called.iter().sum::<usize>();
            first_herd = timings.into_iter().map(|(_, took)| took).collect();
            continue;
        }
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
    if options.too_large {
        first_herd.sort();
        println!(
            "instances={} herd={} origin={}ms, responses too large to store, one key",
            options.instances,
            options.herd,
            options.origin.as_millis()
        );
        println!(
            "  first herd: {first_calls} origin calls, p50 {} ms, p99 {} ms",
            ms(percentile(&first_herd, 0.5)),
            ms(percentile(&first_herd, 0.99))
        );
        holder_side.append(&mut other_side);
        holder_side.sort();
        println!(
            "  the {} herds after it (the key passes): {:.2} origin calls per herd, p50 {} ms, p99 {} ms",
            options.rounds - 1,
            origin_calls as f64 / (rounds - 1.0).max(1.0),
            ms(percentile(&holder_side, 0.5)),
            ms(percentile(&holder_side, 0.99))
        );
        return Ok(());
    }
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
