//! Opening the listener's connection, with or without TLS, behind one
//! object-safe interface: the listener only needs a [`Client`] and a way to
//! poll the connection for notifications, whatever stream carries it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config, Connection, Error, Socket};

/// A connection to drive: requests of its [`Client`] go out and answers
/// come back only while it is polled, and notifications arrive through it.
pub(crate) trait MessageSource: Send {
    /// [`Connection::poll_message`].
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<AsyncMessage, Error>>>;
}

impl<S, T> MessageSource for Connection<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<AsyncMessage, Error>>> {
        Connection::poll_message(self, cx)
    }
}

/// A client and its connection.
pub(crate) type Connected = (Client, Box<dyn MessageSource>);

type Connecting = Pin<Box<dyn Future<Output = Result<Connected, Error>> + Send>>;

/// Opens connections for `config`.
pub(crate) trait Connect: Send + Sync {
    fn connect(&self, config: &Config) -> Connecting;
}

/// Connects with `T` for TLS ([`tokio_postgres::NoTls`] for none).
pub(crate) struct WithTls<T>(pub(crate) T);

impl<T> Connect for WithTls<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(&self, config: &Config) -> Connecting {
        let (config, tls) = (config.clone(), self.0.clone());
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            Ok((client, Box::new(connection) as Box<dyn MessageSource>))
        })
    }
}
