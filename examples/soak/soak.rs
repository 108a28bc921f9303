//! The consistency soak: several instances of one app over one Redis, read
//! and written all the time while Redis and the links to it fail on a
//! schedule; every read checked, the whole summed up in a [`Report`].
//!
//! [`run`] starts its own `redis-server` (a free loopback port,
//! persistence off), puts a [`Proxy`] between each instance and it (so one
//! instance at a time can be partitioned), builds the instances (instance
//! 0 a plain `RedisStore`, the others a `TieredStore` over one), starts the
//! [load](load), injects the [faults](faults) of the [plan](schedule), then
//! stops the writers and waits until every write has reached every
//! instance, and reads every item on every instance a last time.
//!
//! The example's `main` is a thin command line over this module, and
//! `tests/soak.rs` runs it in a short mode: the files live under
//! `examples/soak/` and are included by `#[path]` in both.

#[path = "app.rs"]
#[allow(dead_code)]
pub mod app;
#[path = "faults.rs"]
pub mod faults;
#[path = "instance.rs"]
pub mod instance;
#[path = "lag.rs"]
pub mod lag;
#[path = "load.rs"]
pub mod load;
#[path = "proxy.rs"]
#[allow(dead_code)]
pub mod proxy;
#[path = "report.rs"]
pub mod report;
#[path = "schedule.rs"]
pub mod schedule;
#[path = "server.rs"]
pub mod server;
#[path = "tally.rs"]
pub mod tally;

use std::future::Future;
use std::time::{Duration, Instant};

use app::Db;
use instance::{Instance, Kind, Outcome};
use load::{Load, Pace};
use proxy::Proxy;
use report::{Report, Row};
use server::RedisServer;
use tally::Tally;

/// How long the instances may take to get in sync at the start, and the
/// writes to reach everyone at the end: bounds on failure, not timings.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// From the first request to the writers stopping.
    pub duration: Duration,
    /// 2 or 3: instance 0 is a plain `RedisStore`, the others tiered.
    pub instances: usize,
    pub items: usize,
    pub pace: Pace,
}

impl Config {
    /// A run of `duration` with the default load.
    pub fn new(duration: Duration) -> Config {
        Config {
            duration,
            instances: 3,
            items: 16,
            pace: Pace {
                readers: 2,
                read_pause: Duration::from_millis(1),
                write_pause: Duration::from_millis(20),
            },
        }
    }

    /// The short mode: every kind of fault once, in about 6 s.
    pub fn short() -> Config {
        Config::new(Duration::from_secs(6))
    }
}

/// Runs the soak. An `Err` means the soak itself could not do its job
/// (Redis would not start, a fault could not be injected): not a verdict
/// on the cache, which the report gives.
pub async fn run(config: &Config) -> Result<Report, String> {
    let n = config.instances;
    if !(2..=3).contains(&n) || config.items == 0 || config.pace.readers == 0 {
        return Err(format!("unsupported configuration {config:?}"));
    }
    let mut server = RedisServer::start()
        .await
        .map_err(|e| format!("redis-server: {e}"))?;
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        links.push(
            Proxy::start(server.addr())
                .await
                .map_err(|e| format!("proxy: {e}"))?,
        );
    }
    let db = Db::new(config.items);
    let mut instances = Vec::with_capacity(n);
    for (i, link) in links.iter().enumerate() {
        let kind = if i == 0 { Kind::Redis } else { Kind::Tiered };
        let instance = Instance::build(kind, &link.redis_url(), &db)
            .await
            .map_err(|e| format!("instance {i}: {e}"))?;
        instances.push(instance);
    }
    if settle(|| async { instances.iter().all(Instance::settled) })
        .await
        .is_none()
    {
        return Err("the instances never got in sync with Redis".to_owned());
    }

    let load = Load::new(instances, config.items, config.pace);
    let start = Instant::now();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for i in 0..n {
        for r in 0..config.pace.readers {
            readers.push(tokio::spawn(load::read_loop(load.clone(), i, r)));
        }
        writers.push(tokio::spawn(load::write_loop(load.clone(), i)));
    }
    let plan = schedule::plan(config.duration, n);
    let injected = faults::inject(&plan, start, &mut server, &links).await;
    // The tasks stop whatever happened to the faults.
    tokio::time::sleep_until((start + config.duration).into()).await;
    load.stop_writing();
    let writers_ended = join(writers).await;
    let stopped = Instant::now();
    let settled = settle(|| async {
        load.lags.unsettled() == 0 && load.instances.iter().all(Instance::settled)
    })
    .await
    .map(|()| stopped.elapsed());
    load.stop_reading();
    let readers_ended = join(readers).await;
    let injected = injected.map_err(|e| format!("injecting faults: {e}"))?;
    writers_ended?;
    readers_ended?;

    let (swept, unconverged) = sweep(&load).await;
    Ok(Report {
        seconds: config.duration.as_secs_f64(),
        redis: format!("127.0.0.1:{}", server.port()),
        items: config.items,
        readers: load.readers(),
        rows: rows(&load),
        injected,
        settled_in: settled,
        unsettled: load.lags.unsettled(),
        unconverged,
        swept,
    })
}

/// Polls `done` until it holds or [`SETTLE_LIMIT`] passes.
async fn settle<F: Future<Output = bool>>(done: impl Fn() -> F) -> Option<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    while !done().await {
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(())
}

async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) -> Result<(), String> {
    for task in tasks {
        task.await.map_err(|e| format!("a load task failed: {e}"))?;
    }
    Ok(())
}

/// Reads every item on every instance once more, now that nothing is
/// written: each must answer the latest version. Returns the reads and
/// those that did not.
async fn sweep(load: &Load) -> (usize, usize) {
    let (mut reads, mut off) = (0, 0);
    for (i, instance) in load.instances.iter().enumerate() {
        for item in 0..load.items() {
            reads += 1;
            let latest = load.latest(item);
            match instance.get(item).await {
                Outcome::Ok { version, .. } if version == latest => {}
                other => {
                    off += 1;
                    eprintln!("final read of item {item} on i{i}: {other:?}, latest v{latest}");
                }
            }
        }
    }
    (reads, off)
}

fn rows(load: &Load) -> Vec<Row> {
    let count = Tally::get;
    load.instances
        .iter()
        .zip(&load.tallies)
        .enumerate()
        .map(|(i, (instance, tally))| {
            let mut lags = load.lags.of(i);
            lags.sort();
            Row {
                store: instance.kind.name(),
                reads: count(&tally.reads),
                hits: count(&tally.hits),
                writes: count(&tally.writes),
                stale: count(&tally.stale),
                behind: count(&tally.behind),
                failed: count(&tally.failed),
                store_errors: instance.store_errors(),
                lags,
            }
        })
        .collect()
}
