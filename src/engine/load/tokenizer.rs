//! Text to token ids and back: a `tokenizers::Tokenizer` built from the GGUF metadata (or a
//! `tokenizer.json` beside the model file), plus the model's BOS / EOS conventions.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::engine::error::EngineError;
use crate::engine::load::gguf::Metadata;

/// GGUF `token_type` of control tokens (`<|im_start|>`, `<|endoftext|>`, ...).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF `token_type` of user-defined added tokens (`<think>` in Qwen vocabularies).
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The pre-tokenizer regex of Llama 3 style BPE vocabularies (`tokenizer.ggml.pre` =
/// `llama-bpe`), as in their tokenizer.json.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The pre-tokenizer regex of Qwen2 / Qwen3 vocabularies (`tokenizer.ggml.pre` = `qwen2`).
const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A special token: its id and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpecialToken {
    /// The token id.
    pub(crate) id: u32,
    /// The token's text as templates write it.
    pub(crate) text: String,
}

/// The model's tokenizer.
pub(crate) struct TextTokenizer {
    /// The tokenizer proper; special tokens in a text become their single ids.
    inner: Tokenizer,
    /// The beginning-of-sequence token, when the model has one.
    bos: Option<SpecialToken>,
    /// The end-of-sequence token, when the model has one.
    eos: Option<SpecialToken>,
    /// Whether encoded prompts start with BOS (`tokenizer.ggml.add_bos_token`).
    add_bos: bool,
}

impl TextTokenizer {
    /// Builds the tokenizer of the GGUF model at `model_file` whose metadata is `md`: from a
    /// `tokenizer.json` beside the file when there is one, else from `tokenizer.ggml.*`.
    pub(crate) fn load(md: &Metadata<'_>, model_file: &Path) -> Result<Self, EngineError> {
        let beside = model_file.with_file_name("tokenizer.json");
        let inner = if beside.is_file() {
            tracing::info!(path = %beside.display(), "using the tokenizer.json beside the model");
            Tokenizer::from_file(&beside)
                .map_err(|e| EngineError::Tokenizer(format!("cannot read {}: {e}", beside.display())))?
        } else {
            from_gguf_metadata(md)?
        };
        let special = |key: &str| {
            md.token_id(key)
                .and_then(|id| inner.id_to_token(id).map(|text| SpecialToken { id, text }))
        };
        let bos = special("tokenizer.ggml.bos_token_id");
        let eos = special("tokenizer.ggml.eos_token_id");
        let add_bos = md.bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
        Ok(Self {
            inner,
            bos,
            eos,
            add_bos,
        })
    }

    /// The tokenizer of a Hugging Face model directory: its `tokenizer.json`, with the BOS /
    /// EOS tokens and BOS convention of `tokenizer_config.json` (`settings`).
    pub(crate) fn from_hf(
        dir: &Path,
        settings: &crate::engine::load::hf::TokenizerSettings,
    ) -> Result<Self, EngineError> {
        let path = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&path)
            .map_err(|e| EngineError::Tokenizer(format!("cannot read {}: {e}", path.display())))?;
        let special = |text: &Option<String>| {
            let text = text.as_ref()?;
            inner
                .token_to_id(text)
                .map(|id| SpecialToken { id, text: text.clone() })
        };
        let bos = special(&settings.bos);
        let eos = special(&settings.eos);
        Ok(Self {
            inner,
            bos,
            eos,
            add_bos: settings.add_bos,
        })
    }

    /// The tokenizer proper (to save it as `tokenizer.json`).
    pub(crate) fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes `text`; special tokens written in it (`<|im_start|>`) become their single ids,
    /// and BOS is put first when the model wants it and the text did not already start with it.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let mut ids = self.encode_plain(text)?;
        if let (true, Some(bos)) = (self.add_bos, &self.bos) {
            if ids.first() != Some(&bos.id) {
                ids.insert(0, bos.id);
            }
        }
        Ok(ids)
    }

    /// The number of tokens of `text`, without BOS.
    pub(crate) fn count(&self, text: &str) -> usize {
        self.encode_plain(text)
            .map_or_else(|_| crate::generation::estimate_tokens(text), |ids| ids.len())
    }

    /// Decodes `ids` to text, leaving out special tokens.
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The id of the token spelled `text`, if the vocabulary has it.
    pub(crate) fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The text of token `id` (special tokens included), if the vocabulary has it.
    pub(crate) fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The beginning-of-sequence token.
    pub(crate) fn bos(&self) -> Option<&SpecialToken> {
        self.bos.as_ref()
    }

    /// The end-of-sequence token.
    pub(crate) fn eos(&self) -> Option<&SpecialToken> {
        self.eos.as_ref()
    }

    /// The number of tokens in the vocabulary, added tokens included.
    pub(crate) fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn encode_plain(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// Builds a tokenizer from `tokenizer.ggml.*` metadata; only GPT-2 style byte-level BPE
/// vocabularies (`tokenizer.ggml.model` = `gpt2`) are supported for now.
fn from_gguf_metadata(md: &Metadata<'_>) -> Result<Tokenizer, EngineError> {
    let model = md.str("tokenizer.ggml.model").unwrap_or("");
    if model != "gpt2" {
        return Err(EngineError::Tokenizer(format!(
            "unsupported tokenizer.ggml.model {model:?} (only \"gpt2\" byte-level BPE is built \
             from GGUF metadata for now); put the model's tokenizer.json beside the GGUF file"
        )));
    }
    let tokens = md
        .str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| EngineError::Tokenizer("the GGUF has no tokenizer.ggml.tokens".into()))?;
    let types = md.int_array("tokenizer.ggml.token_type")?.unwrap_or_default();
    let merges = md.str_array("tokenizer.ggml.merges")?.unwrap_or_default();

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| ((*token).to_owned(), id as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| EngineError::Tokenizer(format!("malformed merge {merge:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| EngineError::Tokenizer(format!("cannot build the BPE model: {e}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    let pre = md.str("tokenizer.ggml.pre").unwrap_or("default");
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let added = |wanted: i64, special: bool| {
        types
            .iter()
            .zip(tokens.iter())
            .filter(move |(kind, _)| **kind == wanted)
            .map(move |(_, token)| AddedToken::from((*token).to_owned(), special))
            .collect::<Vec<_>>()
    };
    tokenizer
        .add_special_tokens(added(TOKEN_TYPE_CONTROL, true))
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    tokenizer
        .add_tokens(added(TOKEN_TYPE_USER_DEFINED, false))
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// The pre-tokenizer that llama.cpp applies for `tokenizer.ggml.pre` = `pre`.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, EngineError> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper, EngineError> {
        let split = Split::new(
            SplitPattern::Regex(pattern.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| EngineError::Tokenizer(format!("bad pre-tokenizer regex: {e}")))?;
        Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into())
    };
    match pre {
        // SmolLM: every digit is its own word, then GPT-2's byte-level split.
        "smollm" => Ok(Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into()),
        "llama-bpe" | "llama3" | "llama-v3" | "dbrx" | "smaug-bpe" => split(LLAMA3_PATTERN),
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_PATTERN),
        "gpt-2" | "gpt2" | "default" => Ok(ByteLevel::new(false, true, true).into()),
        other => {
            tracing::warn!(pre = other, "unknown tokenizer.ggml.pre, using GPT-2's pre-tokenizer");
            Ok(ByteLevel::new(false, true, true).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::quantized::gguf_file::{Content, Value};

    use super::*;

    /// The metadata of the tiny model, read back from a file written to `dir`.
    fn tiny_metadata(dir: &Path) -> (std::path::PathBuf, HashMap<String, Value>) {
        let path = dir.join("tiny.gguf");
        crate::engine::tiny::write_tiny_llama(&path, 1).unwrap();
        let content = Content::read(&mut std::fs::File::open(&path).unwrap()).unwrap();
        (path, content.metadata)
    }

    #[test]
    fn a_tokenizer_json_beside_the_model_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (path, metadata) = tiny_metadata(dir.path());
        let md = Metadata(&metadata);
        let from_metadata = TextTokenizer::load(&md, &path).unwrap();
        assert_eq!(from_metadata.count("<|extra|>"), 9);

        let mut json = from_gguf_metadata(&md).unwrap();
        json.add_special_tokens([AddedToken::from("<|extra|>", true)]).unwrap();
        json.save(path.with_file_name("tokenizer.json"), false).unwrap();
        let beside = TextTokenizer::load(&md, &path).unwrap();
        assert_eq!(
            beside.encode("<|extra|>").unwrap(),
            vec![from_metadata.vocab_size() as u32]
        );
        assert_eq!(beside.eos(), from_metadata.eos());
    }

    #[test]
    fn bos_is_added_once_when_the_model_wants_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut metadata) = tiny_metadata(dir.path());
        metadata.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
        let tokenizer = TextTokenizer::load(&Metadata(&metadata), &path).unwrap();
        let bos = tokenizer.bos().unwrap().clone();
        assert_eq!(bos.text, "<|im_start|>");
        assert_eq!(tokenizer.encode("hi").unwrap()[0], bos.id);
        let ids = tokenizer.encode("<|im_start|>hi").unwrap();
        assert_eq!(ids.iter().filter(|id| **id == bos.id).count(), 1, "{ids:?}");
        assert_eq!(tokenizer.count("hi"), 2);
    }

    #[test]
    fn sentencepiece_vocabularies_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut metadata) = tiny_metadata(dir.path());
        metadata.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let error = TextTokenizer::load(&Metadata(&metadata), &path).err().unwrap();
        assert!(
            matches!(&error, EngineError::Tokenizer(m) if m.contains("unsupported")),
            "{error}"
        );
    }
}
