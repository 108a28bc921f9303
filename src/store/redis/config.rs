//! Options for a [`RedisStore`](super::RedisStore).

use std::time::Duration;

use super::RedisStore;
use crate::store::{StoreError, StoreErrorKind};

/// Default key prefix.
pub const DEFAULT_NAMESPACE: &str = "tagcache";
/// Default bound on each connection attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Default bound on each store call, end to end.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(100);
pub use crate::stamp::{DEFAULT_MAX_ENTRY_LIFE, DEFAULT_MAX_TAGS};
/// Default quiet time after which the invalidation feed is pinged.
pub const DEFAULT_FEED_PING_INTERVAL: Duration = Duration::from_secs(5);

/// Where the store connects: one URL (`"redis://host:6379"`), or several
/// seed nodes of a cluster (`["redis://a:7000", "redis://b:7001"]`).
pub trait RedisUrls {
    /// The URLs, in order.
    fn into_urls(self) -> Vec<String>;
}

impl RedisUrls for &str {
    fn into_urls(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl RedisUrls for String {
    fn into_urls(self) -> Vec<String> {
        vec![self]
    }
}

impl RedisUrls for &String {
    fn into_urls(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<T: Into<String>> RedisUrls for Vec<T> {
    fn into_urls(self) -> Vec<String> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<String>, const N: usize> RedisUrls for [T; N] {
    fn into_urls(self) -> Vec<String> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: AsRef<str>> RedisUrls for &[T] {
    fn into_urls(self) -> Vec<String> {
        self.iter().map(|u| u.as_ref().to_owned()).collect()
    }
}

/// Resolved options, shared with the background task.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) max_entry_life: Duration,
    pub(crate) max_tags: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) replicas_to_wait: usize,
    pub(crate) leases: bool,
    pub(crate) lease_notifications: bool,
}

/// Options for a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .build().await to connect"]
pub struct RedisStoreBuilder {
    pub(crate) urls: Vec<String>,
    pub(crate) namespace: String,
    pub(crate) cluster: bool,
    pub(crate) options: Options,
}

impl RedisStoreBuilder {
    pub(crate) fn new(urls: Vec<String>) -> Self {
        RedisStoreBuilder {
            urls,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            cluster: false,
            options: Options {
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                response_timeout: DEFAULT_RESPONSE_TIMEOUT,
                max_entry_life: DEFAULT_MAX_ENTRY_LIFE,
                max_tags: DEFAULT_MAX_TAGS,
                ping_interval: DEFAULT_FEED_PING_INTERVAL,
                replicas_to_wait: 0,
                leases: true,
                lease_notifications: true,
            },
        }
    }

    /// Prefix of every key and of the invalidation channel (default
    /// `tagcache`). Instances that share a namespace share entries and
    /// invalidations; use one per application and environment. Printable
    /// ASCII without spaces or braces, at most 64 bytes.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Bound on each attempt to connect to a node (default 250 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Bound on each store call from start to answer, including any wait
    /// for a reconnection in progress (default 100 ms). When it runs out the
    /// call fails with [`StoreErrorKind::Unavailable`] and the request is
    /// served from the origin.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.options.response_timeout = timeout;
        self
    }

    /// No entry lives longer than this after its fill started, whatever its
    /// TTL and stale windows (default 1 day): Redis expires entries by then
    /// and tag stamps older than this are pruned. Every instance sharing a
    /// namespace must use the same value.
    pub fn max_entry_life(mut self, life: Duration) -> Self {
        self.options.max_entry_life = life;
        self
    }

    /// Cap on the tag stamps held in this instance's view (default 1 M);
    /// past it the oldest are shed and the entries they covered turn into
    /// misses.
    pub fn max_tags(mut self, tags: usize) -> Self {
        self.options.max_tags = tags;
        self
    }

    /// How many replicas must hold an invalidation before it counts as
    /// made (default 0). Redis replicates asynchronously: a master that
    /// fails right after recording an invalidation may be replaced by a
    /// replica that never got it, and instances that load the stamp table
    /// from the new master would not know of it. With `n > 0`, each
    /// invalidation is followed by `WAIT n`; if fewer replicas confirm it
    /// within half the response timeout, it is treated like one Redis did
    /// not take: this instance counts it at once and sends it again until
    /// `n` replicas have it. Set it to 1 when masters have replicas (it
    /// costs one round trip per invalidation, none per read or fill).
    ///
    /// Limits: `WAIT` holds the store's shared connection until the
    /// replicas answer (up to half the response timeout when they lag);
    /// with Redis Cluster it is answered by every master, so each needs `n`
    /// replicas; and an invalidation the replicas did not confirm in time
    /// is run again whole, so replicas that lag for long make the queue
    /// overflow into purges of everything.
    ///
    /// Fill stamps need no such wait: the clock is never behind the
    /// server's `TIME`, so a promoted replica hands out stamps later than
    /// any the old master did, as long as the nodes' clocks agree to
    /// within the time a failover takes.
    pub fn wait_for_replicas(mut self, replicas: usize) -> Self {
        self.options.replicas_to_wait = replicas;
        self
    }

    /// Whether the URLs are seed nodes of a Redis Cluster (default `false`).
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// How often the feed publishes a heartbeat through the namespace's
    /// master; each must come back on the subscription before the next is
    /// sent, so a subscription that silently stopped receiving is noticed
    /// within two intervals (default 5 s), and the view then counts every
    /// entry as a miss until it has resubscribed and reloaded.
    pub fn feed_ping_interval(mut self, interval: Duration) -> Self {
        self.options.ping_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Whether instances sharing the namespace share one origin call per
    /// key through a lease in Redis (default `true`; see
    /// [`crate::store::lease`]). Off, each instance still coalesces its
    /// own requests, so a herd over `n` instances costs `n` origin calls.
    /// Either way a miss costs the same number of round trips (a lease is
    /// taken in the call that looks the key up again); only instances
    /// that wait for another's lease are sent a message when it ends.
    pub fn leases(mut self, leases: bool) -> Self {
        self.options.leases = leases;
        self
    }

    /// Whether waiters hear a lease's end by pub/sub (default) or poll for
    /// it with a backoff; for measuring the two against each other.
    #[doc(hidden)]
    pub fn lease_notifications(mut self, notify: bool) -> Self {
        self.options.lease_notifications = notify;
        self
    }

    /// Connects, subscribes to the invalidation feed and loads the tag
    /// stamps.
    ///
    /// Errors only on invalid options (URL, namespace). If Redis cannot be
    /// reached, the store is returned anyway: every call fails with
    /// [`StoreErrorKind::Unavailable`] (the layers serve from the origin)
    /// until a background task gets through, and then it works without
    /// being rebuilt. [`RedisStore::is_in_sync`] tells which state it is in.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        validate_namespace(&self.namespace)?;
        if self.urls.is_empty() {
            return Err(invalid("no Redis URL given"));
        }
        if self.urls.len() > 1 && !self.cluster {
            return Err(invalid(
                "several Redis URLs given: call .cluster(true) for a Redis Cluster",
            ));
        }
        RedisStore::connect(self).await
    }
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Other, message)
}

fn validate_namespace(ns: &str) -> Result<(), StoreError> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid namespace {ns:?}: use 1 to 64 printable ASCII characters without spaces or braces"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["tagcache", "app:prod", "a", "my-app_v2.1/x"] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "{x}", "x}", "é", &"x".repeat(65)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!("redis://a".into_urls(), ["redis://a"]);
        assert_eq!(["redis://a", "redis://b"].into_urls().len(), 2);
        assert_eq!(vec![String::from("redis://a")].into_urls().len(), 1);
        let urls = [String::from("redis://a")];
        assert_eq!(urls[..].into_urls().len(), 1);
    }
}
