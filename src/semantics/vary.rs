//! `Vary` (RFC 9110 §12.5.5): which request headers select a stored response.

use http::header::VARY;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::entry::own_value;

/// What a response's `Vary` lines say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// No `Vary`: one response fits every request for the key.
    None,
    /// `Vary: *`: the response cannot be matched to a later request.
    Any,
    /// The named request headers select the response (lowercase, deduplicated).
    Headers(Vec<HeaderName>),
}

/// More `Vary` names than this and the response is not stored: the key space
/// would explode and each hit would compare a long list.
pub const MAX_VARY_HEADERS: usize = 8;

impl Vary {
    /// Parses every `Vary` line of a response. A name that is not a valid
    /// header name makes the response unmatchable (`Any`).
    pub fn parse(headers: &HeaderMap) -> Vary {
        let mut names: Vec<HeaderName> = Vec::new();
        for line in headers.get_all(VARY) {
            let Ok(line) = line.to_str() else {
                return Vary::Any;
            };
            for name in line.split(',') {
                let name = name.trim();
                if name.is_empty() {
                    continue;
                }
                if name == "*" {
                    return Vary::Any;
                }
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) if !names.contains(&name) => names.push(name),
                    Ok(_) => {}
                    Err(_) => return Vary::Any,
                }
            }
        }
        if names.is_empty() {
            Vary::None
        } else {
            Vary::Headers(names)
        }
    }
}

/// The request's value for each header in `names`, in order, to keep with
/// a stored response. Multiple lines of one header are joined with `", "`
/// as RFC 9110 allows. Each value is a copy of its own (see
/// [`own_value`]), never a slice of the request's buffer.
pub fn request_values(
    names: &[HeaderName],
    request: &HeaderMap,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    names
        .iter()
        .map(|name| (name.clone(), joined(request, name, own_value)))
        .collect()
}

/// The request's lines of `name`, joined; a single line goes through
/// `single` (a clone, or a copy of its own).
fn joined(
    request: &HeaderMap,
    name: &HeaderName,
    single: fn(&HeaderValue) -> HeaderValue,
) -> Option<HeaderValue> {
    let mut values = request.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(single(first));
    };
    let mut bytes = first.as_bytes().to_vec();
    for value in std::iter::once(second).chain(values) {
        bytes.extend_from_slice(b", ");
        bytes.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&bytes).ok()
}

/// Whether a request presents exactly the header values a stored response
/// was selected by. Compared byte for byte: a stricter match than RFC 9111
/// §4.1 requires, never a looser one.
pub fn matches(stored: &[(HeaderName, Option<HeaderValue>)], request: &HeaderMap) -> bool {
    stored.iter().all(|(name, value)| {
        let mut lines = request.get_all(name).iter();
        match (value, lines.next()) {
            (None, None) => true,
            (Some(stored), Some(first)) => match lines.next() {
                None => stored == first,
                Some(_) => joined(request, name, HeaderValue::clone).as_ref() == Some(stored),
            },
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ACCEPT_ENCODING, ACCEPT_LANGUAGE};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn parses_names_star_and_garbage() {
        assert_eq!(Vary::parse(&headers(&[])), Vary::None);
        assert_eq!(
            Vary::parse(&headers(&[
                ("vary", "Accept-Encoding, accept-language"),
                ("vary", "accept-encoding")
            ])),
            Vary::Headers(vec![ACCEPT_ENCODING, ACCEPT_LANGUAGE])
        );
        assert_eq!(Vary::parse(&headers(&[("vary", "accept, *")])), Vary::Any);
        assert_eq!(Vary::parse(&headers(&[("vary", "bad header")])), Vary::Any);
    }

    #[test]
    fn matching_is_exact_and_absence_matters() {
        let stored = request_values(&[ACCEPT_ENCODING], &headers(&[("accept-encoding", "gzip")]));
        assert!(matches(&stored, &headers(&[("accept-encoding", "gzip")])));
        assert!(!matches(&stored, &headers(&[("accept-encoding", "br")])));
        assert!(!matches(&stored, &headers(&[])));
        let absent = request_values(&[ACCEPT_ENCODING], &headers(&[]));
        assert!(matches(&absent, &headers(&[])));
        assert!(!matches(&absent, &headers(&[("accept-encoding", "gzip")])));
    }

    #[test]
    fn repeated_request_lines_are_joined() {
        let req = headers(&[("accept-language", "de"), ("accept-language", "en")]);
        let stored = request_values(&[ACCEPT_LANGUAGE], &req);
        assert_eq!(stored[0].1.as_ref().unwrap(), "de, en");
        assert!(matches(&stored, &req));
        assert!(!matches(&stored, &headers(&[("accept-language", "de")])));
    }
}
