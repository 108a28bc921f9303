//! Command-line options, parsed by hand to keep the example's dependencies
//! to what the crate itself uses.

use std::net::SocketAddr;
use std::time::Duration;

/// Usage text, printed for `--help` and after a bad flag.
pub const USAGE: &str = "\
usage: classroom [--listen ADDR] [--origin-delay-ms MS] [--redis URL [--local-tier]]
                 [--database URL] [--admin-token TOKEN] [--warm]

  --listen ADDR          address to serve on (default 127.0.0.1:3000; port 0 picks a free one)
  --origin-delay-ms MS   how long every cached GET handler takes (default 20)
  --redis URL            store responses in Redis (also read from REDIS_URL)
  --local-tier           with --redis: keep recent entries in this process too
                         (hits without a round trip; other instances' writes
                         reach it as fast as their invalidations do)
  --database URL         keep the data in PostgreSQL (postgres://user@host/db), whose
                         triggers invalidate the cache (needs --features postgres)
  --admin-token TOKEN    bearer token of the cache admin API and dashboard at /admin/cache/
                         (also read from CLASSROOM_ADMIN_TOKEN; default: a random one, printed)
  --warm                 fill every teacher's session list and dashboard before serving
  -h, --help             print this help";

/// The options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The origin's delay.
    pub origin_delay: Duration,
    /// Redis URL, if responses should be stored there.
    pub redis: Option<String>,
    /// Whether a local in-memory tier sits in front of Redis.
    pub local_tier: bool,
    /// PostgreSQL URL, if the data should live there.
    pub database: Option<String>,
    /// The admin API's token, if given (otherwise a random one is made).
    pub admin_token: Option<String>,
    /// Whether to warm the cache before serving.
    pub warm: bool,
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
    /// `CLASSROOM_ADMIN_TOKEN`, used when `--admin-token` is absent.
    pub admin_token: Option<String>,
}

/// Parses the arguments (without the program name), with `env` for what
/// they leave out.
pub fn parse<I>(args: I, env: Env) -> Result<Command, String>
where
    I: IntoIterator<Item = String>,
{
    let mut parsed = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
        origin_delay: Duration::from_millis(20),
        redis: None,
        local_tier: false,
        database: None,
        admin_token: None,
        warm: false,
    };
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
        if flag == "--warm" {
            parsed.warm = true;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let raw = value()?;
                parsed.listen = raw.parse().map_err(|_| {
                    format!("--listen: {raw:?} is not an address like 127.0.0.1:3000")
                })?;
            }
            "--origin-delay-ms" => {
                let raw = value()?;
                let ms: u64 = raw.parse().map_err(|_| {
                    format!("--origin-delay-ms: {raw:?} is not a whole number of milliseconds")
                })?;
                parsed.origin_delay = Duration::from_millis(ms);
            }
            "--redis" => parsed.redis = Some(value()?),
            "--local-tier" if inline.is_none() => parsed.local_tier = true,
            "--database" => parsed.database = Some(value()?),
            "--admin-token" => parsed.admin_token = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if parsed.redis.is_none() {
        parsed.redis = env.redis_url.filter(|url| !url.is_empty());
    }
    if parsed.admin_token.is_none() {
        parsed.admin_token = env.admin_token.filter(|token| !token.is_empty());
    }
    Ok(Command::Run(parsed))
}
