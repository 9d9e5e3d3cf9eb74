//! One answer being generated: forwards the provider's stream to the client, watches for stop,
//! disconnect and shutdown, and stores the answer however it ends.

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{title, ChatService, StreamEvent, Turn};
use crate::audit::AuditEvent;
use crate::providers::registry::RegistryError;
use crate::providers::{ChatEvent, FinishReason, Usage};
use crate::store::{MessageRecord, MessageRole, MessageStatus};
use enclave_protocol::{AuditAction, ErrorCode};

/// How the stream loop ended.
enum Ending {
    Finished(FinishReason, Usage),
    /// Stop button or client gone.
    Stopped,
    ShuttingDown,
    Failed(StreamEvent),
}

/// Runs the turn to its end. Every path stores the answer before the final event is sent, so
/// a client that saw `done` can read the stored message at once.
pub(super) async fn run(service: &ChatService, turn: Turn, cancel: CancellationToken, tx: mpsc::Sender<StreamEvent>) {
    let inner = &service.inner;
    let started = std::time::Instant::now();
    let mut text = String::new();
    let mut served_by = turn.model.clone();
    // The sources first, most relevant first: the client shows them while the answer streams.
    for citation in &turn.citations {
        if tx.send(StreamEvent::Citation(citation.clone())).await.is_err() {
            break;
        }
    }
    let ending = match inner.registry.chat_stream(&turn.model, turn.request.clone()).await {
        Err(e) => Ending::Failed(StreamEvent::from(e)),
        Ok((mut stream, model)) => {
            served_by = model;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => {
                        break if inner.shutdown.is_cancelled() { Ending::ShuttingDown } else { Ending::Stopped };
                    }
                    _ = tx.closed() => break Ending::Stopped,
                    event = stream.next() => match event {
                        Some(Ok(ChatEvent::Token(piece))) => {
                            if text.is_empty() {
                                metrics::histogram!("enclave_chat_time_to_first_token_seconds", "model" => served_by.clone())
                                    .record(started.elapsed().as_secs_f64());
                            }
                            text.push_str(&piece);
                            if tx.send(StreamEvent::Token(piece)).await.is_err() {
                                break Ending::Stopped;
                            }
                        }
                        Some(Ok(ChatEvent::Done { finish_reason, usage })) => break Ending::Finished(finish_reason, usage),
                        Some(Err(e)) => break Ending::Failed(StreamEvent::from(RegistryError::Provider(e))),
                        None => break Ending::Failed(StreamEvent::Error {
                            code: ErrorCode::ProviderError,
                            message: "the model's stream ended without finishing".into(),
                        }),
                    }
                }
            }
            // Dropping the stream here cancels the provider's work (local or remote).
        }
    };

    let estimated = || Usage {
        prompt_tokens: turn.prompt_tokens as u32,
        completion_tokens: inner.registry.count_tokens(&served_by, &text) as u32,
    };
    let (status, finish_reason, usage, error_code, final_event) = match ending {
        Ending::Finished(reason, usage) => {
            let usage = if usage == Usage::default() { estimated() } else { usage };
            (
                MessageStatus::Complete,
                reason,
                usage,
                None,
                StreamEvent::Done {
                    finish_reason: reason,
                    usage,
                },
            )
        }
        Ending::Stopped => {
            let usage = estimated();
            (
                MessageStatus::Stopped,
                FinishReason::Stopped,
                usage,
                None,
                StreamEvent::Done {
                    finish_reason: FinishReason::Stopped,
                    usage,
                },
            )
        }
        Ending::ShuttingDown => (
            MessageStatus::Stopped,
            FinishReason::Stopped,
            estimated(),
            Some(ErrorCode::ShuttingDown),
            StreamEvent::Error {
                code: ErrorCode::ShuttingDown,
                message: "the server is shutting down".into(),
            },
        ),
        Ending::Failed(event) => {
            let code = match &event {
                StreamEvent::Error { code, .. } => *code,
                _ => ErrorCode::ProviderError,
            };
            (
                MessageStatus::Error,
                FinishReason::Stopped,
                estimated(),
                Some(code),
                event,
            )
        }
    };

    let mut answer = MessageRecord::new(turn.conversation.id, Some(turn.parent_id), MessageRole::Assistant, text);
    answer.id = turn.assistant_id;
    answer.status = status;
    answer.model = Some(served_by.clone());
    answer.usage = Some(usage);
    answer.error_code = error_code;
    answer.finish_reason = Some(finish_reason);
    answer.citations = turn.citations.clone();
    let stored = inner.store.append_message(turn.owner, &answer);
    let mut event = AuditEvent::new(AuditAction::ChatAnswer)
        .by(turn.owner)
        .on(format!(
            "conversation/{}/message/{}",
            turn.conversation.id, turn.assistant_id
        ))
        .from_client(&turn.client)
        .with(serde_json::json!({
            "model": served_by,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "status": status,
            "documents": turn.citations.len(),
        }));
    if let Some(code) = error_code {
        event = event.failed(code);
    }
    inner.audit.record(event);
    let status_label = match status {
        MessageStatus::Complete => "complete",
        MessageStatus::Stopped => "stopped",
        MessageStatus::Error => "error",
    };
    metrics::counter!("enclave_chat_answers_total", "model" => served_by.clone(), "status" => status_label)
        .increment(1);
    metrics::counter!("enclave_chat_completion_tokens_total", "model" => served_by.clone())
        .increment(u64::from(usage.completion_tokens));
    metrics::histogram!("enclave_chat_answer_seconds", "model" => served_by.clone())
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        conversation = %turn.conversation.id,
        model = %served_by,
        status = ?status,
        completion_tokens = usage.completion_tokens,
        seconds = started.elapsed().as_secs_f32(),
        "answer finished"
    );
    let final_event = match stored {
        Ok(()) => final_event,
        // The conversation was deleted while the answer streamed, or the disk failed.
        Err(e) => {
            tracing::error!(conversation = %turn.conversation.id, error = %e, "could not store the answer");
            StreamEvent::Error {
                code: ErrorCode::StorageError,
                message: "the answer could not be saved".into(),
            }
        }
    };
    let _ = tx.send(final_event).await;

    if turn.first_exchange && status == MessageStatus::Complete && !turn.conversation.title_set_by_user {
        if let Some(first) = turn.first_user_text {
            // Its own task: the conversation is free for the next message meanwhile.
            let service = service.clone();
            let (owner, id) = (turn.owner, turn.conversation.id);
            service.inner.tasks.clone().spawn(async move {
                title::generate(&service, owner, id, &served_by, &first, &answer.content).await;
            });
        }
    }
}
