//! Seeing: the vision half of a vision-language model (Qwen3-VL), run beside the batched
//! language model.
//!
//! An image goes through three stages, each in its own file:
//! 1. [`preprocess`] (on the caller's thread, when the request is built): decode the PNG,
//!    resize it to the model's pixel budget in multiples of a merged patch, normalize, and cut
//!    it into patch rows in the order the encoder expects. Its token count is known from then
//!    on, so the prompt holds exactly that many image tokens.
//! 2. [`encoder`] (on the scheduler thread, once per image): the vision transformer turns the
//!    patches into one embedding per merged patch, plus the DeepStack features that are added
//!    to the language model's hidden states after its first layers. All images that a step
//!    needs are encoded in one call.
//! 3. [`positions`]: the multimodal rotary positions (M-RoPE) of the prompt: text advances
//!    one position per token on all three axes, an image's tokens sit on a grid (same time,
//!    their row, their column), and the text after an image continues after the grid's
//!    larger side. Generated tokens continue from the prompt's last position.
//!
//! The language model itself is the batched forward ([`crate::engine::run::forward`]): image
//! tokens are ordinary tokens there, whose embeddings are replaced by the image's features.

pub mod config;
pub mod encoder;
pub mod positions;
pub mod preprocess;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use config::{ImageProcessing, VisionConfig, VisionTokens};
pub use encoder::{ImageFeatures, VisionEncoder};
pub use positions::{mrope_positions, MropeSection};
pub use preprocess::{prepare_image, PreparedImage};
