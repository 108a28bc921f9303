//! What the example servers share: choosing the response store from their
//! `--redis URL [--local-tier]` flags, and a random admin token. Included by
//! path (`#[path = "../shared/stores.rs"] mod stores;`), since examples are
//! separate crates.

use tagcache::Cache;

/// Builds the cache `name` (also the Redis namespace) over the store the
/// flags ask for: in memory, Redis, or a 32 MiB local tier over Redis.
/// The only place that knows which stores exist.
pub async fn build_cache(
    name: &str,
    redis: Option<&str>,
    local_tier: bool,
) -> Result<Cache, String> {
    let builder = Cache::builder().cache_name(name);
    match redis {
        None if local_tier => Err("--local-tier needs --redis URL".to_owned()),
        None => Ok(builder.build()),
        #[cfg(feature = "redis")]
        Some(url) => {
            // Built even while Redis is down: the server then answers from
            // its origin and starts caching as soon as Redis answers.
            let store = tagcache::RedisStore::builder(url)
                .namespace(name)
                .build()
                .await
                .map_err(|e| format!("cannot use Redis at {url}: {e}"))?;
            if local_tier {
                // Hits from this process's memory; Redis stays the shared
                // copy and the source of every invalidation.
                eprintln!("{name}: caching in Redis at {url} (namespace `{name}`) behind a 32 MiB local tier");
                let local = tagcache::MemoryStore::builder().max_bytes(32 << 20).build();
                return Ok(builder
                    .store(tagcache::TieredStore::new(local, store))
                    .build());
            }
            eprintln!("{name}: caching in Redis at {url} (namespace `{name}`)");
            Ok(builder.store(store).build())
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(
            "Redis support needs `--features redis`; this build has only the in-memory store"
                .to_owned(),
        ),
    }
}

/// A random admin token: 32 hex digits.
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
