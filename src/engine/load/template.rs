//! Chat templates: the model's Jinja template (or ChatML) rendered with minijinja the way
//! Hugging Face's `apply_chat_template` does.

use minijinja::{Environment, ErrorKind};
use serde::Serialize;

use crate::engine::error::EngineError;

/// The template used when the model carries none: ChatML.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The name the template is registered under in its environment.
const TEMPLATE_NAME: &str = "chat";

/// One message handed to a chat template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TemplateMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message's text.
    pub content: String,
}

impl TemplateMessage {
    /// A message from `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template with the model's BOS and EOS texts.
pub(crate) struct ChatTemplate {
    /// The environment holding the compiled template.
    env: Environment<'static>,
    /// The BOS token's text (`bos_token` in the template), empty when there is none.
    bos_token: String,
    /// The EOS token's text (`eos_token` in the template), empty when there is none.
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source` in an environment like transformers' (trim_blocks, lstrip_blocks,
    /// Python string methods, `raise_exception`).
    pub(crate) fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| EngineError::Template(format!("cannot compile the chat template: {e}")))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub(crate) fn render(
        &self,
        messages: &[TemplateMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|e| {
                // raise_exception's message is the useful part; keep the chain short.
                let detail = e.detail().map(str::to_owned).unwrap_or_else(|| e.to_string());
                EngineError::Template(detail)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages() -> Vec<TemplateMessage> {
        vec![
            TemplateMessage::new("system", "Be brief."),
            TemplateMessage::new("user", "Hi"),
        ]
    }

    #[test]
    fn chatml_renders_with_generation_prompt() {
        let template = ChatTemplate::new(CHATML_TEMPLATE, "", "<|im_end|>").unwrap();
        let text = template.render(&messages(), true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let text = template.render(&messages(), false).unwrap();
        assert!(text.ends_with("Hi<|im_end|>\n"));
    }

    #[test]
    fn python_methods_bos_and_raise_exception_work() {
        let source = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{{ raise_exception('no assistant turns') }}{% endif %}{{ m['content'].strip().upper() }}{% endfor %}";
        let template = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        let text = template.render(&[TemplateMessage::new("user", "  hi ")], true).unwrap();
        assert_eq!(text, "<s>HI");
        let error = template
            .render(&[TemplateMessage::new("assistant", "x")], true)
            .unwrap_err();
        assert!(error.to_string().contains("no assistant turns"), "{error}");
    }

    #[test]
    fn a_broken_template_is_a_template_error() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(EngineError::Template(_))
        ));
    }
}
