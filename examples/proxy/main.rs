//! `proxy`: tagcache as a caching reverse proxy in front of any HTTP
//! origin, whatever language it is written in.
//!
//! ```text
//! cargo run --release --example proxy -- --origin http://127.0.0.1:8080
//! cargo run --release --example proxy -- --origin http://127.0.0.1:8080 \
//!     --listen 0.0.0.0:3001 --admin-token 0123456789abcdef0123456789abcdef
//! cargo run --release --features redis --example proxy -- \
//!     --origin http://127.0.0.1:8080 --redis redis://127.0.0.1:6379/ --local-tier
//! ```
//!
//! Every request goes to the origin unless the cache can answer it. The
//! cache is a shared cache as RFC 9111 defines it (`Freshness::Origin`):
//! the origin's headers decide what is stored and for how long
//! (`Cache-Control`, or `CDN-Cache-Control`/`Tagcache-Cache-Control` which
//! take precedence, `Expires`, heuristically from `Last-Modified`), stale
//! responses with an `ETag` or `Last-Modified` are revalidated with a
//! conditional request, and a POST, PUT, DELETE or PATCH the origin accepts
//! invalidates what was cached for its URI. The origin tags responses in
//! `Surrogate-Key: tag1 tag2` (removed before the client sees it), and
//! those tags are purged through the admin API at `/_tagcache/`:
//!
//! ```text
//! curl -s -H "authorization: Bearer $T" -H 'content-type: application/json' \
//!      -d '{"tags": ["product:7"]}' http://127.0.0.1:3001/_tagcache/invalidate
//! ```
//!
//! or, with `--database URL` (feature `postgres`), by the origin's own
//! database triggers calling `tagcache_invalidate(ARRAY['product:7'])`.
//!
//! The forwarding itself (`forward.rs`): hop-by-hop fields removed both
//! ways, `Host` set to the origin's, `X-Forwarded-For`/`-Host`/`-Proto`,
//! `Forwarded` and `Via` added, bodies streamed both ways, 502 when the
//! origin cannot be reached and 504 when it sends no response head within
//! `--origin-timeout`. Not supported: TLS to the origin, an origin path
//! prefix, and protocol upgrades (WebSocket): `Upgrade` is hop-by-hop and
//! is not forwarded.

mod app;
mod args;
#[path = "../shared/stores.rs"]
mod stores;

use std::process::ExitCode;

use tagcache::Cache;
use tokio::net::TcpListener;

use app::ProxyConfig;
use args::{Args, Command, Env};
use stores::{build_cache, random_token};

/// What keeps the invalidations from the database coming: dropping it
/// stops the listener. (Without the `postgres` feature there is none.)
#[cfg(feature = "postgres")]
type DatabaseListener = tagcache::postgres::PgInvalidations;
#[cfg(not(feature = "postgres"))]
type DatabaseListener = std::convert::Infallible;

/// Listens for the invalidations the origin's database sends, with
/// `--database`.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
fn listen_to_database(args: &Args, cache: &Cache) -> Result<Option<DatabaseListener>, String> {
    let Some(url) = &args.database else {
        return Ok(None);
    };
    #[cfg(feature = "postgres")]
    {
        use tagcache::postgres::{PgInvalidations, PgListenerConfig};
        let config =
            PgListenerConfig::from_url(url).map_err(|e| format!("--database {url}: {e}"))?;
        eprintln!("proxy: applying the invalidations PostgreSQL sends (channel `tagcache`)");
        Ok(Some(PgInvalidations::listen(cache, config)))
    }
    #[cfg(not(feature = "postgres"))]
    Err(format!(
        "--database {url} needs `--features postgres`; this build has no PostgreSQL support"
    ))
}

async fn run(args: Args) -> Result<(), String> {
    let cache = build_cache("proxy", args.redis.as_deref(), args.local_tier).await?;
    let _listener = listen_to_database(&args, &cache)?;
    let (admin_token, generated) = match &args.admin_token {
        Some(token) => (token.clone(), false),
        None => (random_token(), true),
    };
    let app = app::router(ProxyConfig {
        origin: args.origin.authority.clone(),
        origin_timeout: args.origin_timeout,
        cache,
        admin_token: admin_token.clone(),
    })?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    eprintln!(
        "proxy: forwarding to {}, caching what its headers allow",
        args.origin.display()
    );
    eprintln!(
        "proxy: cache dashboard at http://{addr}{}/",
        app::ADMIN_PATH
    );
    if generated {
        eprintln!("proxy: admin token (random, pass --admin-token to choose one): {admin_token}");
    }
    // Scripts and tests read this line to find the port (with `--listen
    // ...:0`), so it goes to stdout and its shape stays fixed.
    println!("proxy listening on http://{addr}");
    app::serve(listener, app, async {
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
        admin_token: std::env::var("PROXY_ADMIN_TOKEN").ok(),
    };
    let command = match args::parse(std::env::args().skip(1), env) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("proxy: {error}\n\n{}", args::USAGE);
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
            eprintln!("proxy: {error}");
            ExitCode::FAILURE
        }
    }
}
