//! `GET /` of the admin router: the dashboard, one self-contained page
//! (HTML, CSS and JavaScript compiled into the crate, no external
//! resources, charts drawn as SVG by hand). It carries no data: it asks for
//! the token, keeps it in `sessionStorage` and calls the authenticated
//! endpoints with it as a bearer header.

use axum::http::header::{
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::IntoResponse;

/// The page, assembled at compile time.
const PAGE: &str = concat!(
    include_str!("head.html"),
    "<style>\n",
    include_str!("page.css"),
    "</style>\n",
    include_str!("body.html"),
    "<script>\n",
    include_str!("page.js"),
    "</script>\n</body>\n</html>\n",
);

/// What the page may do: its own inline style and script, and calls to
/// the origin it came from; nothing else (no frames, no other hosts).
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
        ],
        PAGE,
    )
}
