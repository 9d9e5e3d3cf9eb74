//! The web UI, embedded at build time (`build.rs`): files by path with their precompressed
//! variants, immutable caching for content-hashed names, `index.html` for the app's own routes,
//! and the security headers every response carries.

use axum::body::Body;
use axum::http::header::{
    ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// One embedded file.
pub(crate) struct Asset {
    /// Its URL path, from `/`.
    pub(crate) path: &'static str,
    /// Its Content-Type.
    pub(crate) content_type: &'static str,
    /// Whether its name changes with its content (cached forever).
    pub(crate) immutable: bool,
    /// The file.
    pub(crate) body: &'static [u8],
    /// Its gzip copy, when the build made one.
    pub(crate) gzip: Option<&'static [u8]>,
    /// Its brotli copy, when the build made one.
    pub(crate) brotli: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The Content-Security-Policy of every response. Scripts only from this server (and
/// WebAssembly compilation); style attributes allowed (KaTeX positions its glyphs with them),
/// style sheets only from this server; frames only for the page's own blobs (the citation
/// viewer shows an original PDF from one); no plugins, no being framed, no foreign
/// connections.
pub(crate) const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self'; \
     connect-src 'self'; frame-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Headers added to every response, API included.
pub(crate) fn security_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        ),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
        ),
    ]
}

/// Shown at `/` when the binary was built without the web UI.
const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Enclave</title></head>\
<body><h1>Enclave</h1><p>The web UI is not part of this build. Build it with <code>scripts/build-web.sh</code>, \
then build the server again (<code>scripts/run.sh</code> does both). The API is available under <code>/api/v1</code>.</p></body></html>";

/// Whether the binary carries the web UI.
pub(crate) fn is_built() -> bool {
    !ASSETS.is_empty()
}

/// The embedded file at `path`.
fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Serves GET requests outside the API: an embedded file, or `index.html` for the app's own
/// routes (a browser asking for a page); anything else is the API's JSON 404.
pub(crate) async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let api = path.starts_with("/api/") || path.starts_with("/v1/");
    if api || !(method == Method::GET || method == Method::HEAD) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            enclave_protocol::ErrorCode::NotFound,
            "no such endpoint",
        )
        .into_response();
    }
    if let Some(asset) = find(path) {
        return serve(asset, &headers);
    }
    let wants_page = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let has_extension = path.rsplit('/').next().is_some_and(|last| last.contains('.'));
    if path == "/" || (wants_page && !has_extension) {
        return match find("/index.html") {
            Some(index) => serve(index, &headers),
            None => (
                StatusCode::OK,
                [(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-cache")],
                NOT_BUILT,
            )
                .into_response(),
        };
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        enclave_protocol::ErrorCode::NotFound,
        "no such file",
    )
    .into_response()
}

/// The response for `asset`: the smallest encoding the client accepts.
fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let accepted = headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let accepts = |name: &str| {
        accepted
            .split(',')
            .map(|part| part.trim())
            .any(|part| part == name || part.starts_with(&format!("{name};")) && !part.ends_with("q=0"))
    };
    let (body, encoding) = match (asset.brotli, asset.gzip) {
        (Some(br), _) if accepts("br") => (br, Some("br")),
        (_, Some(gz)) if accepts("gzip") => (gz, Some("gzip")),
        _ => (asset.body, None),
    };
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(encoding) = encoding {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset() -> Asset {
        Asset {
            path: "/app.0123abcd.js",
            content_type: "text/javascript; charset=utf-8",
            immutable: true,
            body: b"plain",
            gzip: Some(b"gz"),
            brotli: Some(b"br"),
        }
    }

    fn encoding(accept: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        let asset = Box::leak(Box::new(asset()));
        let response = serve(asset, &headers);
        response
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn the_best_accepted_encoding_is_served() {
        assert_eq!(encoding("gzip, deflate, br").as_deref(), Some("br"));
        assert_eq!(encoding("gzip").as_deref(), Some("gzip"));
        assert_eq!(encoding("br;q=0, gzip").as_deref(), Some("gzip"));
        assert_eq!(encoding("identity"), None);
    }
}
