//! The model catalogue (models.toml): which models exist, their role and who serves them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// What a chat model can do besides text (`capabilities` in models.toml).
pub use enclave_protocol::ModelCapability;
/// What a model is used for (`role` in models.toml, as the API shows it).
pub use enclave_protocol::ModelRole;

/// The kinds of provider a catalogue can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible server (OpenRouter, vLLM, Ollama, llama.cpp server).
    Openai,
    /// Google Gemini's REST API.
    Gemini,
}

/// A remote provider's connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Wire format.
    pub kind: ProviderKind,
    /// Base URL (required for `openai`; Gemini's default is Google's endpoint).
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
}

/// One model of the catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The id clients use.
    pub id: String,
    /// Human-readable name.
    pub name: Option<String>,
    /// What it is for.
    pub role: ModelRole,
    /// `local`, or the name of a `[providers.NAME]` table.
    pub provider: String,
    /// The model's name at the remote provider (default: `id`).
    pub remote_name: Option<String>,
    /// Local file (GGUF), relative to models.toml; used when present.
    pub path: Option<PathBuf>,
    /// Hugging Face repository to download from when `path` is absent.
    pub hf_repo: Option<String>,
    /// File inside `hf_repo`.
    pub hf_file: Option<String>,
    /// Revision (branch, tag or commit) of `hf_repo`.
    pub hf_revision: Option<String>,
    /// Quantization, for display (`Q4_1`, `Q8_0`...).
    pub quantization: Option<String>,
    /// Context window in tokens (default: from the model file, or 8192 for remote models).
    pub context_length: Option<usize>,
    /// Chat template override (Jinja).
    pub chat_template: Option<String>,
    /// Model ids to try, in order, when this one is rate-limited or unavailable.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Chat models: what it can do besides text (`["vision"]`: it reads images).
    #[serde(default)]
    pub capabilities: Vec<ModelCapability>,
    /// Embedding models: the most tokens of one text (default: the model's own window; 512
    /// for nomic).
    pub max_tokens: Option<usize>,
    /// Embedding models: put before documents (nomic default `search_document: `).
    pub document_prefix: Option<String>,
    /// Embedding models: put before queries (nomic default `search_query: `).
    pub query_prefix: Option<String>,
    /// Embedding models: whether shortened vectors (`dimensions`) are meaningful (nomic: yes).
    pub matryoshka: Option<bool>,
}

impl ModelEntry {
    /// The name shown to people.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Whether it is a chat model that reads images.
    pub fn can_see(&self) -> bool {
        self.role == ModelRole::Chat && self.capabilities.contains(&ModelCapability::Vision)
    }
}

/// The parsed catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCatalogue {
    /// The chat model used when nothing else is named.
    pub default_chat: Option<String>,
    /// The embedding model documents are indexed with (default: the first embedding model).
    pub default_embed: Option<String>,
    /// The chat model that answers a message with images when the conversation's model
    /// cannot see (default: the first chat model with the `vision` capability).
    pub default_vision: Option<String>,
    /// The cross-encoder search results are reranked with (default: the first rerank
    /// model; none when the catalogue has none).
    pub default_rerank: Option<String>,
    /// Remote providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderEntry>,
    /// Models in display order.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

impl ModelCatalogue {
    /// Reads and checks a catalogue; relative model paths become relative to its folder.
    pub fn load(path: &Path) -> Result<ModelCatalogue, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read the model catalogue {}: {e}", path.display())))?;
        let mut catalogue: ModelCatalogue = toml::from_str(&text)
            .map_err(|e| ConfigError::new(format!("{} is not a valid model catalogue: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for model in &mut catalogue.models {
            if let Some(p) = &model.path {
                if p.is_relative() {
                    model.path = Some(base.join(p));
                }
            }
        }
        catalogue.validate()?;
        Ok(catalogue)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for model in &self.models {
            if !seen.insert(model.id.as_str()) {
                return Err(ConfigError::new(format!(
                    "models.toml: model id {:?} appears twice",
                    model.id
                )));
            }
            if model.provider == "local" {
                if model.path.is_none() && (model.hf_repo.is_none() || model.hf_file.is_none()) {
                    return Err(ConfigError::new(format!(
                        "models.toml: local model {:?} needs `path` or both `hf_repo` and `hf_file`",
                        model.id
                    )));
                }
            } else if !self.providers.contains_key(&model.provider) {
                return Err(ConfigError::new(format!(
                    "models.toml: model {:?} names provider {:?}, which has no [providers.{}] table",
                    model.id, model.provider, model.provider
                )));
            }
        }
        for model in &self.models {
            for fallback in &model.fallback {
                if !seen.contains(fallback.as_str()) || fallback == &model.id {
                    return Err(ConfigError::new(format!(
                        "models.toml: model {:?} falls back to {:?}, which is not another model of the catalogue",
                        model.id, fallback
                    )));
                }
            }
        }
        for (name, provider) in &self.providers {
            if provider.kind == ProviderKind::Openai && provider.base_url.is_none() {
                return Err(ConfigError::new(format!(
                    "models.toml: provider {name:?} (openai) needs base_url"
                )));
            }
        }
        if let Some(default) = &self.default_chat {
            self.check_chat_model(default)?;
        }
        self.check_default(
            "default_embed",
            self.default_embed.as_deref(),
            ModelRole::Embed,
            "an embedding",
        )?;
        self.check_default(
            "default_rerank",
            self.default_rerank.as_deref(),
            ModelRole::Rerank,
            "a rerank",
        )?;
        for model in &self.models {
            if !model.capabilities.is_empty() && model.role != ModelRole::Chat {
                return Err(ConfigError::new(format!(
                    "models.toml: model {:?} has capabilities, which only chat models take",
                    model.id
                )));
            }
        }
        if let Some(id) = &self.default_vision {
            match self.models.iter().find(|m| &m.id == id) {
                Some(m) if m.can_see() => {}
                Some(_) => {
                    return Err(ConfigError::new(format!(
                        "default_vision {id:?} is not a chat model with capabilities = [\"vision\"]"
                    )))
                }
                None => {
                    return Err(ConfigError::new(format!(
                        "default_vision {id:?} is not in the model catalogue"
                    )))
                }
            }
        }
        for model in &self.models {
            if model.role == ModelRole::Rerank && model.provider != "local" {
                return Err(ConfigError::new(format!(
                    "models.toml: rerank model {:?} must be local: cross-encoders run in-process (provider = \"local\")",
                    model.id
                )));
            }
        }
        Ok(())
    }

    /// Fails unless the default named by `key` (when set) is a model of `role` (`kind`, for
    /// the message) in the catalogue.
    fn check_default(&self, key: &str, id: Option<&str>, role: ModelRole, kind: &str) -> Result<(), ConfigError> {
        let Some(id) = id else { return Ok(()) };
        match self.models.iter().find(|m| m.id == id) {
            Some(m) if m.role == role => Ok(()),
            Some(_) => Err(ConfigError::new(format!("{key} {id:?} is not {kind} model"))),
            None => Err(ConfigError::new(format!("{key} {id:?} is not in the model catalogue"))),
        }
    }

    /// Fails unless `id` is a chat model of the catalogue.
    pub fn check_chat_model(&self, id: &str) -> Result<(), ConfigError> {
        match self.models.iter().find(|m| m.id == id) {
            Some(m) if m.role == ModelRole::Chat => Ok(()),
            Some(_) => Err(ConfigError::new(format!("model {id:?} is not a chat model"))),
            None => Err(ConfigError::new(format!(
                "default model {id:?} is not in the model catalogue"
            ))),
        }
    }

    /// The embedding model documents are indexed with: `default_embed`, else the first
    /// embedding model.
    pub fn default_embed_model(&self) -> Option<&str> {
        self.default_embed.as_deref().or_else(|| {
            self.models
                .iter()
                .find(|m| m.role == ModelRole::Embed)
                .map(|m| m.id.as_str())
        })
    }

    /// The cross-encoder search results are reranked with: `default_rerank`, else the first
    /// rerank model.
    pub fn default_rerank_model(&self) -> Option<&str> {
        self.default_rerank.as_deref().or_else(|| {
            self.models
                .iter()
                .find(|m| m.role == ModelRole::Rerank)
                .map(|m| m.id.as_str())
        })
    }

    /// The model that answers messages with images when the conversation's cannot see:
    /// `default_vision`, else the first chat model with the `vision` capability.
    pub fn default_vision_model(&self) -> Option<&str> {
        self.default_vision
            .as_deref()
            .or_else(|| self.models.iter().find(|m| m.can_see()).map(|m| m.id.as_str()))
    }

    /// The model used when nothing else is named: `default_chat`, else the first chat model.
    pub fn default_chat_model(&self) -> Option<&str> {
        self.default_chat.as_deref().or_else(|| {
            self.models
                .iter()
                .find(|m| m.role == ModelRole::Chat)
                .map(|m| m.id.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelCatalogue, String> {
        let catalogue: ModelCatalogue = toml::from_str(text).map_err(|e| e.to_string())?;
        catalogue.validate().map_err(|e| e.to_string())?;
        Ok(catalogue)
    }

    const REMOTES: &str = r#"
[providers.g]
kind = "gemini"
api_key_env = "K"

[[models]]
id = "text"
role = "chat"
provider = "g"

[[models]]
id = "eye"
role = "chat"
provider = "g"
capabilities = ["vision"]
"#;

    #[test]
    fn the_vision_model_is_named_or_the_first_that_can_see() {
        let catalogue = parse(REMOTES).unwrap();
        assert_eq!(catalogue.default_vision_model(), Some("eye"));
        let named = parse(&format!("default_vision = \"eye\"\n{REMOTES}")).unwrap();
        assert_eq!(named.default_vision_model(), Some("eye"));
        let text_only = parse(&REMOTES.replace("capabilities = [\"vision\"]", "")).unwrap();
        assert_eq!(text_only.default_vision_model(), None);
    }

    #[test]
    fn seeing_is_checked_where_it_is_declared() {
        let error = parse(&format!("default_vision = \"text\"\n{REMOTES}")).unwrap_err();
        assert!(
            error.contains("default_vision \"text\" is not a chat model with capabilities"),
            "{error}"
        );
        let error = parse(&format!("default_vision = \"nope\"\n{REMOTES}")).unwrap_err();
        assert!(error.contains("not in the model catalogue"), "{error}");
        // Seeing is a capability, not a role; capabilities are for chat models; unknown ones
        // are refused by name.
        assert!(parse(&REMOTES.replace(
            "role = \"chat\"\nprovider = \"g\"\ncapabilities",
            "role = \"vision\"\nprovider = \"g\"\ncapabilities"
        ))
        .is_err());
        let error = parse(&REMOTES.replace("[\"vision\"]", "[\"hearing\"]")).unwrap_err();
        assert!(error.contains("hearing"), "{error}");
        let local = "[[models]]\nid = \"l\"\nrole = \"chat\"\nprovider = \"local\"\npath = \"m.gguf\"\ncapabilities = [\"vision\"]\n";
        // A local model may see (a Qwen3-VL checkpoint; loading a text model then fails).
        assert!(parse(local).is_ok());
        let embed = "[[models]]\nid = \"e\"\nrole = \"embed\"\nprovider = \"local\"\npath = \"e\"\ncapabilities = [\"vision\"]\n";
        assert!(parse(embed).unwrap_err().contains("only chat models"));
    }
}
