//! Sampling parameters of one generation and the one place their ranges are checked.

use serde::{Deserialize, Serialize};

/// Answer length when neither the request nor the conversation sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The most tokens one answer may ask for (the model's context bounds it further).
pub const MAX_TOKENS_LIMIT: u32 = 32_768;
/// The highest temperature accepted (OpenAI's range, 0 to 2).
pub const MAX_TEMPERATURE: f32 = 2.0;

/// Sampling settings for one generation; `None` means the provider's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// Softmax temperature, 0 to [`MAX_TEMPERATURE`]; 0 means greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens (local models and Gemini).
    pub top_k: Option<u32>,
    /// Keep only tokens at least this fraction as likely as the most likely one, 0 to 1
    /// (local models and OpenAI-compatible servers that take it).
    pub min_p: Option<f32>,
    /// Penalty on tokens already in the prompt or answer, in (0, 10], 1 for none (local
    /// models).
    pub repetition_penalty: Option<f32>,
    /// OpenAI's presence penalty, -2 to 2.
    pub presence_penalty: Option<f32>,
    /// OpenAI's frequency penalty, -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// Upper bound on generated tokens, 1 to [`MAX_TOKENS_LIMIT`]; [`DEFAULT_MAX_TOKENS`]
    /// when absent.
    pub max_tokens: Option<u32>,
    /// Strings that end generation when produced (not included in the output).
    pub stop: Vec<String>,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// Generate `max_tokens` whatever end-of-sequence tokens come (benchmarks; local models
    /// and OpenAI-compatible servers such as vLLM and llama.cpp).
    pub ignore_eos: bool,
}

/// A parameter out of its range: `field` names it as the request spelled it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct InvalidParam {
    /// The parameter's name (`temperature`, `top_p`...).
    pub field: &'static str,
    /// What it must be (`must be between 0 and 2`).
    pub rule: String,
}

impl GenerationParams {
    /// The answer length asked for, or the default.
    pub fn max_tokens_or_default(&self) -> u32 {
        self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
    }

    /// Checks every value against its range; the error names the first one outside it.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        let bad = |field: &'static str, rule: &str| {
            Err(InvalidParam {
                field,
                rule: rule.to_owned(),
            })
        };
        if self.temperature.is_some_and(|t| !(0.0..=MAX_TEMPERATURE).contains(&t)) {
            return bad("temperature", "must be between 0 and 2");
        }
        if self.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return bad("top_p", "must be in (0, 1]");
        }
        if self.min_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return bad("min_p", "must be between 0 and 1");
        }
        if self.repetition_penalty.is_some_and(|p| !(p > 0.0 && p <= 10.0)) {
            return bad("repetition_penalty", "must be in (0, 10]");
        }
        for (field, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if value.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
                return bad(field, "must be between -2 and 2");
            }
        }
        if self.max_tokens.is_some_and(|m| m == 0 || m > MAX_TOKENS_LIMIT) {
            return bad("max_tokens", &format!("must be between 1 and {MAX_TOKENS_LIMIT}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_default_length_applies() {
        let params = GenerationParams::default();
        assert!(params.validate().is_ok());
        assert_eq!(params.max_tokens_or_default(), DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn each_value_out_of_range_is_named() {
        let cases: [(&str, GenerationParams); 8] = [
            (
                "temperature",
                GenerationParams {
                    temperature: Some(2.5),
                    ..Default::default()
                },
            ),
            (
                "temperature",
                GenerationParams {
                    temperature: Some(-0.1),
                    ..Default::default()
                },
            ),
            (
                "top_p",
                GenerationParams {
                    top_p: Some(0.0),
                    ..Default::default()
                },
            ),
            (
                "min_p",
                GenerationParams {
                    min_p: Some(1.5),
                    ..Default::default()
                },
            ),
            (
                "repetition_penalty",
                GenerationParams {
                    repetition_penalty: Some(0.0),
                    ..Default::default()
                },
            ),
            (
                "presence_penalty",
                GenerationParams {
                    presence_penalty: Some(3.0),
                    ..Default::default()
                },
            ),
            (
                "frequency_penalty",
                GenerationParams {
                    frequency_penalty: Some(-3.0),
                    ..Default::default()
                },
            ),
            (
                "max_tokens",
                GenerationParams {
                    max_tokens: Some(0),
                    ..Default::default()
                },
            ),
        ];
        for (field, params) in cases {
            let error = params.validate().unwrap_err();
            assert_eq!(error.field, field, "{params:?}");
            assert!(error.to_string().starts_with(field));
        }
    }

    #[test]
    fn the_edges_of_each_range_are_accepted() {
        let params = GenerationParams {
            temperature: Some(2.0),
            top_p: Some(1.0),
            min_p: Some(0.0),
            repetition_penalty: Some(10.0),
            presence_penalty: Some(-2.0),
            frequency_penalty: Some(2.0),
            max_tokens: Some(MAX_TOKENS_LIMIT),
            ..Default::default()
        };
        assert_eq!(params.validate(), Ok(()));
    }
}
