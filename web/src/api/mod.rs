//! The server's API from the browser: JSON requests with the access token, one transparent
//! refresh on an expired token, and the answer stream (SSE read from a fetch body).

mod documents;
mod images;
mod stream;

use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestCredentials, RequestInit, Response};

pub use documents::{original_url, upload_file, UploadProgress};
/// The server's JSON shapes: the wire types of `crates/protocol`, the same ones the server
/// writes.
pub use enclave_protocol::*;
pub use images::{discard_image, image_url, remember_image_url, upload_image};
pub use stream::{stream, AnswerEvent, StreamControl};

/// An API failure as the UI shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status (0 when the server could not be reached).
    pub status: u16,
    /// The server's stable code ([`ErrorCode::Network`] for no connection).
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    /// The server could not be reached.
    pub fn network() -> Self {
        Self {
            status: 0,
            code: ErrorCode::Network,
            message: "Cannot reach the server. Check your connection and try again.".into(),
        }
    }

    /// The error of a non-2xx response: its JSON error body, or a generic one when the body is
    /// not ours (a proxy's page).
    pub(crate) fn from_body(status: u16, body: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(body) => Self {
                status,
                code: body.code,
                message: body.error,
            },
            Err(_) => Self {
                status,
                code: ErrorCode::Unknown,
                message: format!("The server answered {status}."),
            },
        }
    }

    /// An answer that came back but could not be read.
    pub(crate) fn bad_response(status: u16, detail: impl std::fmt::Display) -> Self {
        Self {
            status,
            code: ErrorCode::BadResponse,
            message: format!("The server's answer was not understood: {detail}"),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What to do when the session has ended, given the reason.
type SignedOutCallback = Rc<dyn Fn(&str)>;

thread_local! {
    /// The access token, in memory only (a reload gets a new one through the cookie).
    static ACCESS_TOKEN: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Called (with the reason, for the sign-in page) when the session has ended.
    static ON_SIGNED_OUT: RefCell<Option<SignedOutCallback>> = const { RefCell::new(None) };
}

/// Sets (or clears) the access token sent with every request.
pub fn set_access_token(token: Option<String>) {
    ACCESS_TOKEN.with(|t| *t.borrow_mut() = token);
}

/// Registers what to do when the session has ended (show the sign-in page with the reason).
pub fn on_signed_out(callback: impl Fn(&str) + 'static) {
    ON_SIGNED_OUT.with(|c| *c.borrow_mut() = Some(Rc::new(callback)));
}

/// Why a session ended, for the sign-in page.
const SESSION_ENDED: &str = "Your session has ended. Please sign in again.";
const ACCOUNT_DISABLED: &str = "Your account has been disabled. Ask an administrator.";

fn signed_out(reason: &str) {
    set_access_token(None);
    remember_session(false);
    if let Some(callback) = ON_SIGNED_OUT.with(|c| c.borrow().clone()) {
        callback(reason);
    }
}

/// Builds a request; `body` is sent as JSON.
pub(crate) fn build_request(
    method: &str,
    path: &str,
    body: Option<&Value>,
    signal: Option<&web_sys::AbortSignal>,
) -> Result<Request, ApiError> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_credentials(RequestCredentials::SameOrigin);
    let headers = Headers::new().map_err(|_| ApiError::network())?;
    let _ = headers.set("Accept", "application/json, text/event-stream");
    if let Some(token) = ACCESS_TOKEN.with(|t| t.borrow().clone()) {
        let _ = headers.set("Authorization", &format!("Bearer {token}"));
    }
    if let Some(body) = body {
        let _ = headers.set("Content-Type", "application/json");
        init.set_body(&JsValue::from_str(&body.to_string()));
    }
    init.set_headers(&headers);
    if let Some(signal) = signal {
        init.set_signal(Some(signal));
    }
    Request::new_with_str_and_init(path, &init).map_err(|_| ApiError::network())
}

/// Sends `request`; a network failure is [`ApiError::network`].
pub(crate) async fn fetch(request: &Request) -> Result<Response, ApiError> {
    let window = web_sys::window().ok_or_else(ApiError::network)?;
    let response = JsFuture::from(window.fetch_with_request(request))
        .await
        .map_err(|_| ApiError::network())?;
    response.dyn_into::<Response>().map_err(|_| ApiError::network())
}

/// The body of `response` as text.
pub(crate) async fn text(response: &Response) -> Result<String, ApiError> {
    let promise = response.text().map_err(|_| ApiError::network())?;
    let value = JsFuture::from(promise).await.map_err(|_| ApiError::network())?;
    Ok(value.as_string().unwrap_or_default())
}

/// Whether a 401 means "get a new access token" (not "wrong password").
fn token_problem(error: &ApiError) -> bool {
    error.status == 401 && error.code.is_token_problem()
}

/// Sends a request and returns its 2xx response; refreshes the access token once on 401.
pub(crate) async fn authorized(method: &str, path: &str, body: Option<&Value>) -> Result<Response, ApiError> {
    let mut refreshed = false;
    loop {
        let request = build_request(method, path, body, None)?;
        let response = fetch(&request).await?;
        let status = response.status();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let error = ApiError::from_body(status, &text(&response).await?);
        if !retry_after_refresh(&error, path, &mut refreshed).await {
            return Err(error);
        }
    }
}

/// After `error`: whether a new access token was obtained and the request should be sent
/// again (once: `refreshed` remembers). A session that cannot be refreshed is ended.
/// A disabled account's open page is signed out at its next request.
pub(crate) async fn retry_after_refresh(error: &ApiError, path: &str, refreshed: &mut bool) -> bool {
    if error.code == ErrorCode::AccountDisabled {
        signed_out(ACCOUNT_DISABLED);
        return false;
    }
    if !token_problem(error) || *refreshed || path.starts_with("/api/v1/auth/") {
        return false;
    }
    *refreshed = true;
    match refresh().await {
        Ok(_) => return true,
        Err(e) if e.code == ErrorCode::AccountDisabled => signed_out(ACCOUNT_DISABLED),
        Err(_) => signed_out(SESSION_ENDED),
    }
    false
}

/// Sends a request and returns the raw body.
async fn send(method: &str, path: &str, body: Option<&Value>) -> Result<String, ApiError> {
    let response = authorized(method, path, body).await?;
    text(&response).await
}

/// The access token, for requests not built by [`build_request`] (uploads).
pub(crate) fn access_token() -> Option<String> {
    ACCESS_TOKEN.with(|t| t.borrow().clone())
}

/// A JSON request whose answer is read as `T`.
pub async fn request<T: DeserializeOwned>(method: &str, path: &str, body: Option<&Value>) -> Result<T, ApiError> {
    let text = send(method, path, body).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::bad_response(200, e))
}

/// Downloads the answer of a GET (with the access token) and saves it as `filename`.
pub async fn download(path: &str, filename: &str) -> Result<(), ApiError> {
    let response = authorized("GET", path, None).await?;
    let promise = response.blob().map_err(|_| ApiError::network())?;
    let blob = JsFuture::from(promise).await.map_err(|_| ApiError::network())?;
    let blob: web_sys::Blob = blob.dyn_into().map_err(|_| ApiError::network())?;
    crate::interop::save_file(&blob, filename);
    Ok(())
}

/// A request whose answer body is not needed.
pub async fn request_empty(method: &str, path: &str, body: Option<&Value>) -> Result<(), ApiError> {
    send(method, path, body).await.map(|_| ())
}

/// What a sign-in brings besides the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondFactor {
    /// Nothing (the account may not need it).
    None,
    /// The authenticator app's current code.
    Code(String),
    /// One of the recovery codes.
    Recovery(String),
}

/// Signs in; the refresh token goes into the HttpOnly cookie. An account with 2FA answers
/// [`ErrorCode::TotpRequired`] until `second` brings its code.
pub async fn login(login: &str, password: &str, second: SecondFactor) -> Result<Tokens, ApiError> {
    let (totp_code, recovery_code) = match second {
        SecondFactor::None => (None, None),
        SecondFactor::Code(code) => (Some(code), None),
        SecondFactor::Recovery(code) => (None, Some(code)),
    };
    let body = LoginRequest {
        email: None,
        username: Some(login.to_owned()),
        password: password.to_owned(),
        cookie: true,
        totp_code,
        recovery_code,
    };
    let tokens: Tokens = request("POST", "/api/v1/auth/login", Some(&to_json(&body))).await?;
    remember_session(true);
    set_access_token(Some(tokens.access_token.clone()));
    Ok(tokens)
}

/// Gets a new access token through the refresh cookie.
pub async fn refresh() -> Result<Tokens, ApiError> {
    // Straight to fetch: `send` itself refreshes on a 401.
    let body = to_json(&RefreshRequest::default());
    let request = build_request("POST", "/api/v1/auth/refresh", Some(&body), None)?;
    let response = fetch(&request).await?;
    let status = response.status();
    let body = text(&response).await?;
    if !(200..300).contains(&status) {
        let error = ApiError::from_body(status, &body);
        if status == 401 {
            // The session is over (or never was): no need to ask on the next visit.
            remember_session(false);
        }
        return Err(error);
    }
    let tokens: Tokens = serde_json::from_str(&body).map_err(|e| ApiError::bad_response(status, e))?;
    set_access_token(Some(tokens.access_token.clone()));
    Ok(tokens)
}

/// Ends the session (and clears the cookie).
pub async fn logout() {
    let _ = request_empty(
        "POST",
        "/api/v1/auth/logout",
        Some(&to_json(&RefreshRequest::default())),
    )
    .await;
    set_access_token(None);
    remember_session(false);
}

/// Key of the flag that says whether this browser signed in (the refresh cookie itself is
/// HttpOnly, so the page cannot look for it).
const SESSION_FLAG: &str = "enclave.signed_in";

/// Remembers whether this browser holds a session.
pub fn remember_session(signed_in: bool) {
    if signed_in {
        crate::interop::store(SESSION_FLAG, "1");
    } else {
        crate::interop::forget(SESSION_FLAG);
    }
}

/// Whether this browser may hold a session worth refreshing: false on a first visit and after
/// signing out, so that the page does not ask the server for a session that cannot exist.
pub fn may_have_session() -> bool {
    crate::interop::stored(SESSION_FLAG).is_some()
}

/// A request body as JSON (the wire types always serialize).
pub fn to_json(body: &impl serde::Serialize) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    js_sys::encode_uri_component(value).into()
}
