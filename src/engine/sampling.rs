//! Sampling parameters and the logits processor that applies them.

use candle_transformers::generation::{LogitsProcessor, Sampling};

/// The seed used when a request names none, so that runs are reproducible.
pub const DEFAULT_SEED: u64 = 299_792_458;

/// How to pick each next token, and when to stop.
#[derive(Clone, Debug, Default)]
pub struct SamplingParams {
    /// Softmax temperature; `None` or 0 means greedy (argmax).
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this mass.
    pub top_p: Option<f32>,
    /// Keep only the `top_k` most likely tokens.
    pub top_k: Option<usize>,
    /// Seed of the sampler; [`DEFAULT_SEED`] when absent.
    pub seed: Option<u64>,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// Strings that end generation when produced (not included in the output).
    pub stop: Vec<String>,
}

impl SamplingParams {
    /// Whether these parameters pick the most likely token every time.
    pub fn is_greedy(&self) -> bool {
        self.temperature.is_none_or(|t| t.is_nan() || t <= 1e-6)
    }

    /// The candle sampler for these parameters.
    pub(crate) fn logits_processor(&self) -> LogitsProcessor {
        let seed = self.seed.unwrap_or(DEFAULT_SEED);
        LogitsProcessor::from_sampling(seed, self.sampling())
    }

    fn sampling(&self) -> Sampling {
        if self.is_greedy() {
            return Sampling::ArgMax;
        }
        let temperature = f64::from(self.temperature.unwrap_or(1.0));
        let top_p = self.top_p.filter(|p| *p > 0.0 && *p < 1.0).map(f64::from);
        let top_k = self.top_k.filter(|k| *k > 0);
        match (top_k, top_p) {
            (None, None) => Sampling::All { temperature },
            (Some(k), None) => Sampling::TopK { k, temperature },
            (None, Some(p)) => Sampling::TopP { p, temperature },
            (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_candle_sampling_mode() {
        let mut params = SamplingParams::default();
        assert_eq!(params.sampling(), Sampling::ArgMax);
        params.temperature = Some(0.0);
        assert_eq!(params.sampling(), Sampling::ArgMax);
        params.temperature = Some(0.7);
        assert_eq!(
            params.sampling(),
            Sampling::All {
                temperature: 0.7f32 as f64
            }
        );
        params.top_p = Some(0.9);
        assert_eq!(
            params.sampling(),
            Sampling::TopP {
                p: 0.9f32 as f64,
                temperature: 0.7f32 as f64
            }
        );
        params.top_k = Some(40);
        assert_eq!(
            params.sampling(),
            Sampling::TopKThenTopP {
                k: 40,
                p: 0.9f32 as f64,
                temperature: 0.7f32 as f64
            }
        );
        params.top_p = Some(1.0);
        assert_eq!(
            params.sampling(),
            Sampling::TopK {
                k: 40,
                temperature: 0.7f32 as f64
            }
        );
    }
}
