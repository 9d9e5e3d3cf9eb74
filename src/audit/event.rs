//! One event as a room records it: a builder over the fields of an entry.

use enclave_protocol::{AuditAction, ErrorCode};
use uuid::Uuid;

use crate::store::{NewAuditEntry, SessionClient};

/// Longest `User-Agent` kept (a client could send kilobytes).
const MAX_USER_AGENT: usize = 256;

/// What happened; `ok` unless [`AuditEvent::failed`] says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub(super) action: AuditAction,
    outcome: String,
    actor: Option<Uuid>,
    subject: Option<Uuid>,
    resource: Option<String>,
    client: Option<SessionClient>,
    details: serde_json::Value,
}

impl AuditEvent {
    /// An event of `action` that went well.
    pub fn new(action: AuditAction) -> AuditEvent {
        AuditEvent {
            action,
            outcome: "ok".into(),
            actor: None,
            subject: None,
            resource: None,
            client: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    /// The account that acted.
    pub fn by(mut self, actor: Uuid) -> AuditEvent {
        self.actor = Some(actor);
        self
    }

    /// The account it was about (an administrator's target).
    pub fn about(mut self, subject: Uuid) -> AuditEvent {
        self.subject = Some(subject);
        self
    }

    /// What it was about (`document/<id>`, ...).
    pub fn on(mut self, resource: impl Into<String>) -> AuditEvent {
        self.resource = Some(resource.into());
        self
    }

    /// The client's address and `User-Agent`.
    pub fn from_client(mut self, client: &SessionClient) -> AuditEvent {
        self.client = Some(client.clone());
        self
    }

    /// Refused or failed, with the code the request was answered with.
    pub fn failed(mut self, code: ErrorCode) -> AuditEvent {
        self.outcome = code.as_str().to_owned();
        self
    }

    /// More about it (a JSON object; never message text or secrets).
    pub fn with(mut self, details: serde_json::Value) -> AuditEvent {
        self.details = details;
        self
    }

    /// What happened.
    pub fn action(&self) -> AuditAction {
        self.action
    }

    /// Who or where it came from, for telling repeats apart: the client's address, else the
    /// actor, else nothing.
    pub fn client_key(&self) -> String {
        match (self.client.as_ref().and_then(|c| c.ip), self.actor) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(actor)) => actor.to_string(),
            (None, None) => String::new(),
        }
    }

    pub(super) fn into_entry(self) -> NewAuditEntry {
        let (ip, user_agent) = match self.client {
            Some(client) => (
                client.ip.map(|ip| ip.to_string()),
                client.user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT).collect()),
            ),
            None => (None, None),
        };
        NewAuditEntry {
            at: crate::store::now_ms(),
            action: self.action.as_str().to_owned(),
            outcome: self.outcome,
            actor: self.actor,
            subject: self.subject,
            resource: self.resource,
            ip,
            user_agent,
            details: self.details,
        }
    }
}
