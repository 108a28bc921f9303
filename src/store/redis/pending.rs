//! Invalidations Redis has not confirmed: never forgotten, and never
//! waited for by this instance's own reads.
//!
//! When the invalidation script fails (Redis unreachable, a connection
//! killed mid-call, a failover), the invalidation is queued here and, at
//! once, *marks* its tags: until Redis confirms it, every entry carrying a
//! marked tag counts as invalidated on this instance (soft marks as stale),
//! whatever its fill stamp. So this instance never serves what it
//! invalidated, while a background task sends the queue to Redis in order,
//! with a growing pause between attempts, until Redis takes each one (and
//! publishes it to the other instances). Only then is its stamp applied to
//! the view and its marks removed, in that order; readers check the marks
//! first and the view second (the reverse order), so no moment is left
//! where neither covers an entry.
//!
//! The queue is bounded by [`MAX_QUEUED_TAGS`] tags. An invalidation that
//! would overflow it replaces the whole queue by one invalidation of
//! *everything* (a purge-all): nothing is lost, and until it lands every
//! entry is a miss on this instance. A queued purge-all replaces the queue
//! the same way, so it holds at most one.
//!
//! Limits: other instances hear of a queued invalidation only when Redis
//! takes it (they cannot be told while this instance cannot reach Redis);
//! and the queue lives in this process, so a crash before Redis is back
//! loses it (the entries it covered then live until they expire).
//! Invalidations that come from the database itself (triggers) do not
//! depend on any one instance.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::entry::Tag;
use crate::stamp::{now_micros, InvalidationMode, Validity};

/// Most tags the queue holds before it turns into one purge-all.
pub(crate) const MAX_QUEUED_TAGS: usize = 10_000;

/// What one queued invalidation reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Queued {
    Tags(Vec<Tag>, InvalidationMode),
    All,
}

#[derive(Default)]
struct Marks {
    hard: u32,
    soft: u32,
    /// When the newest soft invalidation of the tag was queued (µs).
    soft_at: u64,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(u64, Queued)>,
    next_id: u64,
    tags: usize,
    /// A purge-all is queued: every entry is invalid here.
    all: bool,
    marks: HashMap<Tag, Marks>,
}

impl Queue {
    fn mark(&mut self, queued: &Queued, add: bool) {
        match queued {
            Queued::All => self.all = add,
            Queued::Tags(tags, mode) => {
                let now = now_micros();
                for tag in tags {
                    let marks = self.marks.entry(tag.clone()).or_default();
                    let count = match mode {
                        InvalidationMode::Hard => &mut marks.hard,
                        InvalidationMode::Soft => &mut marks.soft,
                    };
                    if add {
                        *count += 1;
                        if *mode == InvalidationMode::Soft {
                            marks.soft_at = now;
                        }
                    } else {
                        *count = count.saturating_sub(1);
                    }
                    if marks.hard == 0 && marks.soft == 0 {
                        self.marks.remove(tag);
                    }
                }
                if add {
                    self.tags += tags.len();
                } else {
                    self.tags -= tags.len().min(self.tags);
                }
            }
        }
    }
}

/// The invalidations this instance queued.
#[derive(Default)]
pub(crate) struct Pending {
    /// Whether anything is queued: the hit path reads only this while
    /// Redis is fine.
    any: AtomicBool,
    queue: Mutex<Queue>,
    /// Woken when an invalidation is queued.
    pub(crate) added: Notify,
}

impl Pending {
    /// Queues an invalidation and marks its tags at once.
    pub(crate) fn push(&self, queued: Queued) {
        let mut queue = self.lock();
        let tags = match &queued {
            Queued::Tags(tags, _) => tags.len(),
            Queued::All => 0,
        };
        let overflows = queue.tags + tags > MAX_QUEUED_TAGS;
        if overflows {
            tracing::warn!(
                queued = queue.tags,
                "tagcache: too many invalidations waiting for Redis; they are replaced by one purge of everything, and every entry is a miss here until Redis takes it"
            );
        }
        if overflows || queued == Queued::All {
            // A purge-all sent after everything queued covers all of it:
            // the queue holds at most one, so `all` is a plain flag, and a
            // purge that `send_queued` is sending meanwhile cannot clear
            // this one's mark (its `done` finds its id gone).
            *queue = Queue {
                next_id: queue.next_id,
                ..Queue::default()
            };
            self.push_locked(&mut queue, Queued::All);
        } else {
            self.push_locked(&mut queue, queued);
        }
        self.any.store(true, Ordering::Release);
        metrics::gauge!("tagcache_redis_queued_invalidations").set(queue.items.len() as f64);
        drop(queue);
        self.added.notify_one();
    }

    fn push_locked(&self, queue: &mut Queue, queued: Queued) {
        queue.mark(&queued, true);
        let id = queue.next_id;
        queue.next_id += 1;
        queue.items.push_back((id, queued));
    }

    /// The oldest queued invalidation, to send.
    pub(crate) fn front(&self) -> Option<(u64, Queued)> {
        self.lock().items.front().cloned()
    }

    /// Redis took invalidation `id` and its stamp is in the view: unmark.
    pub(crate) fn done(&self, id: u64) {
        let mut queue = self.lock();
        let Some(at) = queue.items.iter().position(|(i, _)| *i == id) else {
            return;
        };
        let (_, queued) = queue.items.remove(at).expect("found above");
        queue.mark(&queued, false);
        if queue.items.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        metrics::gauge!("tagcache_redis_queued_invalidations").set(queue.items.len() as f64);
    }

    /// How many invalidations wait for Redis.
    pub(crate) fn len(&self) -> usize {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        self.lock().items.len()
    }

    /// What the queue says of an entry carrying `tags`, if anything.
    pub(crate) fn validity(&self, tags: &[Tag]) -> Option<Validity> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let queue = self.lock();
        if queue.all {
            return Some(Validity::Invalid);
        }
        let mut soft_at = None;
        for tag in tags {
            if let Some(marks) = queue.marks.get(tag) {
                if marks.hard > 0 {
                    return Some(Validity::Invalid);
                }
                soft_at = Some(soft_at.unwrap_or(0).max(marks.soft_at));
            }
        }
        soft_at.map(|at_micros| Validity::SoftInvalidated { at_micros })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<Tag> {
        names.iter().map(|&n| Tag::from(n)).collect()
    }

    #[test]
    fn queued_tags_are_marked_until_done() {
        let pending = Pending::default();
        assert_eq!(pending.validity(&tags(&["a"])), None);
        pending.push(Queued::Tags(tags(&["a", "b"]), InvalidationMode::Hard));
        pending.push(Queued::Tags(tags(&["a"]), InvalidationMode::Hard));
        pending.push(Queued::Tags(tags(&["s"]), InvalidationMode::Soft));
        assert_eq!(
            pending.validity(&tags(&["x", "b"])),
            Some(Validity::Invalid)
        );
        assert_eq!(pending.validity(&tags(&["x"])), None);
        assert!(matches!(
            pending.validity(&tags(&["s"])),
            Some(Validity::SoftInvalidated { .. })
        ));
        let (first, _) = pending.front().unwrap();
        pending.done(first);
        // `a` is still queued by the second invalidation; `b` is not.
        assert_eq!(pending.validity(&tags(&["a"])), Some(Validity::Invalid));
        assert_eq!(pending.validity(&tags(&["b"])), None);
        while let Some((id, _)) = pending.front() {
            pending.done(id);
        }
        assert_eq!(pending.len(), 0);
        assert_eq!(pending.validity(&tags(&["a", "s"])), None);
    }

    #[test]
    fn overflow_turns_into_one_purge_of_everything() {
        let pending = Pending::default();
        let many: Vec<Tag> = (0..MAX_QUEUED_TAGS)
            .map(|i| Tag::from(format!("t{i}")))
            .collect();
        pending.push(Queued::Tags(many, InvalidationMode::Hard));
        assert_eq!(pending.len(), 1);
        pending.push(Queued::Tags(tags(&["one-more"]), InvalidationMode::Hard));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.front().unwrap().1, Queued::All);
        assert_eq!(
            pending.validity(&tags(&["untouched"])),
            Some(Validity::Invalid)
        );
        let (id, _) = pending.front().unwrap();
        pending.done(id);
        assert_eq!(pending.validity(&tags(&["untouched"])), None);
    }

    /// A purge-all queued while another is being sent is not cleared by
    /// the first one's `done`, and purges never pile up.
    #[test]
    fn a_purge_queued_during_another_keeps_its_mark() {
        let pending = Pending::default();
        pending.push(Queued::All);
        let (sending, _) = pending.front().unwrap();
        pending.push(Queued::Tags(tags(&["a"]), InvalidationMode::Hard));
        pending.push(Queued::All);
        assert_eq!(
            pending.len(),
            1,
            "one purge covers everything queued before it"
        );
        pending.done(sending);
        assert_eq!(pending.validity(&tags(&["b"])), Some(Validity::Invalid));
        let (id, queued) = pending.front().unwrap();
        assert_eq!(queued, Queued::All);
        pending.done(id);
        assert_eq!(pending.validity(&tags(&["b"])), None);
    }
}
