//! Batch-wide causal attention of single-token entries (decode steps) on a CUDA GPU: one
//! kernel launch per layer for the whole batch, K and V read in place from the paged cache
//! (`paged.cu`, compiled to PTX at build time by nvcc when the `cuda` feature is on).
//!
//! The per-step index is built once per forward and uploaded once ([`GpuPagedAttention::new`]),
//! then every layer's launch reads it: u32 `[tokens]` context lengths, `[tokens]` offsets of
//! each token's slot list, then the slot lists (the cache slot of each position the token
//! attends to, `0..=position`).

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};

/// The GPU attention: `q [tokens, heads * d]` against the layer's whole cache
/// `k, v [slots, kv_heads, d]` (f32), returning `[tokens, heads * d]`.
#[derive(Debug)]
pub struct GpuPagedAttention {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Dimensions per head (at most 256).
    pub head_dim: usize,
    /// `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Tokens (rows of `q`).
    tokens: usize,
    /// The index (see the module docs), on the device.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    index: Tensor,
}

/// The largest head the kernel takes (8 values per lane of a warp).
pub const MAX_HEAD_DIM: usize = 256;

impl GpuPagedAttention {
    /// The op for tokens that each attend to the positions whose cache slots `contexts` lists
    /// (one list per token, in row order), with the index uploaded to `device`.
    pub fn new(
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        contexts: &[&[u32]],
        device: &Device,
    ) -> candle_core::Result<Self> {
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) || head_dim == 0 || head_dim > MAX_HEAD_DIM {
            candle_core::bail!("GPU paged attention: {heads} heads, {kv_heads} key/value heads of {head_dim}");
        }
        if contexts.iter().any(|c| c.is_empty()) {
            candle_core::bail!("GPU paged attention: a token attends to no position");
        }
        let tokens = contexts.len();
        let slots: usize = contexts.iter().map(|c| c.len()).sum();
        let mut index = Vec::with_capacity(2 * tokens + slots);
        index.extend(contexts.iter().map(|c| c.len() as u32));
        let mut offset = 0u32;
        for c in contexts {
            index.push(offset);
            offset += c.len() as u32;
        }
        for c in contexts {
            index.extend_from_slice(c);
        }
        let len = index.len();
        Ok(Self {
            heads,
            kv_heads,
            head_dim,
            scale: (1.0 / (head_dim as f64).sqrt()) as f32,
            tokens,
            index: Tensor::from_vec(index, len, device)?,
        })
    }

    /// Tokens the op computes.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

impl CustomOp3 for GpuPagedAttention {
    fn name(&self) -> &'static str {
        "enclave-gpu-paged-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the GPU paged attention runs on CUDA devices only")
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        q_layout: &Layout,
        k: &candle_core::CudaStorage,
        k_layout: &Layout,
        v: &candle_core::CudaStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        use candle_core::Storage;

        let (heads, kv_heads, d) = (self.heads, self.kv_heads, self.head_dim);
        let contiguous = |layout: &Layout, what: &str| match layout.contiguous_offsets() {
            Some(offsets) => Ok(offsets),
            None => Err(candle_core::Error::Msg(format!(
                "GPU paged attention: {what} is not contiguous"
            ))),
        };
        let (q_start, q_end) = contiguous(q_layout, "q")?;
        let (k_start, k_end) = contiguous(k_layout, "k")?;
        let (v_start, v_end) = contiguous(v_layout, "v")?;
        if q_end - q_start != self.tokens * heads * d
            || k_end - k_start != v_end - v_start
            || (k_end - k_start) % (kv_heads * d) != 0
        {
            candle_core::bail!(
                "GPU paged attention: q has {} values for {} tokens of {heads} x {d}, k {}, v {}",
                q_end - q_start,
                self.tokens,
                k_end - k_start,
                v_end - v_start
            );
        }
        let device = q.device().clone();
        let (index_guard, index_layout) = self.index.storage_and_layout();
        let Storage::Cuda(index_storage) = &*index_guard else {
            candle_core::bail!("GPU paged attention: the index is not on the GPU");
        };
        let (index_start, _) = contiguous(index_layout, "the index")?;
        let index = index_storage.as_cuda_slice::<u32>()?.slice(index_start..);
        let q = q.as_cuda_slice::<f32>()?.slice(q_start..q_end);
        let k = k.as_cuda_slice::<f32>()?.slice(k_start..k_end);
        let v = v.as_cuda_slice::<f32>()?.slice(v_start..v_end);
        // Safety: every element is written by the kernel (each block writes its row).
        let out = unsafe { device.alloc::<f32>(self.tokens * heads * d)? };
        let func = device.get_or_load_custom_func("enclave_paged_attention_f32", "enclave_paged_attention", PTX)?;
        let config = LaunchConfig {
            grid_dim: (self.tokens as u32, heads as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (tokens, heads_u, kv_heads_u, d_u) = (self.tokens as u32, heads as u32, kv_heads as u32, d as u32);
        let mut builder = func.builder();
        builder.arg(&q);
        builder.arg(&k);
        builder.arg(&v);
        builder.arg(&out);
        builder.arg(&index);
        builder.arg(&tokens);
        builder.arg(&heads_u);
        builder.arg(&kv_heads_u);
        builder.arg(&d_u);
        builder.arg(&self.scale);
        // Safety: the arguments match the kernel's signature; the sizes were checked above
        // and the index was built by `new` for these tokens.
        unsafe { builder.launch(config) }.w()?;
        drop(builder);
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(out, device),
            Shape::from((self.tokens, heads * d)),
        ))
    }
}

/// The kernel, compiled by build.rs.
#[cfg(feature = "cuda")]
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/paged_attention.ptx"));
