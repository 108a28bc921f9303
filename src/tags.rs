//! Tags a handler attaches to its response.

use axum_core::response::{IntoResponseParts, ResponseParts};

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
