//! Tags: what data a response depends on. The [`Tags`] response extension
//! handlers return, and the one way both layers gather a response's tags.

use std::sync::Arc;

use axum_core::response::{IntoResponseParts, ResponseParts};
use http::header::HOST;
use http::request::Parts;
use http::{response, HeaderMap, HeaderName, HeaderValue, Request, Uri};

use crate::entry::Tag;
use crate::semantics::query::normalize;

/// Tags carried in a response's extensions.
///
/// On a cached route they are added to the entry's tags; on a route behind
/// an [`InvalidateLayer`](crate::InvalidateLayer) they are invalidated once
/// the handler succeeded. Handlers return it as part of their response, so
/// the tag can come from data only the handler knows (the owner of a
/// session, say):
///
/// ```
/// use axum::Json;
/// use tagcache::Tags;
///
/// async fn get_session() -> (Tags, Json<&'static str>) {
///     let owner = 7; // read from the database
///     (Tags::new([format!("teacher:{owner}")]), Json("..."))
/// }
/// # let _ = get_session;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    /// Tags from any list of strings.
    pub fn new<I, T>(tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Tags(tags.into_iter().map(Into::into).collect())
    }

    /// Adds a tag.
    pub fn push(&mut self, tag: impl Into<String>) {
        self.0.push(tag.into());
    }

    /// The tags.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl IntoResponseParts for Tags {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        match res.extensions_mut().get_mut::<Tags>() {
            Some(existing) => existing.0.extend(self.0),
            None => {
                res.extensions_mut().insert(self);
            }
        }
        Ok(res)
    }
}

impl<T: Into<String>> FromIterator<T> for Tags {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Tags::new(iter)
    }
}

/// A layer's tags function, from the request head and the response head.
pub(crate) type TagsFn = Arc<dyn Fn(&Parts, &response::Parts) -> Vec<String> + Send + Sync>;

/// Boxes a user's tags closure (any iterable of string-likes).
pub(crate) fn tags_fn<F, I, T>(tags: F) -> TagsFn
where
    F: Fn(&Parts, &response::Parts) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    Arc::new(move |req: &Parts, res: &response::Parts| {
        tags(req, res).into_iter().map(Into::into).collect()
    })
}

/// A response's tags: the layer's function (when it has one and the request
/// head was kept for it), then the handler's [`Tags`] extension; each tag
/// once, in that order.
pub(crate) fn gather(
    tags_of: Option<&TagsFn>,
    request: Option<&Parts>,
    response: &response::Parts,
) -> Vec<Tag> {
    let from_fn = match (tags_of, request) {
        (Some(tags_of), Some(request)) => tags_of(request, response),
        _ => Vec::new(),
    };
    let from_handler = response.extensions.get::<Tags>().map(Tags::as_slice);
    collect(from_fn.iter().chain(from_handler.unwrap_or_default()))
}

/// Deduplicates tags, keeping their first order.
pub(crate) fn collect<I, T>(tags: I) -> Vec<Tag>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    let mut out: Vec<Tag> = Vec::new();
    for tag in tags {
        let tag = tag.as_ref();
        if !out.iter().any(|t| &**t == tag) {
            out.push(tag.into());
        }
    }
    out
}

/// A copy of a request head without extensions or body: tags functions run
/// after the request itself went to the handler, which consumes it.
pub(crate) fn copy_head(parts: &Parts) -> Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

/// Reserved tag prefix: every entry carries `#key:<its key>`, which is how
/// [`Cache::purge`](crate::Cache::purge) reaches all variants of a key
/// without a scan.
pub(crate) const KEY_TAG_PREFIX: &str = "#key:";

/// The implicit tag of every entry stored under `key`.
pub(crate) fn key_tag(key: &str) -> Tag {
    let mut tag = String::with_capacity(KEY_TAG_PREFIX.len() + key.len());
    tag.push_str(KEY_TAG_PREFIX);
    tag.push_str(key);
    tag.into_boxed_str()
}

/// Reserved tag prefix of a target URI: in
/// [`Freshness::Origin`](crate::Freshness::Origin) every entry carries
/// `#uri:<host><path>[?<query in normal form>]`, which an unsafe request to
/// that URI invalidates (RFC 9111 §4.4), whatever variants it has.
pub(crate) const URI_TAG_PREFIX: &str = "#uri:";

/// The tag of the URI `target` on `host`; the query is read in normal form
/// (see [`crate::semantics::query`]), as the default key reads it.
pub(crate) fn uri_tag(host: &str, target: &Uri) -> Tag {
    let query = target.query().map(normalize).unwrap_or_default();
    let path = target.path();
    let mut tag =
        String::with_capacity(URI_TAG_PREFIX.len() + host.len() + path.len() + query.len() + 1);
    tag.push_str(URI_TAG_PREFIX);
    tag.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    tag.push_str(path);
    if !query.is_empty() {
        tag.push('?');
        tag.push_str(&query);
    }
    tag.into_boxed_str()
}

/// The host a request is for: its `Host` header, or the authority of its
/// URI (HTTP/2); empty if it names none.
pub(crate) fn host_of(parts: &Parts) -> &str {
    parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

/// The URI a `Location` or `Content-Location` value names, when it is on
/// `host`, the host of the request it answers: an absolute path, or an
/// absolute URI with that authority; never another host's, which the origin
/// does not speak for (RFC 9111 §4.4).
pub(crate) fn same_host_uri(host: &str, location: &HeaderValue) -> Option<Uri> {
    let uri: Uri = location.to_str().ok()?.trim().parse().ok()?;
    match uri.authority() {
        Some(authority) if authority.as_str().eq_ignore_ascii_case(host) => Some(uri),
        Some(_) => None,
        None if uri.path().starts_with('/') => Some(uri),
        None => None,
    }
}

/// The tags a response header lists (`Surrogate-Key: a b`, `Cache-Tag: a,b`):
/// separated by spaces or commas, across every line of the header.
pub(crate) fn header_tags<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split([' ', ',', '\t']))
        .filter(|tag| !tag.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_tags_name_the_host_path_and_normal_query() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            &*uri_tag("Example.com", &uri("/a?b=2&a=1")),
            "#uri:example.com/a?a=1&b=2"
        );
        assert_eq!(&*uri_tag("h", &uri("/a?")), "#uri:h/a");
        assert_eq!(&*uri_tag("h", &uri("http://h/a")), "#uri:h/a");
        let at = |v: &'static str| {
            let uri = same_host_uri("h:8080", &HeaderValue::from_static(v))?;
            Some(uri_tag("h:8080", &uri))
        };
        assert_eq!(at("/x?b&a").as_deref(), Some("#uri:h:8080/x?a&b"));
        assert_eq!(at("http://H:8080/y").as_deref(), Some("#uri:h:8080/y"));
        assert_eq!(at("http://other/y"), None);
        assert_eq!(at("relative/y"), None);
        // The one form without authority whose path is not absolute.
        assert_eq!(at("*"), None);
        assert_eq!(at("::"), None);
    }

    #[test]
    fn header_tags_split_on_spaces_and_commas() {
        let mut headers = HeaderMap::new();
        headers.append("surrogate-key", HeaderValue::from_static("a  b,c"));
        headers.append("surrogate-key", HeaderValue::from_static(" d "));
        let name = HeaderName::from_static("surrogate-key");
        assert_eq!(
            header_tags(&headers, &name).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            header_tags(&headers, &HeaderName::from_static("x")).count(),
            0
        );
    }

    #[test]
    fn gathered_tags_come_from_the_function_then_the_handler_once_each() {
        let request = copy_head(&Request::get("/x").body(()).unwrap().into_parts().0);
        let mut response = http::Response::new(()).into_parts().0;
        response.extensions.insert(Tags::new(["b", "c", "a"]));
        let tags_of = tags_fn(|_, _| ["a", "b"]);
        let gathered = gather(Some(&tags_of), Some(&request), &response);
        assert_eq!(gathered, ["a", "b", "c"].map(Tag::from));
        // Without the request head, only the handler's tags count.
        assert_eq!(
            gather(Some(&tags_of), None, &response),
            ["b", "c", "a"].map(Tag::from)
        );
    }
}
