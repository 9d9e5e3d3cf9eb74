//! Shared plumbing of the remote providers: sending a request and mapping HTTP failures to
//! [`ProviderError`], and turning a streamed response into the `data` payloads of its
//! server-sent events.
//!
//! Nothing here logs request or response bodies: prompts, answers and keys never reach the
//! logs, only status codes and timings.

use std::time::{Duration, Instant};

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::{ChatRequest, ProviderError, Usage};
use crate::generation::estimate_tokens;

/// How long a streamed answer may stay silent before it is treated as lost.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest provider error message we keep (the rest is cut off).
const MAX_MESSAGE_CHARS: usize = 500;

/// A non-success HTTP answer, read in full, for a provider to classify.
#[derive(Debug, Clone)]
pub struct HttpFailure {
    /// The HTTP status.
    pub status: StatusCode,
    /// Seconds from the `Retry-After` header, when it held a number of seconds.
    pub retry_after: Option<u64>,
    /// The response body as text (possibly empty).
    pub body: String,
}

/// Sends `request` and returns the response when its status is a success; a failed send maps
/// to [`ProviderError::Unavailable`] (or `Other` for a request that could not be built), a
/// non-success status goes through `classify`.
pub async fn send(
    provider: &'static str,
    request: RequestBuilder,
    classify: impl FnOnce(HttpFailure) -> ProviderError,
) -> Result<Response, ProviderError> {
    let started = Instant::now();
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            let error = map_send_error(e);
            tracing::warn!(
                provider,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "provider request failed before an answer"
            );
            return Err(error);
        }
    };
    let status = response.status();
    tracing::debug!(
        provider,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "provider answered"
    );
    if status.is_success() {
        return Ok(response);
    }
    tracing::warn!(provider, status = status.as_u16(), "provider refused the request");
    let retry_after = retry_after_seconds(response.headers());
    // A body that cannot be read still leaves the status to classify by.
    let body = response.text().await.unwrap_or_default();
    Err(classify(HttpFailure {
        status,
        retry_after,
        body,
    }))
}

/// Reads a successful answer's JSON body: a body that is not the expected JSON is
/// [`ProviderError::Other`], a connection lost while reading it [`ProviderError::Unavailable`].
pub async fn read_json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, ProviderError> {
    response.json().await.map_err(|e| {
        if e.is_decode() {
            ProviderError::Other(format!("malformed answer: {}", e.without_url()))
        } else {
            map_send_error(e)
        }
    })
}

/// Maps an error of `reqwest` (connection refused, timeout, broken body) to a provider error.
/// The URL is left out of the message.
pub fn map_send_error(error: reqwest::Error) -> ProviderError {
    let error = error.without_url();
    if error.is_builder() {
        ProviderError::Other(format!("invalid request: {error}"))
    } else if error.is_timeout() {
        ProviderError::Unavailable(format!("timed out: {error}"))
    } else if error.is_connect() {
        ProviderError::Unavailable(format!("cannot connect: {}", error_chain(&error)))
    } else {
        ProviderError::Unavailable(error_chain(&error))
    }
}

/// The error and its sources, joined with `: ` (reqwest's own message says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// Reads `Retry-After` as whole seconds (a fractional number is rounded up); an HTTP date or a
/// missing header gives `None`.
pub fn retry_after_seconds(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let seconds = value.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil() as u64)
}

/// The default mapping of an HTTP status to a provider error: 429 is `RateLimited`, 401 and 403
/// `Unauthorized`, other 4xx `Rejected`, 5xx `Unavailable`, anything else `Other`.
pub fn error_for_status(status: StatusCode, retry_after: Option<u64>, message: String) -> ProviderError {
    let message = if message.trim().is_empty() {
        status.to_string()
    } else {
        truncate(message.trim())
    };
    match status.as_u16() {
        429 => ProviderError::RateLimited { retry_after },
        401 | 403 => ProviderError::Unauthorized(message),
        400..=499 => ProviderError::Rejected(message),
        500..=599 => ProviderError::Unavailable(format!("HTTP {}: {message}", status.as_u16())),
        _ => ProviderError::Other(format!("unexpected HTTP {}: {message}", status.as_u16())),
    }
}

/// Cuts a provider's message to a sane length, on a character boundary.
pub fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_string(),
    }
}

/// Estimated token counts of a prompt and its answer, for providers that do not report them.
pub fn estimate_usage(request: &ChatRequest, output: &str) -> Usage {
    let prompt: usize = request.messages.iter().map(|m| estimate_tokens(&m.content)).sum();
    let completion = if output.is_empty() { 0 } else { estimate_tokens(output) };
    Usage {
        prompt_tokens: u32::try_from(prompt).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(completion).unwrap_or(u32::MAX),
    }
}

/// Turns a streamed response into the `data` payloads of its server-sent events, in order.
/// Comments and events without data are skipped. A transport failure, or no event at all for
/// `idle_timeout`, ends the stream with [`ProviderError::Unavailable`]; bytes that are not a
/// valid event stream end it with [`ProviderError::Other`]. The stream ends where the body
/// ends; telling a complete answer from a cut one is the caller's job.
pub fn data_stream(
    response: Response,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<String, ProviderError>> + Send + 'static {
    let events = response.bytes_stream().eventsource();
    futures::stream::unfold(Some(Box::pin(events)), move |events| async move {
        let mut events = events?;
        loop {
            let next = match tokio::time::timeout(idle_timeout, events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let error = ProviderError::Unavailable(format!(
                        "no data from the provider for {} s",
                        idle_timeout.as_secs_f32()
                    ));
                    return Some((Err(error), None));
                }
            };
            match next {
                None => return None,
                Some(Ok(event)) if event.data.is_empty() => continue,
                Some(Ok(event)) => return Some((Ok(event.data), Some(events))),
                Some(Err(EventStreamError::Transport(e))) => {
                    let error = match map_send_error(e) {
                        ProviderError::Unavailable(m) => ProviderError::Unavailable(format!("connection lost: {m}")),
                        other => other,
                    };
                    return Some((Err(error), None));
                }
                Some(Err(e)) => {
                    let error = ProviderError::Other(format!("malformed event stream: {e}"));
                    return Some((Err(error), None));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_seconds(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("12"));
        assert_eq!(retry_after_seconds(&headers), Some(12));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1.2"));
        assert_eq!(retry_after_seconds(&headers), Some(2));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after_seconds(&headers), None);
    }

    #[test]
    fn statuses_map_to_errors() {
        let e = |code: u16| error_for_status(StatusCode::from_u16(code).unwrap(), Some(3), "m".into());
        assert!(matches!(e(429), ProviderError::RateLimited { retry_after: Some(3) }));
        assert!(matches!(e(401), ProviderError::Unauthorized(_)));
        assert!(matches!(e(403), ProviderError::Unauthorized(_)));
        assert!(matches!(e(400), ProviderError::Rejected(m) if m == "m"));
        assert!(matches!(e(404), ProviderError::Rejected(_)));
        assert!(matches!(e(500), ProviderError::Unavailable(_)));
        assert!(matches!(e(503), ProviderError::Unavailable(_)));
        assert!(matches!(e(302), ProviderError::Other(_)));
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(2 * MAX_MESSAGE_CHARS);
        assert_eq!(truncate(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(truncate("short"), "short");
    }
}
