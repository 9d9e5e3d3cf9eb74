//! The connection to one remote API: its base URL, credentials, HTTP client and how long a
//! streamed answer may stay silent. Shared by the OpenAI-compatible and Gemini providers.

use std::time::Duration;

use super::sse;

/// How the API key travels.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Bearer <key>` (OpenAI and compatible servers).
    Bearer(String),
    /// A header of its own (Gemini's `x-goog-api-key`).
    Header(&'static str, String),
}

/// One remote API.
#[derive(Clone)]
pub struct Endpoint {
    /// The API root, without a trailing slash.
    base_url: String,
    /// Sent with every request when set.
    credential: Option<Credential>,
    /// The shared HTTP client (connection pool, timeouts).
    http: reqwest::Client,
    /// How long a streamed answer may stay silent before it is treated as lost.
    idle_timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &self.credential.as_ref().map(|_| "<redacted>"))
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint rooted at `base_url`; an empty key counts as none.
    pub fn new(base_url: impl Into<String>, credential: Option<Credential>, http: reqwest::Client) -> Self {
        let credential = credential.filter(|c| match c {
            Credential::Bearer(key) | Credential::Header(_, key) => !key.trim().is_empty(),
        });
        Endpoint {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            credential,
            http,
            idle_timeout: sse::DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// The API root, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How long a streamed answer may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Changes how long a streamed answer may stay silent.
    pub fn set_idle_timeout(&mut self, idle_timeout: Duration) {
        self.idle_timeout = idle_timeout;
    }

    /// A POST to `{base}/{path}` with the credentials attached.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(format!("{}/{path}", self.base_url));
        match &self.credential {
            Some(Credential::Bearer(key)) => request.bearer_auth(key),
            Some(Credential::Header(name, key)) => request.header(*name, key),
            None => request,
        }
    }
}
