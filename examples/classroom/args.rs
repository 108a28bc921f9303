//! Command-line options, parsed by hand to keep the example's dependencies
//! to what the crate itself uses.

use std::net::SocketAddr;
use std::time::Duration;

/// Usage text, printed for `--help` and after a bad flag.
pub const USAGE: &str = "\
usage: classroom [--listen ADDR] [--origin-delay-ms MS] [--redis URL [--local-tier]] [--database URL]

  --listen ADDR          address to serve on (default 127.0.0.1:3000; port 0 picks a free one)
  --origin-delay-ms MS   how long every cached GET handler takes (default 20)
  --redis URL            store responses in Redis (also read from REDIS_URL)
  --local-tier           with --redis: keep recent entries in this process too
                         (hits without a round trip; other instances' writes
                         reach it as fast as their invalidations do)
  --database URL         keep the data in PostgreSQL (postgres://user@host/db), whose
                         triggers invalidate the cache (needs --features postgres)
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
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve with these options.
    Run(Args),
    /// Print the usage and exit.
    Help,
}

/// Parses the arguments (without the program name). `redis_env` is
/// `REDIS_URL`, used when `--redis` is absent.
pub fn parse<I>(args: I, redis_env: Option<String>) -> Result<Command, String>
where
    I: IntoIterator<Item = String>,
{
    let mut parsed = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
        origin_delay: Duration::from_millis(20),
        redis: None,
        local_tier: false,
        database: None,
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
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if parsed.redis.is_none() {
        parsed.redis = redis_env.filter(|url| !url.is_empty());
    }
    Ok(Command::Run(parsed))
}
