//! A loopback TCP proxy that can fail on demand: the fault injector of the
//! soak run and of the Redis fault tests.
//!
//! It forwards every connection to its target until told otherwise:
//! [`Proxy::drop_all`] closes every connection and refuses new ones (Redis
//! "down": the client sees resets at once), [`Proxy::stall`] keeps every
//! connection open but forwards nothing either way (a partition: the client
//! sees timeouts), and [`Proxy::heal`] forwards again (new connections;
//! those cut stay cut, as after a real partition).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Drop,
    Stall,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.mode.send_replace(Mode::Drop);
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(watch::Sender::new(Mode::Forward));
        let modes = mode.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut changes = modes.subscribe();
                let at_start = *changes.borrow_and_update();
                tokio::spawn(async move {
                    match at_start {
                        Mode::Drop => {}
                        Mode::Stall => {
                            // Hold the connection, forward nothing.
                            let _ = changes.wait_for(|m| *m == Mode::Drop).await;
                            drop(client);
                        }
                        Mode::Forward => forward(client, target, changes).await,
                    }
                });
            }
        });
        Ok(Proxy { addr, mode, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL for the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Closes every connection and refuses new ones.
    pub fn drop_all(&self) {
        self.mode.send_replace(Mode::Drop);
    }

    /// Keeps every connection open and forwards nothing.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Forwards again (connections made from now on).
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// What it does now.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

/// Pipes `client` to `target` until either side closes or the mode changes:
/// a drop closes both sides, a stall stops forwarding but keeps them open.
async fn forward(mut client: TcpStream, target: SocketAddr, mut changes: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mode = tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => return,
        changed = changes.wait_for(|m| *m != Mode::Forward) => match changed {
            Ok(mode) => *mode,
            Err(_) => Mode::Drop,
        },
    };
    if mode == Mode::Stall {
        let _ = changes.wait_for(|m| *m == Mode::Drop).await;
    }
}
