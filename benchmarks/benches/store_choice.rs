//! quick_cache (what `MemoryStore` is built on) against moka's synchronous
//! cache, for the operations the memory store does: a hit returning a clone
//! of an `Arc<Entry>`, and an insert into a byte-bounded cache.
//!
//! Both caches are configured as a byte-bounded response store would be:
//! quick_cache with a weighter (as in tagcache's `src/store/memory.rs`),
//! moka with a weigher and `max_capacity` in bytes; each with its default
//! hasher. The values are real `tagcache::Entry`s with a 1 KiB body.
//!
//! - `get-hit`: 10 000 entries held, keys looked up in a shuffled order;
//! - `insert`: new keys into a 16 MiB cache that is full, so every insert
//!   also evicts.
//!
//! Each on 1 thread and on 8 threads (wall time / total operations). Cases
//! of one group are sampled in turn. Run in `benchmarks/`: `cargo bench
//! --bench store_choice`; results on stdout and in the repository's
//! `target/bench/store_choice.json`.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use quick_cache::Weighter;

use common::{print_table, selected, Row};
use tagcache::{Entry, KeyHash, Stamp};

const ENTRIES: usize = 10_000;
const WARMUP: Duration = Duration::from_millis(150);

#[derive(Clone)]
struct Stored {
    #[allow(dead_code)]
    entry: Arc<Entry>,
    weight: u64,
}

#[derive(Clone, Copy)]
struct ByWeight;

impl Weighter<KeyHash, Stored> for ByWeight {
    fn weight(&self, _key: &KeyHash, value: &Stored) -> u64 {
        value.weight
    }
}

type Quick = quick_cache::sync::Cache<KeyHash, Stored, ByWeight>;
type Moka = moka::sync::Cache<KeyHash, Stored>;

fn quick(max_bytes: u64) -> Quick {
    // The same sizing as `MemoryStoreBuilder::build`.
    let estimated_items = (max_bytes / 4096).clamp(64, 1 << 22) as usize;
    Quick::with_weighter(estimated_items, max_bytes, ByWeight)
}

fn moka(max_bytes: u64) -> Moka {
    Moka::builder()
        .max_capacity(max_bytes)
        .weigher(|_key: &KeyHash, value: &Stored| value.weight.min(u32::MAX as u64) as u32)
        .build()
}

fn entry(i: u64) -> Stored {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(1024u32));
    let entry = Entry {
        route: "bench".into(),
        key: format!("/items/{i}").into(),
        identity: None,
        status: StatusCode::OK,
        headers,
        body: Bytes::from(vec![b'x'; 1024]),
        tags: vec![format!("item:{i}").into_boxed_str()].into_boxed_slice(),
        vary: Box::new([]),
        variants: None,
        fill_stamp: Stamp(1),
        stored_at_micros: 1,
        ttl: Duration::from_secs(3600),
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        validate_for: Duration::ZERO,
        must_revalidate: false,
        withholds: false,
    };
    let weight = entry.weight();
    Stored {
        entry: Arc::new(entry),
        weight,
    }
}

/// A key like the layer makes: a 128-bit hash.
fn key(i: u64) -> KeyHash {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    KeyHash(((x as u128) << 64) | i as u128)
}

/// A shuffled visiting order of the `ENTRIES` keys, 64 Ki long.
fn order() -> Vec<KeyHash> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..65_536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            key(state % ENTRIES as u64)
        })
        .collect()
}

type Op<'a> = &'a (dyn Fn(usize, u64) + Sync);

/// `n` calls of `op` on each of `threads` threads; ns per call (wall time /
/// total calls). `op` gets the thread index and the call index.
fn run(threads: usize, op: Op<'_>, n: u64) -> f64 {
    if threads == 1 {
        let started = Instant::now();
        for i in 0..n {
            op(0, i);
        }
        return started.elapsed().as_nanos() as f64 / n as f64;
    }
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for i in 0..n {
                    op(t, i);
                }
            });
        }
        barrier.wait();
        let started = Instant::now();
        // The scope joins every thread before returning.
        started
    })
    .elapsed()
    .as_nanos() as f64
        / (n * threads as u64) as f64
}

/// Calibrates each case, then samples them in turn.
fn measure(threads: usize, cases: &[(String, Op<'_>)]) -> Vec<Row> {
    let batches: Vec<u64> = cases
        .iter()
        .map(|(_, op)| {
            let started = Instant::now();
            let mut done = 0;
            while started.elapsed() < WARMUP {
                run(threads, *op, 1_000);
                done += 1_000 * threads as u64;
            }
            (common::batch_size(done, started.elapsed(), common::batch_target()) / threads as u64)
                .max(100)
        })
        .collect();
    let mut samples = vec![Vec::new(); cases.len()];
    for _ in 0..common::samples() {
        for (i, (_, op)) in cases.iter().enumerate() {
            samples[i].push(run(threads, *op, batches[i]));
        }
    }
    cases
        .iter()
        .zip(&samples)
        .map(|((name, _), case)| {
            let mut row = Row::from_samples(name.clone(), case.clone());
            row.ratio = Some(common::paired_ratio(case, &samples[0]));
            row
        })
        .collect()
}

fn main() {
    let filters = common::filters();
    println!("# store_choice\n\n{}", common::machine_facts());
    let total = Instant::now();
    let mut all = Vec::new();

    // get-hit: both caches hold the same 10 000 entries.
    let values: Vec<Stored> = (0..ENTRIES as u64).map(entry).collect();
    let q = quick(64 << 20);
    let m = moka(64 << 20);
    for (i, v) in values.iter().enumerate() {
        q.insert(key(i as u64), v.clone());
        m.insert(key(i as u64), v.clone());
    }
    m.run_pending_tasks();
    assert_eq!(q.len(), ENTRIES);
    assert_eq!(m.entry_count() as usize, ENTRIES);
    let order = order();
    let mask = order.len() - 1;
    let q_get = |t: usize, i: u64| {
        let k = &order[(i as usize).wrapping_add(t * 4099) & mask];
        black_box(q.get(k).expect("held"));
    };
    let m_get = |t: usize, i: u64| {
        let k = &order[(i as usize).wrapping_add(t * 4099) & mask];
        black_box(m.get(k).expect("held"));
    };
    for threads in [1, 8] {
        let suffix = format!(
            "get-hit/{threads}thread{}",
            if threads > 1 { "s" } else { "" }
        );
        let cases: Vec<(String, Op<'_>)> = vec![
            (format!("quick_cache/{suffix}"), &q_get),
            (format!("moka-sync/{suffix}"), &m_get),
        ];
        if !cases.iter().any(|(name, _)| selected(&filters, name)) {
            continue;
        }
        let rows = measure(threads, &cases);
        print_table(
            &format!("get-hit of Arc<Entry>, {threads} thread(s)"),
            &rows,
        );
        all.extend(rows);
    }
    drop((q, m));

    // insert: fresh keys into a full 16 MiB cache (evicting).
    let value = entry(0);
    let q = quick(16 << 20);
    let m = moka(16 << 20);
    let next = AtomicU64::new(0);
    let q_insert = |_: usize, _: u64| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        q.insert(key(n), value.clone());
    };
    let m_insert = |_: usize, _: u64| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        m.insert(key(n), value.clone());
    };
    for threads in [1, 8] {
        let suffix = format!(
            "insert/{threads}thread{}",
            if threads > 1 { "s" } else { "" }
        );
        let cases: Vec<(String, Op<'_>)> = vec![
            (format!("quick_cache/{suffix}"), &q_insert),
            (format!("moka-sync/{suffix}"), &m_insert),
        ];
        if !cases.iter().any(|(name, _)| selected(&filters, name)) {
            continue;
        }
        let rows = measure(threads, &cases);
        print_table(&format!("insert (evicting), {threads} thread(s)"), &rows);
        all.extend(rows);
    }
    m.run_pending_tasks();
    println!(
        "\nafter the inserts: quick_cache holds {} entries / {} bytes, moka {} entries / {} bytes (budget {} bytes)",
        q.len(),
        q.weight(),
        m.entry_count(),
        m.weighted_size(),
        16u64 << 20
    );

    match common::write_json("store_choice.json", &all) {
        Ok(path) => println!("\nwrote {}", path.display()),
        Err(error) => eprintln!("could not write store_choice.json: {error}"),
    }
    println!("total time: {:.1} s", total.elapsed().as_secs_f64());
}
