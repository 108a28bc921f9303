//! Header values shared between responses instead of formatted for each:
//! `Age` from a static table, and a thread's recent hit `Cache-Status`
//! values. Both keep a hit free of formatting and of allocation.

use std::cell::RefCell;
use std::sync::OnceLock;

use http::HeaderValue;

use super::respond::seconds_between;
use crate::entry::Entry;
use crate::semantics::cache_status::CacheStatus;

/// The `Age` header for `seconds`: from a table shared by every response
/// for the first hour (no allocation), formatted beyond that.
pub(crate) fn age_value(seconds: u64) -> HeaderValue {
    const TABLE: usize = 3600;
    static DIGITS: OnceLock<(String, Vec<(u32, u32)>)> = OnceLock::new();
    let Ok(index) = usize::try_from(seconds) else {
        return HeaderValue::from(seconds);
    };
    if index >= TABLE {
        return HeaderValue::from(seconds);
    }
    let (text, spans) = DIGITS.get_or_init(|| {
        let mut text = String::new();
        let spans = (0..TABLE)
            .map(|n| {
                let start = text.len() as u32;
                text.push_str(itoa::Buffer::new().format(n));
                (start, text.len() as u32)
            })
            .collect();
        (text, spans)
    });
    let (start, end) = spans[index];
    HeaderValue::from_static(&text[start as usize..end as usize])
}

/// `Cache-Status` of a fresh hit: `<name>; hit; ttl=<remaining>`.
///
/// Hits within the same second of remaining TTL share one value: each
/// thread keeps the last few it built, so a busy entry costs a clone (a
/// reference count) instead of formatting and allocating every time.
pub(crate) fn hit_status(name: &str, entry: &Entry, now: u64) -> HeaderValue {
    const SLOTS: usize = 16;
    thread_local! {
        static RECENT: RefCell<[(i64, Option<HeaderValue>); SLOTS]> =
            RefCell::new(std::array::from_fn(|_| (0, None)));
    }
    let ttl = seconds_between(now, entry.fresh_until_micros());
    let slot = ttl.rem_euclid(SLOTS as i64) as usize;
    // The value is `<name>; hit; ttl=<ttl>`: same TTL and same name (the
    // name followed by `;`) means the same bytes.
    let is_for = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        bytes.starts_with(name.as_bytes()) && bytes.get(name.len()) == Some(&b';')
    };
    let cached = RECENT.with(|recent| match &recent.borrow()[slot] {
        (t, Some(value)) if *t == ttl && is_for(value) => Some(value.clone()),
        _ => None,
    });
    if let Some(value) = cached {
        return value;
    }
    let value = CacheStatus::new(name).hit().ttl(ttl).finish();
    RECENT.with(|recent| recent.borrow_mut()[slot] = (ttl, Some(value.clone())));
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_status_values_are_shared_only_between_equal_names_and_ttls() {
        let entry = |ttl: u64| Entry {
            fill_stamp: crate::Stamp(0),
            ttl: std::time::Duration::from_secs(ttl),
            ..Entry::for_test()
        };
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
        assert_eq!(hit_status("a-b", &entry(5), 0), "a-b; hit; ttl=5");
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
        assert_eq!(hit_status("a", &entry(21), 0), "a; hit; ttl=21");
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
    }

    /// A repeated hit with the same name and ttl takes the value made for
    /// the one before (a clone of one buffer), not a new one.
    #[test]
    fn hit_status_values_are_reused() {
        let entry = Entry {
            ttl: std::time::Duration::from_secs(7),
            ..Entry::for_test()
        };
        let first = hit_status("reused", &entry, 0);
        let again = hit_status("reused", &entry, 0);
        assert_eq!(again, "reused; hit; ttl=7");
        assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr());
    }

    #[test]
    fn ages_from_the_table_and_beyond() {
        assert_eq!(age_value(0), "0");
        assert_eq!(age_value(59), "59");
        assert_eq!(age_value(3599), "3599");
        assert_eq!(age_value(3600), "3600");
        assert_eq!(age_value(u64::MAX), u64::MAX.to_string().as_str());
    }
}
