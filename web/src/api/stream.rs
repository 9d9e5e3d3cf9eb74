//! The answer stream: a fetch POST whose body is `text/event-stream`, read chunk by chunk and
//! cut into `citation` / `token` / `done` / `error` events as they arrive (no EventSource: it cannot POST
//! nor send the bearer token).

use enclave_protocol::{Citation, DoneEvent, ErrorBody, TokenEvent};
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, ReadableStreamDefaultReader, TextDecoder};

use super::{build_request, fetch, refresh, text, ApiError};

/// One event of an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum AnswerEvent {
    /// A source the answer draws on (all come before the first token, most relevant first).
    Citation(Citation),
    /// More text.
    Token(String),
    /// The answer ended and is stored.
    Done(DoneEvent),
    /// The answer failed (what was written so far is stored).
    Error(ApiError),
}

/// Cancels a running stream (the server stops generating when the connection closes).
#[derive(Clone)]
pub struct StreamControl {
    /// Aborts the fetch.
    controller: AbortController,
}

impl StreamControl {
    /// A control for a new stream.
    pub fn new() -> Result<Self, ApiError> {
        Ok(Self {
            controller: AbortController::new().map_err(|_| ApiError::network())?,
        })
    }

    /// Aborts the stream.
    pub fn abort(&self) {
        self.controller.abort();
    }
}

/// Parses one SSE event block (`event:` and `data:` lines).
fn parse_event(block: &str) -> Option<AnswerEvent> {
    let mut name = "message";
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    match name {
        "token" => serde_json::from_str::<TokenEvent>(&data)
            .ok()
            .map(|t| AnswerEvent::Token(t.content)),
        "citation" => serde_json::from_str(&data).ok().map(AnswerEvent::Citation),
        "done" => serde_json::from_str(&data).ok().map(AnswerEvent::Done),
        "error" => serde_json::from_str::<ErrorBody>(&data).ok().map(|e| {
            AnswerEvent::Error(ApiError {
                status: 200,
                code: e.code,
                message: e.error,
            })
        }),
        _ => None,
    }
}

/// POSTs `body` to `path` and calls `on_event` for every event of the answer, in order, as
/// it arrives. Returns once the stream ends (or is aborted through `control`). An error
/// before the stream starts (a 4xx/5xx answer, no connection) is returned, not sent.
pub async fn stream(
    path: &str,
    body: &Value,
    control: &StreamControl,
    mut on_event: impl FnMut(AnswerEvent),
) -> Result<(), ApiError> {
    let signal = control.controller.signal();
    let mut refreshed = false;
    let response = loop {
        let request = build_request("POST", path, Some(body), Some(&signal))?;
        let response = fetch(&request).await?;
        let status = response.status();
        if (200..300).contains(&status) {
            break response;
        }
        let error = ApiError::from_body(status, &text(&response).await?);
        if status == 401 && !refreshed && refresh().await.is_ok() {
            refreshed = true;
            continue;
        }
        return Err(error);
    };
    let Some(body) = response.body() else {
        return Err(ApiError::network());
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let decoder = TextDecoder::new().map_err(|_| ApiError::network())?;
    let options = web_sys::TextDecodeOptions::new();
    options.set_stream(true);
    let mut buffer = String::new();
    loop {
        let chunk = match JsFuture::from(reader.read()).await {
            Ok(chunk) => chunk,
            // Aborted by the user, or the connection dropped.
            Err(_) => {
                if signal.aborted() {
                    return Ok(());
                }
                return Err(ApiError::network());
            }
        };
        let done = js_sys::Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let Ok(value) = js_sys::Reflect::get(&chunk, &"value".into()) else {
            break;
        };
        let bytes: js_sys::Uint8Array = value.unchecked_into();
        let text = decoder
            .decode_with_buffer_source_and_options(&bytes, &options)
            .map_err(|_| ApiError::network())?;
        buffer.push_str(&text.replace("\r\n", "\n"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(event) = parse_event(&block) {
                on_event(event);
            }
        }
    }
    if let Some(event) = parse_event(&buffer) {
        on_event(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use enclave_protocol::{ErrorCode, FinishReason, Usage};

    #[test]
    fn events_are_parsed() {
        assert_eq!(
            parse_event("event: token\ndata: {\"content\": \"Hi\", \"finish_reason\": null}\n\n"),
            Some(AnswerEvent::Token("Hi".into()))
        );
        assert_eq!(
            parse_event("event: done\ndata: {\"finish_reason\": \"length\", \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 4}}"),
            Some(AnswerEvent::Done(DoneEvent {
                finish_reason: FinishReason::Length,
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 4
                }
            }))
        );
        let error = parse_event("event: error\ndata: {\"error\": \"slow down\", \"code\": \"RATE_LIMITED\"}");
        assert!(matches!(error, Some(AnswerEvent::Error(e)) if e.code == ErrorCode::RateLimited));
        let citation = parse_event(concat!(
            "event: citation\ndata: {\"source\": \"a.pdf\", \"page\": 3, \"relevance\": 0.9, \"section\": 3, ",
            "\"document_id\": \"0190f7a2-0000-7000-8000-000000000001\", ",
            "\"chunk_id\": \"0190f7a2-0000-7000-8000-000000000002\", \"snippet\": \"text\"}"
        ));
        assert!(matches!(citation, Some(AnswerEvent::Citation(c)) if c.page == Some(3) && c.source == "a.pdf"));
        assert_eq!(parse_event(": comment"), None);
    }
}
