//! The listener's options.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, NoTls, Socket};

use super::connect::{Connect, WithTls};
use super::sql::CHANNEL;

/// The `application_name` the listener's session shows in
/// `pg_stat_activity` unless the connection config names one.
pub const DEFAULT_APPLICATION_NAME: &str = "tagcache-listener";
/// Default time between two checks that the session still answers.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Default bound on connecting, on `LISTEN` and on each check.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest pause between two attempts to reconnect.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First pause after a failed attempt; doubled on each further failure.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Options of a [`PgInvalidations`](super::PgInvalidations) listener.
///
/// ```
/// use std::time::Duration;
/// use tagcache::postgres::PgListenerConfig;
///
/// let config = PgListenerConfig::from_url("postgres://app@db.internal:5432/app")
///     .unwrap()
///     .ping_interval(Duration::from_secs(2));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct PgListenerConfig {
    pub(crate) pg: Config,
    pub(crate) connector: Arc<dyn Connect>,
    pub(crate) channel: String,
    pub(crate) ping_interval: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) max_backoff: Duration,
}

impl fmt::Debug for PgListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s own Debug hides the password.
        f.debug_struct("PgListenerConfig")
            .field("pg", &self.pg)
            .field("channel", &self.channel)
            .field("ping_interval", &self.ping_interval)
            .field("response_timeout", &self.response_timeout)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

impl PgListenerConfig {
    /// Listens with `pg`'s connection settings, without TLS (see
    /// [`tls`](Self::tls)). The session must be a direct one (or through
    /// a session-pooling proxy): `LISTEN` does not work through
    /// transaction pooling.
    pub fn new(mut pg: Config) -> Self {
        if pg.get_application_name().is_none() {
            pg.application_name(DEFAULT_APPLICATION_NAME);
        }
        PgListenerConfig {
            pg,
            connector: Arc::new(WithTls(NoTls)),
            channel: CHANNEL.to_owned(),
            ping_interval: DEFAULT_PING_INTERVAL,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }

    /// Parses a `postgres://` URL or a `key=value` connection string.
    pub fn from_url(url: &str) -> Result<Self, tokio_postgres::Error> {
        Ok(PgListenerConfig::new(Config::from_str(url)?))
    }

    /// Connects through TLS with `tls` (for example a
    /// `postgres_native_tls::MakeTlsConnector` or
    /// `tokio_postgres_rustls::MakeRustlsConnect`).
    pub fn tls<T>(mut self, tls: T) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.connector = Arc::new(WithTls(tls));
        self
    }

    /// The channel to `LISTEN` on (default `tagcache`). The installed
    /// functions always notify `tagcache`; another channel only makes
    /// sense for payloads other code sends in the same JSON shape.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// How often the listener checks that its session still answers (a
    /// `SELECT 1` on it; default 5 s). A connection that died without
    /// closing (a partition, a frozen server) is noticed within this plus
    /// the [`response_timeout`](Self::response_timeout).
    pub fn ping_interval(mut self, every: Duration) -> Self {
        self.ping_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Bound on connecting, on `LISTEN` and on each check (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Longest pause between two attempts to reconnect (default 5 s); the
    /// pause starts at 50 ms and doubles on each failed attempt.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max.max(MIN_BACKOFF);
        self
    }
}
