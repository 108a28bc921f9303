//! Background tasks that end with their owner.

use tokio::task::JoinHandle;

/// Aborts the task when dropped, so a session's helper tasks end with it.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
