//! The connection: one multiplexed connection for a single node
//! ([`ConnectionManager`]), or the async cluster client, behind one type.
//!
//! The connection can be replaced: after an outage the old one may be
//! half-open (a partition that healed leaves a socket that never answers
//! and never closes), so the circuit breaker's probe makes a fresh
//! connection, and only once that one answers does it take the old one's
//! place.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError, ScriptInvocation};

use crate::store::{StoreError, StoreErrorKind};

/// A cheap-to-clone handle on the shared connection.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One node: a multiplexed connection that reconnects by itself.
    Single(Arc<SingleSlot>),
    /// A cluster: connected once, then the client follows the topology.
    Cluster(Arc<ClusterSlot>),
}

/// The single node's connection, and what a fresh one is made from.
pub(crate) struct SingleSlot {
    manager: RwLock<ConnectionManager>,
    client: redis::Client,
    config: ConnectionManagerConfig,
}

/// The cluster connection, once established. Until then (the cluster was
/// unreachable when the store was built) a background task keeps trying and
/// every call fails fast with [`StoreErrorKind::Unavailable`].
pub(crate) struct ClusterSlot {
    conn: Mutex<Option<ClusterConnection>>,
}

impl Conn {
    /// A single-node connection, made lazily: it connects on first use and
    /// reconnects after losing the server.
    pub(crate) fn single(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Conn, StoreError> {
        let client = redis::Client::open(url).map_err(|e| config_error(url, e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| config_error(url, e))?;
        Ok(Conn::Single(Arc::new(SingleSlot {
            manager: RwLock::new(manager),
            client,
            config,
        })))
    }

    /// A cluster client; the connection itself is made by
    /// [`ClusterSlot::connect`].
    pub(crate) fn cluster_client(
        urls: &[String],
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<ClusterClient, StoreError> {
        ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            // Retries cover MOVED/ASK redirections after a resharding or a
            // failover; the overall deadline still bounds the call.
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .overall_response_timeout(Some(connect_timeout + response_timeout))
            .build()
            .map_err(|e| config_error(&urls.join(","), e))
    }

    /// Sends one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match self {
            Conn::Single(slot) => cmd.query_async(&mut slot.get()).await,
            Conn::Cluster(slot) => cmd.query_async(&mut slot.get()?).await,
        }
    }

    /// Runs a script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        match self {
            Conn::Single(slot) => invocation.invoke_async(&mut slot.get()).await,
            Conn::Cluster(slot) => invocation.invoke_async(&mut slot.get()?).await,
        }
    }

    /// Makes a fresh connection and, if it answers `PING` within `deadline`,
    /// puts it in the old one's place.
    pub(crate) async fn renew(
        &self,
        cluster_client: Option<&ClusterClient>,
        deadline: Duration,
    ) -> Result<(), StoreError> {
        match (self, cluster_client) {
            (Conn::Single(slot), _) => {
                let fresh = tokio::time::timeout(
                    deadline,
                    ConnectionManager::new_with_config(slot.client.clone(), slot.config.clone()),
                )
                .await
                .map_err(|_| unavailable("timed out connecting to Redis"))?
                .map_err(|e| map_error(&e))?;
                answers_ping(fresh.clone(), deadline).await?;
                *slot.manager.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                Ok(())
            }
            (Conn::Cluster(slot), Some(client)) => {
                let fresh = tokio::time::timeout(deadline, client.get_async_connection())
                    .await
                    .map_err(|_| unavailable("timed out connecting to the cluster"))?
                    .map_err(|e| map_error(&e))?;
                answers_ping(fresh.clone(), deadline).await?;
                *slot.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
                Ok(())
            }
            (Conn::Cluster(_), None) => Err(unavailable("no cluster client")),
        }
    }
}

/// Whether `conn` answers `PING` within `deadline`.
async fn answers_ping(
    mut conn: impl redis::aio::ConnectionLike,
    deadline: Duration,
) -> Result<(), StoreError> {
    tokio::time::timeout(
        deadline,
        redis::cmd("PING").query_async::<redis::Value>(&mut conn),
    )
    .await
    .map_err(|_| unavailable("no answer to PING"))?
    .map_err(|e| map_error(&e))?;
    Ok(())
}

impl SingleSlot {
    fn get(&self) -> ConnectionManager {
        self.manager
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClusterSlot {
    pub(crate) fn empty() -> Arc<ClusterSlot> {
        Arc::new(ClusterSlot {
            conn: Mutex::new(None),
        })
    }

    fn get(&self) -> Result<ClusterConnection, RedisError> {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "not connected to the cluster yet",
                ))
            })
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// One attempt to connect, bounded by `deadline`.
    pub(crate) async fn connect(
        &self,
        client: &ClusterClient,
        deadline: Duration,
    ) -> Result<(), StoreError> {
        let conn = tokio::time::timeout(deadline, client.get_async_connection())
            .await
            .map_err(|_| unavailable("timed out connecting to the cluster"))?
            .map_err(|e| map_error(&e))?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        Ok(())
    }
}

pub(crate) fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

fn config_error(url: &str, error: RedisError) -> StoreError {
    StoreError::new(
        StoreErrorKind::Other,
        format!("invalid Redis configuration ({url}): {error}"),
    )
}

/// Classifies a redis error: anything about reaching the server (I/O,
/// timeouts, a cluster without a reachable node, a server still loading or
/// failing over) is `Unavailable`; a reply of the wrong shape is `Corrupt`.
pub(crate) fn map_error(error: &RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    let kind = match error.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => StoreErrorKind::Unavailable,
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => StoreErrorKind::Unavailable,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreErrorKind::Corrupt,
        _ if error.is_timeout() || error.is_connection_dropped() => StoreErrorKind::Unavailable,
        _ => StoreErrorKind::Other,
    };
    StoreError::new(kind, format!("redis: {error}"))
}
