//! `classroom`: a small teaching-sessions API served through tagcache.
//!
//! ```text
//! cargo run --release --example classroom -- --listen 127.0.0.1:3000 --origin-delay-ms 20
//! cargo run --release --features postgres --example classroom -- --database postgres://postgres@127.0.0.1/postgres
//! ```
//!
//! Every cached GET handler sleeps `--origin-delay-ms` after reading its
//! data, standing in for a slow database; `/stats` shows how often the
//! handlers really ran and `/metrics` exposes the cache's Prometheus metrics.
//! The cache's admin API and dashboard are at `/admin/cache/`, behind
//! `--admin-token` (or a random token printed at start). See `app.rs` for
//! the routes and their cache policies.

mod app;
mod args;
#[path = "../shared/stores.rs"]
mod stores;

use std::process::ExitCode;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tagcache::Cache;
use tokio::net::TcpListener;

use app::{AppConfig, Database};
use args::{Args, Command, Env};
use stores::{build_cache, random_token};

/// What keeps the data, and what must live as long as the server for it
/// to work (the PostgreSQL listener).
struct Data {
    db: Database,
    /// Dropping it would stop the invalidations from the database.
    #[cfg(feature = "postgres")]
    _listener: Option<tagcache::postgres::PgInvalidations>,
}

/// Chooses the database: in memory, or PostgreSQL with a listener that
/// applies its triggers' invalidations to `cache`.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
async fn open_data(args: &Args, cache: &Cache) -> Result<Data, String> {
    match &args.database {
        None => Ok(Data {
            db: Database::memory(),
            #[cfg(feature = "postgres")]
            _listener: None,
        }),
        #[cfg(feature = "postgres")]
        Some(url) => {
            use tagcache::postgres::{PgInvalidations, PgListenerConfig};
            let db = app::PgDb::connect(url)
                .await
                .map_err(|e| format!("cannot use PostgreSQL at {url}: {e}"))?;
            let config =
                PgListenerConfig::from_url(url).map_err(|e| format!("--database {url}: {e}"))?;
            let listener = PgInvalidations::listen(cache, config);
            eprintln!("classroom: data in PostgreSQL (schema `classroom`); its triggers invalidate the cache");
            Ok(Data {
                db: Database::Postgres(std::sync::Arc::new(db)),
                _listener: Some(listener),
            })
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => Err(
            "PostgreSQL support needs `--features postgres`; this build keeps its data in memory"
                .to_owned(),
        ),
    }
}

/// Installs the global Prometheus recorder, with the periodic upkeep that
/// the handle leaves to its owner (it drains histogram samples).
fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

async fn run(args: Args) -> Result<(), String> {
    // The recorder first, so that it sees everything the rest registers.
    let metrics = install_metrics()?;
    let cache = build_cache("classroom", args.redis.as_deref(), args.local_tier).await?;
    let data = open_data(&args, &cache).await?;
    let app = app::router_over(
        AppConfig {
            origin_delay: args.origin_delay,
            cache: cache.clone(),
            metrics: Some(metrics),
        },
        data.db.clone(),
    );
    let (token, generated) = match &args.admin_token {
        Some(token) => (token.clone(), false),
        None => (random_token(), true),
    };
    let app = app::with_admin(app, &cache, &token)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    if args.warm {
        // Through the router itself, for the host clients of this address
        // use (part of every entry's key).
        let report = cache
            .warmer(app.clone())
            .host(&addr.to_string())
            .warm(app::warm_paths())
            .await;
        eprintln!(
            "classroom: warmed {} paths ({} filled, {} already fresh, {} not storable, {} failed)",
            report.total(),
            report.filled.len(),
            report.already_fresh.len(),
            report.not_storable.len(),
            report.failed.len()
        );
    }
    eprintln!(
        "classroom: cache dashboard at http://{addr}{}",
        app::ADMIN_PATH
    );
    if generated {
        eprintln!("classroom: admin token (random, pass --admin-token to choose one): {token}");
    }
    // Scripts and tests read this line to find the port (with `--listen
    // ...:0`), so it goes to stdout and its shape stays fixed.
    println!("classroom listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("server error: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr so stdout carries only the listening line.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let env = Env {
        redis_url: std::env::var("REDIS_URL").ok(),
        admin_token: std::env::var("CLASSROOM_ADMIN_TOKEN").ok(),
    };
    let command = match args::parse(std::env::args().skip(1), env) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("classroom: {error}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let args = match command {
        Command::Help => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Run(args) => args,
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("classroom: {error}");
            ExitCode::FAILURE
        }
    }
}
