//! The view of the stamps: a session of its own `LISTEN`s on the store's
//! channel, then reads every stamp; each notification (and a check every
//! second, which also proves the session alive) reads the stamps newer
//! than the newest seen. Stamps commit in the order of their values (the
//! clock's row lock), so reading "newer than the newest seen" skips none.
//! While the session is down or not yet loaded, the view is out of sync and
//! every entry counts as invalid.

use std::convert::Infallible;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::Shared;
use crate::postgres::sql::quote_ident;
use crate::postgres::task::AbortOnDrop;
use crate::stamp::{InvalidationMode, Stamp};

/// How often the view reads new stamps without being told to: it doubles
/// as the check that the session still answers.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The view's session in `pg_stat_activity`, unless the URL names one.
pub(crate) const VIEW_APPLICATION_NAME: &str = "tagcache-store-view";

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    let mut logged = false;
    loop {
        let mut synced = false;
        let Err(error) = session(&shared, &mut synced).await;
        shared.synced.store(false, Ordering::Release);
        if synced {
            backoff = Duration::from_millis(50);
            logged = false;
        }
        if !logged {
            tracing::warn!(schema = %shared.options.schema, %error, "tagcache PostgreSQL store lost its view of the stamps; every lookup misses until it is back");
            logged = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn session(shared: &Arc<Shared>, synced: &mut bool) -> Result<Infallible, String> {
    let limit = shared.options.connect_timeout;
    let mut config = shared.config.clone();
    if config.get_application_name().is_none() {
        config.application_name(VIEW_APPLICATION_NAME);
    }
    let (client, mut connection) = tokio::time::timeout(limit, config.connect(NoTls))
        .await
        .map_err(|_| "connecting: no answer".to_owned())?
        .map_err(|e| format!("connecting: {e}"))?;
    let notes = Arc::new(Notify::new());
    let (lost, mut lost_rx) = oneshot::channel::<String>();
    let driver_notes = notes.clone();
    // Never blocks: a notification only says "read the new stamps", so
    // many of them fold into one wake-up.
    let driver = tokio::spawn(async move {
        let why = loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => driver_notes.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(error)) => break error.to_string(),
                None => break "the server closed the connection".to_owned(),
            }
        };
        let _ = lost.send(why);
    });
    let _driver = AbortOnDrop(driver);

    let s = shared.schema();
    let setup = async {
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(&shared.channel)))
            .await?;
        client
            .prepare(&format!(
                "SELECT mode, tag, stamp FROM {s}.tagcache_store_stamps
                 WHERE stamp > $1 ORDER BY stamp"
            ))
            .await
    };
    let newer = tokio::time::timeout(limit, setup)
        .await
        .map_err(|_| "LISTEN: no answer".to_owned())?
        .map_err(|e| format!("LISTEN: {e}"))?;
    let mut last = 0;
    last = read(shared, &client, &newer, last).await?;
    shared.synced.store(true, Ordering::Release);
    *synced = true;
    loop {
        tokio::select! {
            _ = notes.notified() => {}
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            why = &mut lost_rx => return Err(why.unwrap_or_else(|_| "connection task ended".to_owned())),
        }
        last = read(shared, &client, &newer, last).await?;
    }
}

/// Applies the stamps newer than `last` to the view; returns the newest.
async fn read(
    shared: &Shared,
    client: &Client,
    newer: &Statement,
    last: i64,
) -> Result<i64, String> {
    let limit = shared.options.response_timeout * 4;
    let rows = tokio::time::timeout(limit, client.query(newer, &[&last]))
        .await
        .map_err(|_| "reading stamps: no answer".to_owned())?
        .map_err(|e| format!("reading stamps: {e}"))?;
    let mut newest = last;
    for row in rows {
        let (mode, tag, stamp): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        newest = newest.max(stamp);
        let stamp = Stamp(u64::try_from(stamp).unwrap_or(0));
        match mode.as_str() {
            "h" => shared.board.apply(&[tag], stamp, InvalidationMode::Hard),
            "s" => shared.board.apply(&[tag], stamp, InvalidationMode::Soft),
            "f" => shared.board.invalidate_all(stamp),
            // Written by hand: count it as a purge of everything rather
            // than ignore something meant to invalidate.
            _ => shared.board.invalidate_all(stamp),
        }
    }
    Ok(newest)
}
