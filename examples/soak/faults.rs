//! Carries out the [plan](super::schedule): each fault at its moment, held
//! for its time, then undone. A fault the soak cannot inject (redis-server
//! will not start again, say) ends the run with an error: a soak that did
//! not inject its faults proves nothing.

use std::io;
use std::time::{Duration, Instant};

use super::proxy::Proxy;
use super::schedule::{Fault, Step};
use super::server::RedisServer;

/// How often connections are killed during a kill fault.
const KILL_EVERY: Duration = Duration::from_millis(50);

/// What one fault did.
#[derive(Clone, Debug)]
pub struct Injected {
    pub fault: Fault,
    /// From its start to its undoing (a restart: until Redis answered).
    pub took: Duration,
    /// Connections cut by `CLIENT KILL`.
    pub killed: u64,
}

/// Injects every step of `plan`, timed from `start`. `links[i]` is the
/// proxy between instance `i` and `server`.
pub async fn inject(
    plan: &[Step],
    start: Instant,
    server: &mut RedisServer,
    links: &[Proxy],
) -> io::Result<Vec<Injected>> {
    let mut done = Vec::with_capacity(plan.len());
    for step in plan {
        tokio::time::sleep_until((start + step.at).into()).await;
        let began = Instant::now();
        let killed = apply(step, server, links).await?;
        let took = began.elapsed();
        eprintln!(
            "[{:6.2} s] {} for {} ms{}",
            step.at.as_secs_f64(),
            step.fault,
            took.as_millis(),
            if killed > 0 {
                format!(", {killed} connections killed")
            } else {
                String::new()
            }
        );
        done.push(Injected {
            fault: step.fault,
            took,
            killed,
        });
    }
    Ok(done)
}

/// Injects one fault, holds it and undoes it; returns the connections
/// killed.
async fn apply(step: &Step, server: &mut RedisServer, links: &[Proxy]) -> io::Result<u64> {
    let hold = || tokio::time::sleep(step.hold);
    match step.fault {
        Fault::KillNormal | Fault::KillPubsub => {
            let kind = if step.fault == Fault::KillNormal {
                "normal"
            } else {
                "pubsub"
            };
            let until = Instant::now() + step.hold;
            let mut killed = 0;
            while Instant::now() < until {
                killed += server.kill_clients(kind).await?;
                tokio::time::sleep(KILL_EVERY).await;
            }
            return Ok(killed);
        }
        Fault::Stall(i) => {
            links[i].stall();
            hold().await;
            links[i].heal();
        }
        Fault::Cut(i) => {
            links[i].drop_all();
            hold().await;
            links[i].heal();
        }
        Fault::Pause => {
            server.pause().await?;
            hold().await;
            server.resume().await?;
        }
        Fault::Restart => {
            server.kill().await?;
            hold().await;
            server.start_again().await?;
        }
    }
    Ok(0)
}
