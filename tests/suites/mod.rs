//! Store-agnostic behaviour suites. Every store runs the same cases:
//!
//! ```ignore
//! #[macro_use]
//! mod suites;
//! mod support;
//! store_suite!(|| async { tagcache::Cache::default() });
//! ```
//!
//! expands to one `#[tokio::test]` per case, each with a fresh cache from
//! the factory; `with_cases!(my_macro!(args))` hands the case list to any
//! other runner (the cluster test runs them in sequence on one cluster).
//!
//! Only cases live here, one file per topic; the routes they drive and the
//! tools they drive them with are in `tests/support`. A case missing from
//! `with_cases!` is dead code, which the lint step rejects.

pub mod coalescing;
pub mod conditional;
pub mod freshness;
pub mod identity;
pub mod invalidation;
pub mod origin;
pub mod query;
pub mod reporting;
pub mod stale;
pub mod storing;
pub mod stress;
pub mod variants;
pub mod vary;

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
            storing::miss_then_hit_is_byte_identical,
            storing::only_get_and_head_are_cached,
            storing::head_is_answered_from_stored_get,
            storing::statuses_are_configurable,
            storing::unshareable_responses_are_never_stored,
            storing::large_bodies_pass_through_unstored,
            storing::streaming_bodies_are_stored_only_within_the_limit,
            storing::request_no_store_is_answered_but_not_stored,
            freshness::response_max_age_caps_route_ttl,
            freshness::client_no_cache_does_not_force_origin_by_default,
            freshness::extreme_lifetimes_do_not_overflow,
            freshness::expires_and_age_shorten_the_route_ttl,
            conditional::if_none_match_gets_304_from_cache,
            conditional::no_304_for_stored_non_2xx,
            vary::vary_selects_variants,
            vary::declared_vary_headers_never_mix_variants,
            identity::credentials_bypass_unless_per_user,
            identity::per_user_never_crosses_identities,
            identity::private_is_stored_only_per_user,
            identity::key_function_controls_bypass_and_sharing,
            identity::default_key_never_mixes_hosts,
            reporting::cache_name_is_configurable,
            reporting::stats_count_per_route,
            invalidation::tags_from_response_extension_invalidate,
            invalidation::invalidate_layer_reads_own_write,
            invalidation::handler_invalidates_through_extractor,
            invalidation::purge_reaches_every_variant,
            invalidation::fill_in_flight_during_invalidation_is_not_served,
            invalidation::body_streaming_during_invalidation_is_not_served,
            invalidation::invalidation_before_fill_does_not_poison_later_fills,
            coalescing::herd_of_misses_makes_one_origin_call,
            coalescing::collapsed_waiters_are_marked,
            coalescing::waiter_arriving_after_invalidation_skips_old_flight,
            coalescing::cancelled_leader_hands_over,
            coalescing::panicking_leader_hands_over,
            coalescing::unshareable_response_is_not_handed_to_waiters,
            coalescing::a_herd_after_an_unshareable_response_does_not_queue,
            coalescing::a_passing_key_is_cached_once_its_response_is_storable,
            coalescing::a_herd_after_an_error_status_still_coalesces,
            coalescing::waiters_stop_waiting_after_timeout,
            coalescing::coalescing_can_be_turned_off,
            stale::stale_while_revalidate_refreshes_once,
            stale::refresh_racing_invalidation_is_not_served,
            stale::stale_if_error_covers_5xx_and_errors,
            stale::invalidated_entry_is_never_served_stale,
            stale::soft_invalidation_serves_stale_under_swr,
            stale::must_revalidate_is_never_served_stale,
            stress::randomized_reads_never_stale,
            query::query_spellings_share_one_entry,
            query::ignored_query_parameters_never_select_a_response,
            query::paths_are_never_normalized,
            variants::learning_that_a_key_varies_keeps_other_keys,
            variants::every_variant_is_stored_once,
            variants::herd_of_variants_gets_each_its_own_with_one_call_per_variant,
            origin::a_response_without_freshness_is_not_stored,
            origin::explicit_freshness_is_stored_whatever_the_route_ttl,
            origin::what_must_not_be_shared_is_not_stored,
            origin::a_heuristically_cacheable_response_is_stored_for_a_share_of_its_age,
            origin::a_public_response_without_a_lifetime_gets_the_route_ttl,
            origin::authorized_requests_are_stored_only_with_permission_and_per_identity,
            origin::s_maxage_wins_over_max_age_which_wins_over_expires,
            origin::an_invalid_or_past_expires_means_already_stale,
            origin::the_upstream_age_and_date_count_against_the_lifetime,
            origin::stale_is_served_only_where_the_origin_allows,
            origin::a_stale_entry_is_revalidated_and_a_304_refreshes_it,
            origin::last_modified_is_sent_back_as_if_modified_since,
            origin::a_changed_response_replaces_the_entry,
            origin::a_no_cache_response_is_revalidated_every_time,
            origin::the_clients_condition_is_answered_after_revalidation,
            origin::validations_are_coalesced_like_fills,
            origin::max_stale_takes_a_stale_entry_the_origin_did_not_forbid,
            origin::only_if_cached_answers_504_when_nothing_is_stored,
            origin::fresher_requests_are_followed_only_where_configured,
            origin::a_no_store_request_stores_nothing,
            origin::a_successful_unsafe_request_invalidates_its_target,
            origin::a_failed_unsafe_request_invalidates_nothing,
            origin::every_variant_of_the_target_is_invalidated,
            origin::location_and_content_location_on_the_same_host_are_invalidated,
            origin::tag_invalidation_still_applies,
            origin::targeted_fields_take_precedence_over_cache_control,
            origin::tags_come_from_a_response_header_which_is_removed,
            origin::a_range_of_a_stored_response_comes_from_the_cache,
            origin::a_revalidated_entry_keeps_its_tags,
            origin::a_revalidation_is_judged_by_the_targeted_field,
            origin::a_304_that_forbids_storing_removes_the_entry,
            origin::fresher_requests_refuse_stale_entries,
            origin::a_background_refresh_asks_for_the_whole_response,
            origin::an_unsafe_request_reaches_its_target_by_key,
            origin::a_response_with_too_many_tags_is_not_stored,
            origin::bypassed_responses_lose_what_never_leaves,
            origin::a_range_request_is_never_made_conditional,
        );
    };
}

/// One `#[tokio::test]` per case, each with a cache from `$make`.
macro_rules! store_suite {
    ($make:expr) => {
        with_cases!(store_suite_tests!($make));
    };
}

/// Each case runs under the backstop, which names it when it never ends.
macro_rules! store_suite_tests {
    (($make:expr) $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let make = $make;
                crate::support::deadline::within_for(
                    crate::support::deadline::BACKSTOP,
                    concat!("case ", module_path!(), "::", stringify!($case), " never finished"),
                    suites::$module::$case(&make),
                )
                .await;
            }
        )*
    };
}
