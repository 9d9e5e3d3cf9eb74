//! A batch turned into index tensors, once per forward (shared by every layer): token ids,
//! rotary tables at each token's position, the KV slots to write, and per sequence the slots
//! to read and the causal mask.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::engine::error::EngineError;
use crate::engine::run::kv::{write_slot_ids, KvCache};
use enclave_kernels::{GpuPagedAttention, PagedAttention};

use super::attention::AttentionBackend;
use super::{Batch, BatchModelConfig};

/// One sequence's attention inputs for [`AttentionBackend::CandleOps`].
pub(crate) struct SeqPlan {
    /// Its first row in the flattened batch.
    pub(crate) offset: usize,
    /// Its new tokens (rows).
    pub(crate) len: usize,
    /// Positions it attends to: `start_pos + len`.
    pub(crate) ctx_len: usize,
    /// Rows of the cache viewed as `[slots * kv_heads, d]` holding, for each query head in
    /// turn, the keys (and values) of positions `0..ctx_len`: u32 `[heads * ctx_len]`.
    pub(crate) head_rows: Option<Tensor>,
    /// Additive causal mask `[len, ctx_len]` (0 or -inf); `None` for a single token, which
    /// sees the whole context.
    pub(crate) mask: Option<Tensor>,
}

/// The decode tokens of a batch for [`AttentionBackend::GpuKernel`].
pub(crate) struct GpuPlan {
    /// The op over the single-token entries, in batch order.
    pub(crate) op: GpuPagedAttention,
    /// Their rows in the batch, u32; `None` when every entry is a single token (all rows).
    pub(crate) rows: Option<Tensor>,
    /// For each batch row, its row in `[the op's output; each prompt chunk's output]`, u32;
    /// `None` when every entry is a single token.
    pub(crate) order: Option<Tensor>,
}

/// Everything about a batch that does not depend on the layer.
pub(crate) struct Plan {
    /// Token ids, u32 `[total_tokens]`.
    pub(crate) tokens: Tensor,
    /// Rotary cosines at each token's position, `[total_tokens, 1, head_dim / 2]`.
    pub(crate) cos: Tensor,
    /// Rotary sines, same shape.
    pub(crate) sin: Tensor,
    /// The slot of each new token, repeated `kv_dim` times: u32 `[total_tokens, kv_dim]`.
    pub(crate) write_slots: Tensor,
    /// Per sequence, in batch order (candle-ops attention).
    pub(crate) seqs: Vec<SeqPlan>,
    /// The attention op for the whole batch (CPU kernel).
    pub(crate) kernel: Option<PagedAttention>,
    /// The GPU kernel's share: the batch's single-token entries.
    pub(crate) gpu: Option<GpuPlan>,
    /// The rows whose logits are wanted, u32 `[num_logits]`; `None` when none is.
    pub(crate) logit_rows: Option<Tensor>,
    /// Image features among the new tokens; `None` when there are none.
    pub(crate) visual: Option<VisualPlan>,
}

/// Where image features go in a batch's activations.
pub(crate) struct VisualPlan {
    /// For each row of `[token embeddings; image embeddings]`'s result, the row it takes: its
    /// own, or `total + k` for the k-th image row. u32 `[total_tokens]`.
    pub(crate) splice: Tensor,
    /// The image embeddings, `[image rows, dim]`.
    pub(crate) embeds: Tensor,
    /// Per DeepStack layer, `[zeros; features]` `[1 + image rows, dim]`.
    pub(crate) deepstack: Vec<Tensor>,
    /// For each row, its row in a DeepStack tensor (0, the zeros, for text). u32 `[total_tokens]`.
    pub(crate) deepstack_rows: Tensor,
}

/// Checks `batch` against the model and the cache, then builds its [`Plan`].
pub(crate) fn build(
    batch: &Batch<'_>,
    config: &BatchModelConfig,
    kv: &KvCache,
    backend: AttentionBackend,
    cos_table: &Tensor,
    sin_table: &Tensor,
    device: &Device,
) -> Result<Plan, EngineError> {
    let invalid = |msg: String| Err(EngineError::InvalidRequest(msg));
    if batch.entries.is_empty() {
        return invalid("empty batch".into());
    }
    let kv_config = kv.config();
    if kv_config.num_layers != config.num_layers
        || kv_config.num_kv_heads != config.num_kv_heads
        || kv_config.head_dim != config.head_dim
    {
        return invalid(format!("the KV cache {kv_config:?} does not fit the model"));
    }
    match (backend, kv_config.dtype) {
        (AttentionBackend::CpuKernel, DType::F32 | DType::F16) => {}
        (AttentionBackend::CpuKernel, other) => {
            return invalid(format!(
                "the CPU attention kernel reads an f32 or f16 KV cache, not {other:?}"
            ));
        }
        (AttentionBackend::GpuKernel, DType::F32) => {}
        (AttentionBackend::GpuKernel, other) => {
            return invalid(format!("the GPU attention kernel reads an f32 KV cache, not {other:?}"));
        }
        (AttentionBackend::CandleOps, _) => {}
    }
    let kernel = backend == AttentionBackend::CpuKernel;
    let gpu = backend == AttentionBackend::GpuKernel;
    // The GPU kernel's tokens: their rows and their context slots.
    let mut gpu_rows: Vec<u32> = Vec::new();
    let mut gpu_contexts: Vec<Vec<u32>> = Vec::new();
    let (heads, kv_heads) = (config.num_heads, config.num_kv_heads);
    let group = heads / kv_heads;
    let mut kernel_tokens = Vec::new();
    let mut kernel_slots = Vec::new();
    let allocator = kv.allocator();
    let total = batch.num_tokens();
    let mut tokens = Vec::with_capacity(total);
    let mut positions = Vec::with_capacity(total);
    let mut write_slots = Vec::with_capacity(total);
    let mut seqs = Vec::with_capacity(batch.entries.len());
    let mut logit_rows = Vec::new();
    let mut written_blocks = std::collections::HashSet::new();
    let multimodal = batch.entries.iter().any(|e| e.positions.is_some());
    if multimodal && config.mrope.is_none() {
        return invalid("multimodal positions for a model without them".into());
    }
    let mut mrope_positions: Vec<[u32; 3]> = Vec::new();
    let mut visual_rows: Vec<(usize, &super::VisualRows<'_>)> = Vec::new();
    for (i, entry) in batch.entries.iter().enumerate() {
        let len = entry.tokens.len();
        let start = entry.start_pos;
        let end = start + len;
        let table = entry.block_table;
        if len == 0 {
            return invalid(format!("sequence {i} of the batch has no new token"));
        }
        if end > config.max_positions {
            return invalid(format!(
                "sequence {i} reaches position {end}, the model holds {}",
                config.max_positions
            ));
        }
        if table.block_size() != kv_config.block_size {
            return invalid(format!(
                "sequence {i} has blocks of {} tokens, the cache {}",
                table.block_size(),
                kv_config.block_size
            ));
        }
        if table.capacity() < end {
            return invalid(format!(
                "sequence {i} needs room for {end} positions, its blocks hold {}",
                table.capacity()
            ));
        }
        if let Some(&bad) = entry.tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
            return invalid(format!("token id {bad} is outside the vocabulary"));
        }
        // Every block read must be allocated; every block written must be this sequence's
        // alone (shared prefix blocks are full and never written again).
        let bs = kv_config.block_size;
        let blocks = &table.blocks()[..end.div_ceil(bs)];
        for (b, &block) in blocks.iter().enumerate() {
            let holders = allocator.ref_count(block);
            let written = (b + 1) * bs > start;
            if written && !written_blocks.insert(block) {
                return invalid(format!("sequence {i}: block {block} is written by two sequences"));
            }
            if holders == 0 || (written && holders > 1) {
                return invalid(format!(
                    "sequence {i}: block {block} has {holders} holders and is {}",
                    if written { "written" } else { "read" }
                ));
            }
        }

        let offset = tokens.len();
        tokens.extend_from_slice(entry.tokens);
        positions.extend((start..end).map(|p| p as u32));
        if multimodal {
            match entry.positions {
                Some(p) if p.len() == len => {
                    if let Some(bad) = p.iter().flatten().find(|&&p| p as usize >= config.max_positions) {
                        return invalid(format!(
                            "sequence {i} has the position {bad}, the model holds {}",
                            config.max_positions
                        ));
                    }
                    mrope_positions.extend_from_slice(p);
                }
                Some(p) => {
                    return invalid(format!("sequence {i} has {} positions for {len} tokens", p.len()));
                }
                None => mrope_positions.extend((start..end).map(|p| [p as u32; 3])),
            }
        }
        for rows in entry.visual {
            if rows.row + rows.len > len || rows.from + rows.len > rows.features.embeds.dim(0)? {
                return invalid(format!("sequence {i}: image rows outside its tokens or its features"));
            }
            if rows.features.embeds.dim(1)? != config.dim {
                return invalid(format!("sequence {i}: image features are not {} wide", config.dim));
            }
            visual_rows.push((offset, rows));
        }
        let ctx_slots: Vec<u32> = (0..end).map(|p| slot(table, p)).collect();
        write_slots.extend_from_slice(&ctx_slots[start..]);
        if gpu && len == 1 {
            gpu_rows.push(offset as u32);
            gpu_contexts.push(ctx_slots);
        } else if kernel {
            let seq = kernel_slots.len() as u32;
            kernel_tokens.extend((start..end).map(|p| (seq, p as u32)));
            kernel_slots.push(Arc::new(ctx_slots));
        } else {
            let head_rows: Vec<u32> = (0..heads)
                .flat_map(|head| {
                    let kv_head = (head / group) as u32;
                    ctx_slots.iter().map(move |&s| s * kv_heads as u32 + kv_head)
                })
                .collect();
            let mask = if len > 1 {
                let mask: Vec<f32> = (0..len)
                    .flat_map(|q| (0..end).map(move |k| if k <= start + q { 0.0 } else { f32::NEG_INFINITY }))
                    .collect();
                Some(Tensor::from_vec(mask, (len, end), device)?)
            } else {
                None
            };
            seqs.push(SeqPlan {
                offset,
                len,
                ctx_len: end,
                head_rows: Some(Tensor::from_vec(head_rows, heads * end, device)?),
                mask,
            });
        }
        if entry.wants_logits {
            logit_rows.push((offset + len - 1) as u32);
        }
    }
    let half = config.head_dim / 2;
    let (cos, sin) = match (multimodal, config.mrope) {
        (true, Some(section)) => {
            // Frequency j of a token turns with the position of its axis: gather each
            // (token, j) from the flattened tables.
            let axes = section.axes(half);
            let index: Vec<u32> = mrope_positions
                .iter()
                .flat_map(|p| {
                    axes.iter()
                        .enumerate()
                        .map(move |(j, &axis)| p[axis] * half as u32 + j as u32)
                })
                .collect();
            let index = Tensor::from_vec(index, total * half, device)?;
            let gather = |table: &Tensor| -> candle_core::Result<Tensor> {
                table.flatten_all()?.index_select(&index, 0)?.reshape((total, 1, half))
            };
            (gather(cos_table)?, gather(sin_table)?)
        }
        _ => {
            let positions = Tensor::from_vec(positions, total, device)?;
            (
                cos_table.index_select(&positions, 0)?.reshape((total, 1, half))?,
                sin_table.index_select(&positions, 0)?.reshape((total, 1, half))?,
            )
        }
    };
    let visual = visual_plan(&visual_rows, total, config.dim, device)?;
    let gpu = if gpu_contexts.is_empty() {
        None
    } else {
        let contexts: Vec<&[u32]> = gpu_contexts.iter().map(Vec::as_slice).collect();
        let op = GpuPagedAttention::new(heads, kv_heads, config.head_dim, &contexts, device)?;
        let (rows, order) = if seqs.is_empty() {
            (None, None)
        } else {
            // Output rows: the decode tokens, then each prompt chunk's rows in batch order.
            let mut order = vec![0u32; total];
            for (i, &row) in gpu_rows.iter().enumerate() {
                order[row as usize] = i as u32;
            }
            let mut next = gpu_rows.len() as u32;
            for seq in &seqs {
                for slot in &mut order[seq.offset..seq.offset + seq.len] {
                    *slot = next;
                    next += 1;
                }
            }
            let n = gpu_rows.len();
            (
                Some(Tensor::from_vec(gpu_rows, n, device)?),
                Some(Tensor::from_vec(order, total, device)?),
            )
        };
        Some(GpuPlan { op, rows, order })
    };
    let logit_rows = if logit_rows.is_empty() {
        None
    } else {
        let n = logit_rows.len();
        Some(Tensor::from_vec(logit_rows, n, device)?)
    };
    Ok(Plan {
        tokens: Tensor::from_vec(tokens, total, device)?,
        cos,
        sin,
        write_slots: write_slot_ids(&write_slots, kv_config.kv_dim(), device)?,
        seqs,
        kernel: kernel.then(|| PagedAttention {
            heads,
            kv_heads,
            head_dim: config.head_dim,
            scale: (1.0 / (config.head_dim as f64).sqrt()) as f32,
            tokens: kernel_tokens,
            slots: kernel_slots,
        }),
        gpu,
        logit_rows,
        visual,
    })
}

/// Where the image rows of a batch go (`None` when it has none).
fn visual_plan(
    rows: &[(usize, &super::VisualRows<'_>)],
    total: usize,
    dim: usize,
    device: &Device,
) -> Result<Option<VisualPlan>, EngineError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut splice: Vec<u32> = (0..total as u32).collect();
    let mut deepstack_rows = vec![0u32; total];
    let mut embeds = Vec::with_capacity(rows.len());
    let layers = rows.iter().map(|(_, r)| r.features.deepstack.len()).min().unwrap_or(0);
    let mut deepstack: Vec<Vec<Tensor>> = vec![vec![Tensor::zeros((1, dim), DType::F32, device)?]; layers];
    let mut next = 0usize;
    for (offset, r) in rows {
        for k in 0..r.len {
            let row = offset + r.row + k;
            if splice[row] as usize != row {
                return Err(EngineError::InvalidRequest(format!(
                    "batch row {row} gets two image rows"
                )));
            }
            splice[row] = (total + next + k) as u32;
            deepstack_rows[row] = (1 + next + k) as u32;
        }
        next += r.len;
        embeds.push(r.features.embeds.narrow(0, r.from, r.len)?);
        for (layer, parts) in deepstack.iter_mut().enumerate() {
            parts.push(r.features.deepstack[layer].narrow(0, r.from, r.len)?);
        }
    }
    Ok(Some(VisualPlan {
        splice: Tensor::from_vec(splice, total, device)?,
        embeds: Tensor::cat(&embeds, 0)?.to_dtype(DType::F32)?,
        deepstack: deepstack
            .iter()
            .map(|parts| Tensor::cat(parts, 0)?.to_dtype(DType::F32))
            .collect::<candle_core::Result<_>>()?,
        deepstack_rows: Tensor::from_vec(deepstack_rows, total, device)?,
    }))
}

/// The slot of `position` in a table already checked to hold it.
fn slot(table: &crate::engine::run::kv::BlockTable, position: usize) -> u32 {
    table.slot(position).expect("capacity checked") as u32
}
