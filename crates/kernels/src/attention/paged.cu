// Batch-wide causal attention over the paged KV cache on a CUDA GPU: one launch per layer for
// every single-token (decode) entry of the batch, reading K and V in place through each
// sequence's slot list (see gpu.rs for the index layout).
//
// One thread block per (token, query head), four warps. Each warp walks its share of the
// context positions with an online softmax (running maximum and sum, output accumulated in
// registers: head_dim / 32 values per lane), one position per step: the 32 lanes read the
// key row together (coalesced), reduce the dot product with shuffles, then read the value
// row. The warps' partial results are merged through shared memory at the end.

#define WARPS 4
#define MAX_PER_LANE 8  // head_dim up to 256

extern "C" __global__ void enclave_paged_attention_f32(
    const float* __restrict__ q,        // [tokens, heads, head_dim]
    const float* __restrict__ k_cache,  // [slots, kv_heads, head_dim]
    const float* __restrict__ v_cache,  // [slots, kv_heads, head_dim]
    float* __restrict__ out,            // [tokens, heads, head_dim]
    const unsigned int* __restrict__ index,
    unsigned int tokens,
    unsigned int heads,
    unsigned int kv_heads,
    unsigned int head_dim,
    float scale) {
  const unsigned int token = blockIdx.x;
  const unsigned int head = blockIdx.y;
  const unsigned int lane = threadIdx.x & 31;
  const unsigned int warp = threadIdx.x >> 5;
  const unsigned int kv_head = head / (heads / kv_heads);
  // index: [tokens] context length, [tokens] first entry in the slot list, then the slots.
  const unsigned int ctx = index[token];
  const unsigned int* slots = index + 2 * tokens + index[tokens + token];

  float qv[MAX_PER_LANE];
  float acc[MAX_PER_LANE];
  const float* q_row = q + ((size_t)token * heads + head) * head_dim;
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; i++) {
    unsigned int d = lane + 32 * i;
    qv[i] = d < head_dim ? q_row[d] * scale : 0.0f;
    acc[i] = 0.0f;
  }
  float running_max = -INFINITY;
  float running_sum = 0.0f;
  for (unsigned int p = warp; p < ctx; p += WARPS) {
    const size_t row = ((size_t)slots[p] * kv_heads + kv_head) * head_dim;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; i++) {
      unsigned int d = lane + 32 * i;
      if (d < head_dim) s += qv[i] * k_cache[row + d];
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffff, s, offset);
    const float new_max = fmaxf(running_max, s);
    const float correction = __expf(running_max - new_max);
    const float weight = __expf(s - new_max);
    running_sum = running_sum * correction + weight;
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; i++) {
      unsigned int d = lane + 32 * i;
      if (d < head_dim) acc[i] = acc[i] * correction + weight * v_cache[row + d];
    }
    running_max = new_max;
  }

  __shared__ float warp_max[WARPS];
  __shared__ float warp_sum[WARPS];
  __shared__ float warp_acc[WARPS][32 * MAX_PER_LANE];
  if (lane == 0) {
    warp_max[warp] = running_max;
    warp_sum[warp] = running_sum;
  }
#pragma unroll
  for (int i = 0; i < MAX_PER_LANE; i++) warp_acc[warp][lane + 32 * i] = acc[i];
  __syncthreads();

  float total_max = -INFINITY;
#pragma unroll
  for (int w = 0; w < WARPS; w++) total_max = fmaxf(total_max, warp_max[w]);
  float total_sum = 0.0f;
  float factor[WARPS];
#pragma unroll
  for (int w = 0; w < WARPS; w++) {
    // A warp that saw no position has max -inf and sum 0: its factor is 0.
    factor[w] = warp_sum[w] > 0.0f ? __expf(warp_max[w] - total_max) : 0.0f;
    total_sum += warp_sum[w] * factor[w];
  }
  float* out_row = out + ((size_t)token * heads + head) * head_dim;
  for (unsigned int d = threadIdx.x; d < head_dim; d += 32 * WARPS) {
    float value = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) value += warp_acc[w][d] * factor[w];
    out_row[d] = value / total_sum;
  }
}
