//! The local provider: chat completions from the in-process engine.

use super::{ChatEvent, ChatProvider, ChatRequest, ChatStream, FinishReason, ProviderError, Usage};
use crate::engine::{EngineError, GenerateEvent, GenerateRequest, LocalEngine, StopReason, TemplateMessage};

/// Serves chat completions from a [`LocalEngine`].
pub struct LocalProvider {
    /// The loaded model.
    engine: LocalEngine,
}

impl LocalProvider {
    /// A provider over `engine`.
    pub fn new(engine: LocalEngine) -> Self {
        Self { engine }
    }

    /// The engine behind this provider.
    pub fn engine(&self) -> &LocalEngine {
        &self.engine
    }
}

/// Renders and encodes `request` for `engine`, and builds the engine request for it. Images
/// are decoded and prepared here (CPU work: the caller runs this off the async threads when
/// there are images); each message's images go before its text, each as the model's image
/// marker.
fn prepare(engine: &LocalEngine, request: &ChatRequest) -> Result<GenerateRequest, ProviderError> {
    let marker = match (request.has_images(), engine.image_marker()) {
        (false, _) => "",
        (true, Some(marker)) => marker,
        (true, None) => {
            // The registry sends images only to models that can see; this is the last guard.
            return Err(ProviderError::Unsupported(format!(
                "images: the local model {} reads text only",
                request.model
            )));
        }
    };
    let messages: Vec<TemplateMessage> = request
        .messages
        .iter()
        .map(|m| {
            let content = if m.images.is_empty() {
                m.content.clone()
            } else {
                format!("{}{}", marker.repeat(m.images.len()), m.content)
            };
            TemplateMessage::new(m.role.as_str(), content)
        })
        .collect();
    let text = engine.render_chat(&messages, true).map_err(|e| match e {
        // Templates refuse some conversations (raise_exception): the request's fault.
        EngineError::Template(message) => ProviderError::Rejected(message),
        other => ProviderError::Other(other.to_string()),
    })?;
    let prompt_tokens = engine.encode(&text).map_err(|e| ProviderError::Other(e.to_string()))?;
    let (prompt_tokens, images) = if request.has_images() {
        let prepared = request
            .messages
            .iter()
            .flat_map(|m| &m.images)
            .map(|image| engine.prepare_image(&image.png).map(std::sync::Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(provider_error)?;
        engine.place_images(&prompt_tokens, prepared).map_err(provider_error)?
    } else {
        (prompt_tokens, Vec::new())
    };
    // The engine checks the parameters and that the prompt leaves room for an answer, and
    // ends the answer where the context window does.
    Ok(GenerateRequest {
        images,
        prompt_tokens,
        sampling: request.params.clone(),
        fairness_key: request.user.clone().unwrap_or_default(),
    })
}

/// What an engine refusal means to a caller: a full queue is `Overloaded`, a bad request is
/// `Rejected`, anything else leaves the model unavailable.
pub(crate) fn provider_error(error: EngineError) -> ProviderError {
    match error {
        EngineError::Overloaded => ProviderError::Overloaded,
        EngineError::PromptTooLong { .. } | EngineError::InvalidRequest(_) => {
            ProviderError::Rejected(error.to_string())
        }
        other => ProviderError::Unavailable(other.to_string()),
    }
}

/// The chat event for an engine event.
fn chat_event(event: GenerateEvent) -> Result<ChatEvent, ProviderError> {
    match event {
        GenerateEvent::Text(text) => Ok(ChatEvent::Token(text)),
        GenerateEvent::Finished {
            reason,
            prompt_tokens,
            completion_tokens,
        } => Ok(ChatEvent::Done {
            finish_reason: match reason {
                StopReason::EndOfSequence | StopReason::StopString => FinishReason::Stop,
                StopReason::Length => FinishReason::Length,
                StopReason::Cancelled => FinishReason::Stopped,
            },
            usage: Usage {
                prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
                completion_tokens: u32::try_from(completion_tokens).unwrap_or(u32::MAX),
            },
        }),
        GenerateEvent::Failed(message) => Err(ProviderError::Other(message)),
    }
}

#[async_trait::async_trait]
impl ChatProvider for LocalProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, ProviderError> {
        let generate = if request.has_images() {
            // Decoding and resizing images is CPU work.
            let engine = self.engine.clone();
            tokio::task::spawn_blocking(move || prepare(&engine, &request))
                .await
                .map_err(|e| ProviderError::Other(format!("preparing the images failed: {e}")))??
        } else {
            prepare(&self.engine, &request)?
        };
        let events = self.engine.submit(generate).map_err(provider_error)?;
        // The stream owns the receiver: dropping the stream cancels the generation. It ends
        // right after the final event; a runner that vanished without one is an error.
        let stream = futures::stream::unfold(Some(events), |events| async move {
            let mut events = events?;
            match events.recv().await {
                Some(event) => {
                    let last = !matches!(event, GenerateEvent::Text(_));
                    Some((chat_event(event), (!last).then_some(events)))
                }
                None => Some((
                    Err(ProviderError::Other(
                        "the engine stopped before finishing the answer".into(),
                    )),
                    None,
                )),
            }
        });
        Ok(Box::pin(stream))
    }

    async fn embed(&self, model: &str, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, ProviderError> {
        let _ = inputs;
        Err(ProviderError::Unsupported(format!(
            "{model} is a local chat model; it does not compute embeddings"
        )))
    }

    fn count_tokens(&self, model: &str, text: &str) -> usize {
        let _ = model;
        self.engine.count_tokens(text)
    }

    fn count_image_tokens(&self, model: &str, width: u32, height: u32) -> usize {
        // The image's own tokens and the two that frame it.
        self.engine.image_tokens(width, height).map_or_else(
            || super::default_image_tokens(model, width, height),
            |tokens| tokens + 2,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::StreamExt;

    use super::*;
    use crate::engine::{load, tiny, LoadProgress, LocalModelConfig};
    use crate::providers::{ChatMessage, GenerationParams, Role};

    fn provider(queue_capacity: usize) -> (tempfile::TempDir, LocalProvider) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        tiny::write_tiny_llama(&path, 3).unwrap();
        let mut config = LocalModelConfig::from_path("tiny", &path);
        config.scheduler.queue_capacity = queue_capacity;
        // One at a time, so that the second request waits and the third finds the queue full.
        config.scheduler.max_running = 1;
        let engine = load(&config, &LoadProgress::new()).unwrap();
        (dir, LocalProvider::new(engine))
    }

    fn request(text: &str, max_tokens: Option<u32>) -> ChatRequest {
        ChatRequest {
            model: "tiny".into(),
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: "Be brief.".into(),
                    images: Vec::new(),
                },
                ChatMessage {
                    role: Role::User,
                    content: text.into(),
                    images: Vec::new(),
                },
            ],
            params: GenerationParams {
                max_tokens,
                ..GenerationParams::default()
            },
            user: None,
        }
    }

    async fn drain(mut stream: ChatStream) -> (String, Vec<Result<ChatEvent, ProviderError>>) {
        let mut text = String::new();
        let mut rest = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(ChatEvent::Token(piece)) => text.push_str(&piece),
                other => rest.push(other),
            }
        }
        (text, rest)
    }

    #[tokio::test]
    async fn streams_tokens_then_done_with_usage() {
        let (_dir, provider) = provider(4);
        assert_eq!(provider.kind(), "local");
        let stream = provider.chat_stream(request("Hello", Some(8))).await.unwrap();
        let (text, rest) = drain(stream).await;
        assert!(!text.is_empty());
        let prompt = provider
            .engine()
            .encode(
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n\
                 <|im_start|>assistant\n",
            )
            .unwrap()
            .len() as u32;
        let rest: Vec<ChatEvent> = rest.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rest,
            vec![ChatEvent::Done {
                finish_reason: FinishReason::Length,
                usage: Usage {
                    prompt_tokens: prompt,
                    completion_tokens: 8
                },
            }]
        );
    }

    #[tokio::test]
    async fn too_long_prompts_are_rejected() {
        let (_dir, provider) = provider(4);
        let long = "word ".repeat(3000);
        let error = provider.chat_stream(request(&long, None)).await.err().unwrap();
        assert!(
            matches!(error, ProviderError::Rejected(ref m) if m.contains("context")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_overloaded_and_dropping_the_stream_cancels() {
        let (_dir, provider) = provider(1);
        let mut running = provider.chat_stream(request("Go", Some(2000))).await.unwrap();
        assert!(running.next().await.is_some());
        let queued = provider.chat_stream(request("Go", Some(2000))).await.unwrap();
        let error = provider.chat_stream(request("Go", Some(2000))).await.err().unwrap();
        assert!(matches!(error, ProviderError::Overloaded));
        assert!(error.should_fall_back());
        drop(running);
        drop(queued);
        let deadline = Instant::now() + Duration::from_secs(30);
        while provider.engine().stats().requests_cancelled < 2 {
            assert!(Instant::now() < deadline, "{:?}", provider.engine().stats());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn embeddings_are_unsupported_and_tokens_are_counted() {
        let (_dir, provider) = provider(4);
        let error = provider.embed("tiny", vec!["x".into()]).await.unwrap_err();
        assert!(matches!(error, ProviderError::Unsupported(_)));
        assert_eq!(provider.count_tokens("tiny", "<|im_start|>12345"), 6);
    }
}
