//! Measurement helpers shared by the hand-rolled benchmarks (`harness =
//! false`): sampling, medians, the Markdown table and the JSON report.
//!
//! Every benchmark takes `SAMPLES` samples of a batch of requests (or
//! operations) after a warm-up, and reports the median time per request. The
//! batch size is calibrated during the warm-up so one batch lasts about
//! `BATCH_TARGET`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Samples per case (override with `BENCH_SAMPLES`).
pub fn samples() -> usize {
    std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(30)
}

/// Target duration of one batch (override with `BENCH_BATCH_MS`).
pub fn batch_target() -> Duration {
    let ms = std::env::var("BENCH_BATCH_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10);
    Duration::from_millis(ms)
}

/// The substring filters given on the command line (`cargo bench --bench
/// compare -- memory-hit/1KiB tower-http-cache`): a case runs if its name
/// contains any of them (every case runs when none is given). Flags that
/// cargo passes (`--bench`) are ignored.
pub fn filters() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

pub fn selected(filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// How many operations make a batch of about `target`, given one warm-up
/// measurement of `ops` operations taking `took`.
pub fn batch_size(ops: u64, took: Duration, target: Duration) -> u64 {
    let per_op = took.as_nanos().max(1) as f64 / ops.max(1) as f64;
    ((target.as_nanos() as f64 / per_op) as u64).clamp(8, 1_000_000)
}

/// Median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty());
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The median of the sample-by-sample ratios `case[i] / baseline[i]`.
///
/// The cases of a group are sampled in turn, so sample `i` of every case
/// ran within the same few tens of milliseconds: a burst of load from
/// another process slows all of them alike, and their ratio stays put even
/// when the absolute times move (on a shared machine they do).
pub fn paired_ratio(case: &[f64], baseline: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = case.iter().zip(baseline).map(|(c, b)| c / b).collect();
    median(&mut ratios)
}

/// The spread of the samples, for the table: the 25th and 75th percentiles.
pub fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

/// A timed loop on the current thread: warm-up for `warmup`, then `samples`
/// batches; returns the per-operation time (ns) of each batch.
pub fn sample_sync(mut op: impl FnMut(u64), warmup: Duration) -> Vec<f64> {
    let target = batch_target();
    let started = Instant::now();
    let mut ops = 0u64;
    let mut i = 0u64;
    while started.elapsed() < warmup || ops < 8 {
        op(i);
        i += 1;
        ops += 1;
    }
    let batch = batch_size(ops, started.elapsed(), target);
    (0..samples())
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                op(i);
                i += 1;
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect()
}

/// One row of a report.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub median_ns: f64,
    pub p25_ns: f64,
    pub p75_ns: f64,
    /// Against the baseline of the same group, when the group has one.
    pub ratio: Option<f64>,
    /// Free text shown in the table's last column.
    pub note: String,
}

impl Row {
    pub fn from_samples(name: impl Into<String>, mut samples: Vec<f64>) -> Row {
        let median_ns = median(&mut samples);
        let (p25_ns, p75_ns) = quartiles(&mut samples);
        Row {
            name: name.into(),
            median_ns,
            p25_ns,
            p75_ns,
            ratio: None,
            note: String::new(),
        }
    }
}

fn ns(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Prints the rows as a Markdown table.
pub fn print_table(title: &str, rows: &[Row]) {
    println!("\n### {title}\n");
    println!("| case | median ns/op | p25–p75 ns | ratio to baseline | note |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for row in rows {
        let ratio = row
            .ratio
            .map(|r| format!("{r:.2}×"))
            .unwrap_or_else(|| "–".to_owned());
        println!(
            "| {} | {} | {}–{} | {} | {} |",
            row.name,
            ns(row.median_ns),
            ns(row.p25_ns),
            ns(row.p75_ns),
            ratio,
            row.note
        );
    }
}

/// Writes `[{"name", "median_ns", "ratio_to_baseline"}]` to
/// `<repository>/target/bench/<file>` and returns the path.
///
/// The repository's root, not this package's: the reports sit next to
/// `loadgen.json` (written by the root package's example), whatever
/// `CARGO_TARGET_DIR` is. This package is the `benchmarks/` directory of
/// that root.
pub fn write_json(file: &str, rows: &[Row]) -> std::io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the benchmarks package lives in a directory of the repository")
        .join("target")
        .join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(file);
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "name": row.name,
                "median_ns": (row.median_ns * 10.0).round() / 10.0,
                "ratio_to_baseline": row.ratio.map(|r| (r * 1000.0).round() / 1000.0),
            })
        })
        .collect();
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    Ok(path)
}

/// The facts printed at the top of each run.
pub fn machine_facts() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "cpu: {cpu}; cores: {cores}; samples: {}; batch target: {:?}",
        samples(),
        batch_target()
    )
}
