//! Names the first tensor of a GGUF file whose type candle cannot read (the IQ* formats,
//! ternary and MXFP4 ones), so that loading such a file fails with the tensor and its type
//! rather than candle's "unknown dtype for tensor 16".
//!
//! candle's reader stops at the first unknown type without saying which tensor holds it, so
//! this walks the header itself: magic, version, counts, the metadata (skipped value by
//! value), then the tensor descriptions (name, dimensions, type, offset).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::engine::error::EngineError;

/// The error for a GGUF file candle could not read (`e`): the tensor and type that stopped it
/// when that is the reason, candle's message otherwise.
pub(crate) fn gguf_read_error(path: &Path, e: &candle_core::Error) -> EngineError {
    match first_unreadable_tensor(path) {
        Some(tensor) => EngineError::InvalidModel(format!(
            "{}: tensor {} is {}, a format Enclave cannot run; take a Q4_K_M, Q5_K_M, Q6_K, Q8_0 or F16 file of this model",
            path.display(),
            tensor.name,
            tensor.type_name
        )),
        None => EngineError::InvalidModel(format!("{} is not a readable GGUF file: {e}", path.display())),
    }
}

/// The ggml type names of the numbers candle does not know (ggml.h's `ggml_type`).
fn ggml_type_name(code: u32) -> Option<&'static str> {
    Some(match code {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

/// The ggml type numbers candle reads (F32, F16, Q4_0 ... Q8_K, BF16).
fn candle_reads(code: u32) -> bool {
    matches!(code, 0..=3 | 6..=15 | 30)
}

/// A tensor whose type candle cannot read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnreadableTensor {
    /// The tensor's name.
    pub(crate) name: String,
    /// Its ggml type name (`IQ2_XXS`), or `type N` for a number ggml does not name here.
    pub(crate) type_name: String,
}

/// The first tensor of the GGUF file at `path` whose type candle cannot read; `None` when
/// every type is readable or the header itself cannot be walked (then candle's own error
/// stands).
pub(crate) fn first_unreadable_tensor(path: &Path) -> Option<UnreadableTensor> {
    let mut reader = Header(BufReader::new(File::open(path).ok()?));
    if reader.u32()? != u32::from_le_bytes(*b"GGUF") {
        return None;
    }
    let version = reader.u32()?;
    if version < 2 {
        return None;
    }
    let tensors = reader.u64()?;
    let entries = reader.u64()?;
    for _ in 0..entries {
        reader.string()?;
        let kind = reader.u32()?;
        reader.skip_value(kind)?;
    }
    for _ in 0..tensors {
        let name = reader.string()?;
        let dims = reader.u32()?;
        for _ in 0..dims {
            reader.u64()?;
        }
        let code = reader.u32()?;
        reader.u64()?;
        if !candle_reads(code) {
            let type_name = ggml_type_name(code).map_or_else(|| format!("type {code}"), str::to_owned);
            return Some(UnreadableTensor { name, type_name });
        }
    }
    None
}

/// Little-endian reads of a GGUF header; `None` at the end of the file or on a malformed value.
struct Header<R>(R);

/// Strings and arrays longer than this are not a header's: the file is not one to walk.
const MAX_LEN: u64 = 1 << 32;

impl<R: Read> Header<R> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        self.0.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    fn skip(&mut self, len: u64) -> Option<()> {
        let copied = std::io::copy(&mut (&mut self.0).take(len), &mut std::io::sink()).ok()?;
        (copied == len).then_some(())
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u64()?;
        if len > MAX_LEN {
            return None;
        }
        let mut buf = Vec::new();
        (&mut self.0).take(len).read_to_end(&mut buf).ok()?;
        (buf.len() as u64 == len).then(|| String::from_utf8_lossy(&buf).into_owned())
    }

    /// Skips one metadata value of GGUF value type `kind`.
    fn skip_value(&mut self, kind: u32) -> Option<()> {
        match kind {
            // u8, i8, bool
            0 | 1 | 7 => self.skip(1),
            // u16, i16
            2 | 3 => self.skip(2),
            // u32, i32, f32
            4..=6 => self.skip(4),
            // u64, i64, f64
            10..=12 => self.skip(8),
            8 => self.string().map(drop),
            9 => {
                let item = self.u32()?;
                let len = self.u64()?;
                if len > MAX_LEN {
                    return None;
                }
                (0..len).try_for_each(|_| self.skip_value(item))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header with one metadata string and the tensors `(name, type)`.
    fn header(tensors: &[(&str, u32)]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend(2u64.to_le_bytes());
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        };
        string(&mut out, "general.architecture");
        out.extend(8u32.to_le_bytes());
        string(&mut out, "llama");
        string(&mut out, "tokenizer.ggml.scores");
        out.extend(9u32.to_le_bytes());
        out.extend(6u32.to_le_bytes());
        out.extend(3u64.to_le_bytes());
        out.extend([0u8; 12]);
        for (name, code) in tensors {
            string(&mut out, name);
            out.extend(2u32.to_le_bytes());
            out.extend(256u64.to_le_bytes());
            out.extend(8u64.to_le_bytes());
            out.extend(code.to_le_bytes());
            out.extend(0u64.to_le_bytes());
        }
        out
    }

    #[test]
    fn names_the_first_tensor_of_an_unreadable_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(
            &path,
            header(&[("token_embd.weight", 14), ("blk.0.attn_q.weight", 16), ("x", 23)]),
        )
        .unwrap();
        assert_eq!(
            first_unreadable_tensor(&path),
            Some(UnreadableTensor {
                name: "blk.0.attn_q.weight".into(),
                type_name: "IQ2_XXS".into()
            })
        );
        std::fs::write(&path, header(&[("a", 0), ("b", 12), ("c", 99)])).unwrap();
        assert_eq!(first_unreadable_tensor(&path).unwrap().type_name, "type 99");
    }

    #[test]
    fn loading_an_iq_file_names_the_tensor_and_its_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let mut file = header(&[("token_embd.weight", 0), ("blk.0.ffn_down.weight", 23)]);
        file.resize(file.len().next_multiple_of(32) + 8192, 0);
        std::fs::write(&path, file).unwrap();
        let error = crate::engine::run::forward::LlamaBatchModel::load(&path, &candle_core::Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tensor blk.0.ffn_down.weight is IQ4_XS") && error.contains("Q4_K_M"),
            "{error}"
        );
    }

    #[test]
    fn readable_or_malformed_files_name_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, header(&[("a", 0), ("b", 12), ("c", 30)])).unwrap();
        assert_eq!(first_unreadable_tensor(&path), None);
        let mut truncated = header(&[("a", 16)]);
        truncated.truncate(truncated.len() - 10);
        std::fs::write(&path, truncated).unwrap();
        assert_eq!(first_unreadable_tensor(&path), None);
        std::fs::write(&path, b"not a gguf file").unwrap();
        assert_eq!(first_unreadable_tensor(&path), None);
    }
}
