//! Command-line options, parsed by hand as the classroom example does, to
//! keep the example's dependencies to what the crate itself uses.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::uri::{Authority, Scheme};
use axum::http::Uri;

/// Usage text, printed for `--help` and after a bad flag.
pub const USAGE: &str = "\
usage: proxy --origin URL [--listen ADDR] [--origin-timeout SECS]
             [--redis URL [--local-tier]] [--database URL] [--admin-token TOKEN]

  --origin URL           the HTTP origin to forward to (http://host:port; no path, no TLS)
  --listen ADDR          address to serve on (default 127.0.0.1:3001; port 0 picks a free one)
  --origin-timeout SECS  longest wait for the origin's response head (default 30), then 504
  --redis URL            store responses in Redis (also read from REDIS_URL)
  --local-tier           with --redis: keep recent entries in this process too
  --database URL         apply the invalidations that the origin's PostgreSQL triggers send
                         with tagcache_invalidate() (postgres://user@host/db; needs
                         --features postgres)
  --admin-token TOKEN    bearer token of the cache admin API and dashboard at /_tagcache/
                         (also read from PROXY_ADMIN_TOKEN; default: a random one, printed)
  -h, --help             print this help";

/// Default address to listen on.
pub const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 3001);
/// Default `--origin-timeout`.
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The origin: where every request that is not answered from the cache
/// goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    /// `host:port` (or `host`), sent as `Host`.
    pub authority: Authority,
}

impl OriginUrl {
    /// Parses `http://host[:port][/]`: only plain HTTP, and no path, query
    /// or credentials (requests keep their own path; a prefix would have
    /// to be rewritten in every `Location` too).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri: Uri = raw
            .parse()
            .map_err(|_| format!("--origin: {raw:?} is not a URL like http://127.0.0.1:8080"))?;
        match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP => {}
            Some(scheme) if *scheme == Scheme::HTTPS => {
                return Err(format!(
                    "--origin: {raw:?}: only http:// origins are supported (no TLS client here)"
                ))
            }
            _ => return Err(format!("--origin: {raw:?} must start with http://")),
        }
        let Some(authority) = uri.authority().cloned() else {
            return Err(format!("--origin: {raw:?} names no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "--origin: {raw:?}: credentials in the URL are not supported"
            ));
        }
        let bare = uri.path_and_query().is_none_or(|pq| pq.as_str() == "/");
        if !bare {
            return Err(format!(
                "--origin: {raw:?}: give the origin without a path or query (requests keep theirs)"
            ));
        }
        Ok(OriginUrl { authority })
    }

    /// `http://host:port`, for messages.
    pub fn display(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// The options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where requests go.
    pub origin: OriginUrl,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Longest wait for the origin's response head.
    pub origin_timeout: Duration,
    /// Redis URL, if responses should be stored there.
    pub redis: Option<String>,
    /// Whether a local in-memory tier sits in front of Redis.
    pub local_tier: bool,
    /// PostgreSQL URL whose invalidations to apply.
    pub database: Option<String>,
    /// The admin API's token, if given (otherwise a random one is made).
    pub admin_token: Option<String>,
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve with these options.
    Run(Args),
    /// Print the usage and exit.
    Help,
}

/// What the environment may set.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `REDIS_URL`, used when `--redis` is absent.
    pub redis_url: Option<String>,
    /// `PROXY_ADMIN_TOKEN`, used when `--admin-token` is absent.
    pub admin_token: Option<String>,
}

/// Parses the arguments (without the program name), with `env` for what
/// they leave out.
pub fn parse<I>(args: I, env: Env) -> Result<Command, String>
where
    I: IntoIterator<Item = String>,
{
    let mut origin = None;
    let mut listen = SocketAddr::from(DEFAULT_LISTEN);
    let mut origin_timeout = DEFAULT_ORIGIN_TIMEOUT;
    let mut redis = None;
    let mut local_tier = false;
    let mut database = None;
    let mut admin_token = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--origin" => origin = Some(OriginUrl::parse(&value()?)?),
            "--listen" => {
                let raw = value()?;
                listen = raw.parse().map_err(|_| {
                    format!("--listen: {raw:?} is not an address like 127.0.0.1:3001")
                })?;
            }
            "--origin-timeout" => {
                let raw = value()?;
                let secs: u64 = raw.parse().ok().filter(|secs| *secs > 0).ok_or_else(|| {
                    format!("--origin-timeout: {raw:?} is not a whole number of seconds above 0")
                })?;
                origin_timeout = Duration::from_secs(secs);
            }
            "--redis" => redis = Some(value()?),
            "--local-tier" if inline.is_none() => local_tier = true,
            "--database" => database = Some(value()?),
            "--admin-token" => admin_token = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let origin = origin.ok_or("--origin URL is required")?;
    Ok(Command::Run(Args {
        origin,
        listen,
        origin_timeout,
        redis: redis.or(env.redis_url.filter(|url| !url.is_empty())),
        local_tier,
        database,
        admin_token: admin_token.or(env.admin_token.filter(|token| !token.is_empty())),
    }))
}
