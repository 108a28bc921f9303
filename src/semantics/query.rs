//! One resource, one key: the query string as the default key sees it.
//!
//! Clients can spell one query many ways, and without normalization each
//! spelling is its own entry and its own origin call: any client could
//! multiply both at will. The default key therefore reads the query in a
//! normal form, and only makes changes under which every standard query
//! parser (`application/x-www-form-urlencoded` as axum's `Query`, serde's
//! `serde_urlencoded` and the `url` crate read it) yields the same
//! parameters in the same order per name:
//!
//! * **Empty pairs are dropped**: `?&a=1&&b=2&` reads as `?a=1&b=2`
//!   (form parsers skip empty pairs).
//! * **Percent-escapes of unreserved characters are decoded** (RFC 3986
//!   §2.3, §6.2.2.2: `A`–`Z`, `a`–`z`, `0`–`9`, `-`, `.`, `_`, `~`):
//!   `%73tatus=%61ctive` reads as `status=active`. Every other escape is
//!   kept, with its hex digits in upper case (§6.2.2.1: `%2f` is `%2F`), so
//!   an escaped `&`, `=`, `+` or `%` never changes meaning.
//! * **Parameters are sorted by name**, stably: parameters that share a
//!   name keep their order (`?tag=b&tag=a` stays `tag=b&tag=a`), since a
//!   handler reading a list would see it in that order.
//!
//! Nothing else changes: `+` and `%20` stay apart (they differ outside form
//! decoding), a name without `=` stays without it, and the path is never
//! touched (routers match paths byte for byte; `/a%2Fb` and `/a/b` may be
//! different routes).
//!
//! A handler that reads the raw query string and depends on the order of
//! different parameters, or on empty pairs, would see the difference: such
//! a route needs its own key function.

use std::borrow::Cow;

/// The query in normal form (see the module docs); borrowed when it
/// already is, so the common case allocates nothing.
pub fn normalize(query: &str) -> Cow<'_, str> {
    if query.is_empty() || is_normal(query) {
        return Cow::Borrowed(query);
    }
    Cow::Owned(join(normal_pairs(query)))
}

/// A path and query (`/list?b=1&a=2`) with the query in normal form and
/// the path untouched; borrowed when nothing changes.
pub fn normalize_target(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    match normalize(query) {
        _ if query.is_empty() => Cow::Borrowed(path),
        Cow::Borrowed(_) => Cow::Borrowed(path_and_query),
        Cow::Owned(query) if query.is_empty() => Cow::Borrowed(path),
        Cow::Owned(query) => Cow::Owned(format!("{path}?{query}")),
    }
}

/// The query in normal form with only the parameters named in `names`
/// (compared after normalization, so `%73tatus` counts as `status`).
pub fn only(query: &str, names: &[String]) -> String {
    join(
        normal_pairs(query)
            .into_iter()
            .filter(|pair| names.iter().any(|name| name == name_of(pair))),
    )
}

/// Each non-empty pair, decoded, sorted stably by name.
fn normal_pairs(query: &str) -> Vec<String> {
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(decode_unreserved)
        .collect();
    pairs.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    pairs
}

fn join(pairs: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for pair in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&pair);
    }
    out
}

/// The name part of a pair (all of it when it has no `=`).
fn name_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

/// Whether `query` is already in normal form: no empty pair, no escape to
/// decode or to upper-case, names in order.
fn is_normal(query: &str) -> bool {
    let mut previous: Option<&str> = None;
    for pair in query.split('&') {
        if pair.is_empty() || needs_decoding(pair) {
            return false;
        }
        let name = name_of(pair);
        if previous.is_some_and(|previous| previous > name) {
            return false;
        }
        previous = Some(name);
    }
    true
}

fn needs_decoding(pair: &str) -> bool {
    let bytes = pair.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && match escaped(bytes, i) {
                Some(value) => is_unreserved(value) || has_lower_hex(bytes, i),
                None => false,
            }
    })
}

/// Decodes the escapes of unreserved characters and upper-cases the hex
/// digits of the others; malformed escapes stay as they are.
fn decode_unreserved(pair: &str) -> String {
    let bytes = pair.as_bytes();
    let mut out = String::with_capacity(pair.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(value) = escaped(bytes, i) {
                if is_unreserved(value) {
                    out.push(char::from(value));
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
            out.push('%');
            i += 1;
            continue;
        }
        // Copy up to the next `%` as it is (it may be multi-byte UTF-8).
        let next = pair[i..].find('%').map_or(bytes.len(), |at| i + at);
        out.push_str(&pair[i..next]);
        i = next;
    }
    out
}

/// The byte a well-formed escape at `at` stands for.
fn escaped(bytes: &[u8], at: usize) -> Option<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let high = hex(*bytes.get(at + 1)?)?;
    let low = hex(*bytes.get(at + 2)?)?;
    Some((high * 16 + low) as u8)
}

fn has_lower_hex(bytes: &[u8], at: usize) -> bool {
    bytes[at + 1..at + 3].iter().any(u8::is_ascii_lowercase)
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_query_share_one_form() {
        let normal = normalize("status=active&page=2");
        assert_eq!(normal, "page=2&status=active");
        for spelling in [
            "page=2&status=active",
            "status=active&page=2&",
            "&status=active&page=2",
            "status=active&&page=2",
            "%73tatus=%61ctive&page=%32",
            "%73TATUS=active&page=2".replace("TATUS", "tatus").as_str(),
        ] {
            assert_eq!(normalize(spelling), normal, "{spelling:?}");
        }
    }

    #[test]
    fn normal_queries_are_borrowed() {
        for normal in [
            "", "a=1", "a=1&b=2", "a=2&a=1", "a&b=", "q=%2F%26", "x=%C3%A9",
        ] {
            assert!(
                matches!(normalize(normal), Cow::Borrowed(_)),
                "{normal:?} should be borrowed"
            );
        }
    }

    /// Only a `%` starts an escape: hex digits elsewhere (`id=41`) and a
    /// lower-case letter just before an upper-case escape (`q=a%2F`) leave
    /// the query as it is.
    #[test]
    fn text_that_only_looks_like_an_escape_needs_no_change() {
        for normal in ["id=41", "q=a%2F", "id=4a&q=b%2F"] {
            assert!(
                matches!(normalize(normal), Cow::Borrowed(n) if n == normal),
                "{normal:?} should be borrowed as it is"
            );
        }
    }

    #[test]
    fn meaning_is_kept() {
        // Repeated names keep their order; other names sort around them.
        assert_eq!(normalize("tag=b&a=1&tag=a"), "a=1&tag=b&tag=a");
        // Escapes of reserved characters stay escaped, hex in upper case.
        assert_eq!(normalize("q=a%26b%3dc"), "q=a%26b%3Dc");
        assert_eq!(normalize("q=%2f"), "q=%2F");
        // `+` and `%20` differ outside form decoding; `%2B` is a plus.
        assert_ne!(normalize("q=a+b"), normalize("q=a%20b"));
        assert_eq!(normalize("q=a%2b"), "q=a%2B");
        // A name without `=` is not a name with an empty value.
        assert_ne!(normalize("a"), normalize("a="));
        // Malformed escapes are kept as they are.
        assert_eq!(normalize("b=%zz&a=%4"), "a=%4&b=%zz");
        // Non-ASCII text passes through.
        assert_eq!(normalize("é=ü&a=1"), "a=1&é=ü");
        assert_eq!(normalize("&&&"), "");
    }

    #[test]
    fn only_keeps_the_named_parameters() {
        let names = ["status".to_owned(), "page".to_owned()];
        assert_eq!(
            only("utm_source=x&%73tatus=active&page=2&status=done", &names),
            "page=2&status=active&status=done"
        );
        assert_eq!(only("utm=1", &names), "");
        assert_eq!(only("", &names), "");
    }

    #[test]
    fn targets_keep_their_path() {
        assert_eq!(normalize_target("/a%2Fb?b=1&a=%41"), "/a%2Fb?a=A&b=1");
        assert_eq!(normalize_target("/p?"), "/p");
        assert_eq!(normalize_target("/p?&&"), "/p");
        assert!(matches!(
            normalize_target("/p?a=1"),
            Cow::Borrowed("/p?a=1")
        ));
        assert!(matches!(normalize_target("/p"), Cow::Borrowed("/p")));
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for query in ["b=%62&a=%2f&&c", "z&y=1&y=0&%41=%7E", "%E2%82%ac=1"] {
            let once = normalize(query).into_owned();
            assert_eq!(normalize(&once), once.as_str(), "{query:?}");
            assert!(matches!(normalize(&once), Cow::Borrowed(_)));
        }
    }
}
