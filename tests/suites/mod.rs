//! Store-agnostic behaviour suites. Every store runs the same cases:
//!
//! ```ignore
//! #[macro_use]
//! mod suites;
//! store_suite!(|| async { tagcache::Cache::default() });
//! ```
//!
//! expands to one `#[tokio::test]` per case, each with a fresh cache from
//! the factory; `with_cases!(my_macro!(args))` hands the case list to any
//! other runner (the cluster test runs them in sequence on one cluster).
#![allow(dead_code)]

pub mod races;
pub mod semantics;
pub mod stress;

use std::future::Future;
use std::pin::Pin;

use tagcache::Cache;

/// Makes a fresh cache for one case.
pub trait MakeCache {
    fn make(&self) -> Pin<Box<dyn Future<Output = Cache> + '_>>;
}

impl<F, Fut> MakeCache for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = Cache> + 'static,
{
    fn make(&self) -> Pin<Box<dyn Future<Output = Cache> + '_>> {
        Box::pin(self())
    }
}

/// Calls `$callback!` with the list of every case (one list, two uses).
macro_rules! with_cases {
    ($callback:ident ! ( $($args:tt)* )) => {
        $callback!(($($args)*)
            semantics::miss_then_hit_is_byte_identical,
            semantics::only_get_and_head_are_cached,
            semantics::head_is_answered_from_stored_get,
            semantics::statuses_are_configurable,
            semantics::unshareable_responses_are_never_stored,
            semantics::credentials_bypass_unless_per_user,
            semantics::per_user_never_crosses_identities,
            semantics::private_is_stored_only_per_user,
            semantics::vary_selects_variants,
            semantics::if_none_match_gets_304_from_cache,
            semantics::response_max_age_caps_route_ttl,
            semantics::client_no_cache_does_not_force_origin_by_default,
            semantics::large_bodies_pass_through_unstored,
            semantics::streaming_bodies_are_stored_only_within_the_limit,
            semantics::tags_from_response_extension_invalidate,
            semantics::invalidate_layer_reads_own_write,
            semantics::handler_invalidates_through_extractor,
            semantics::purge_reaches_every_variant,
            semantics::key_function_controls_bypass_and_sharing,
            semantics::cache_name_is_configurable,
            semantics::stats_count_per_route,
            semantics::declared_vary_headers_never_mix_variants,
            semantics::default_key_never_mixes_hosts,
            semantics::extreme_lifetimes_do_not_overflow,
            semantics::no_304_for_stored_non_2xx,
            semantics::request_no_store_is_answered_but_not_stored,
            races::herd_of_misses_makes_one_origin_call,
            races::collapsed_waiters_are_marked,
            races::fill_in_flight_during_invalidation_is_not_served,
            races::body_streaming_during_invalidation_is_not_served,
            races::invalidation_before_fill_does_not_poison_later_fills,
            races::waiter_arriving_after_invalidation_skips_old_flight,
            races::cancelled_leader_hands_over,
            races::panicking_leader_hands_over,
            races::unshareable_response_is_not_handed_to_waiters,
            races::waiters_stop_waiting_after_timeout,
            races::coalescing_can_be_turned_off,
            races::stale_while_revalidate_refreshes_once,
            races::refresh_racing_invalidation_is_not_served,
            races::stale_if_error_covers_5xx_and_errors,
            races::invalidated_entry_is_never_served_stale,
            races::soft_invalidation_serves_stale_under_swr,
            races::must_revalidate_is_never_served_stale,
            stress::randomized_reads_never_stale,
        );
    };
}

/// One `#[tokio::test]` per case, each with a cache from `$make`.
macro_rules! store_suite {
    ($make:expr) => {
        with_cases!(store_suite_tests!($make));
    };
}

macro_rules! store_suite_tests {
    (($make:expr) $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let make = $make;
                suites::$module::$case(&make).await;
            }
        )*
    };
}
