//! Deadlines: no test waits for ever. Every wait on something another task,
//! process or server must do goes through [`within`], which fails the test
//! with a message naming what never happened; each whole test also runs
//! under [`backstop`] (or, for the suites, the same bound per case).
//!
//! The limits bound failures, they never time anything: they are generous
//! for a loaded two-core CI machine, and a passing test never comes near
//! them. On tokio's paused clock (`start_paused`), time jumps ahead as soon
//! as every task is idle, so there a wait that can never end fails at once.

use std::fmt::{self, Display};
use std::future::{Future, IntoFuture};
use std::panic::Location;
use std::pin::Pin;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};

/// How long one wait may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How long one whole test (or suite case) may take.
pub const BACKSTOP: Duration = Duration::from_secs(120);

/// How long [`eventually`] pauses between tries.
const POLL: Duration = Duration::from_millis(10);

/// Awaits `fut`; if it has not finished after [`DEADLINE`], panics with
/// `what`, a phrase saying what never happened ("request GET /r never
/// answered"), followed by "within 30 s" and where the test was waiting.
///
/// This and the helpers built on it are plain functions returning a future,
/// not `async fn`s, so that `#[track_caller]` can name the caller's line.
#[track_caller]
pub fn within<T>(what: impl Display, fut: impl Future<Output = T>) -> impl Future<Output = T> {
    within_for(DEADLINE, what, fut)
}

/// [`within`] with a limit of its own.
#[track_caller]
pub fn within_for<T>(
    limit: Duration,
    what: impl Display,
    fut: impl Future<Output = T>,
) -> impl Future<Output = T> {
    within_at(limit, Location::caller(), what, fut)
}

async fn within_at<T>(
    limit: Duration,
    at: &'static Location<'static>,
    what: impl Display,
    fut: impl Future<Output = T>,
) -> T {
    // The future is dropped before `what` is shown, so a `Lazy` message
    // sees the state it left behind.
    let result = tokio::time::timeout(limit, fut).await;
    match result {
        Ok(value) => value,
        Err(_) => panic!("{what} within {} s (waiting at {at})", limit.as_secs()),
    }
}

/// Runs a whole test body under [`BACKSTOP`], failing with the test's name
/// (the name of the thread the test harness runs it on).
#[track_caller]
pub fn backstop<T>(body: impl Future<Output = T>) -> impl Future<Output = T> {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("(unnamed)");
    within_for(BACKSTOP, format!("test {name} never finished"), body)
}

/// A message worked out only when it is shown, so that it can report the
/// state at the deadline ("only 2 of 5 handlers reached the gate").
pub struct Lazy<F>(pub F);

impl<F: Fn() -> String> Display for Lazy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// Polls `condition` every 10 ms until it holds; panics with
/// "condition never held: `what`" at the [`DEADLINE`].
#[track_caller]
pub fn eventually<F, Fut>(what: impl Display, mut condition: F) -> impl Future<Output = ()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let at = Location::caller();
    async move {
        let poll = async {
            while !condition().await {
                tokio::time::sleep(POLL).await;
            }
        };
        let what = Lazy(|| format!("condition never held: {what}"));
        within_at(DEADLINE, at, what, poll).await;
    }
}

/// A task whose `.await` is bounded: it gives the task's result (`Err` when
/// the task panicked or was aborted), or panics with `what` at the
/// [`DEADLINE`].
pub struct Spawned<T> {
    what: String,
    handle: JoinHandle<T>,
}

/// Spawns `fut`; `what` says what never happened if awaiting it times out
/// ("request GET /r never answered").
pub fn spawn<T: Send + 'static>(
    what: impl Into<String>,
    fut: impl Future<Output = T> + Send + 'static,
) -> Spawned<T> {
    Spawned {
        what: what.into(),
        handle: tokio::spawn(fut),
    }
}

impl<T> Spawned<T> {
    /// Cancels the task (its future is dropped at its next await).
    pub fn abort(&self) {
        self.handle.abort();
    }
}

impl<T: Send + 'static> IntoFuture for Spawned<T> {
    type Output = Result<T, JoinError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    #[track_caller]
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(within(self.what, self.handle))
    }
}
