//! Running a loaded model, for as long as it is loaded: the [`scheduler`] thread that owns the
//! paged [`kv`] cache and batches every request into one [`forward`] step, and what each step
//! needs per sequence (sampling, stop strings, incremental detokenizing, counters). Requests
//! and their events are the engine's whole interface ([`request`]). Embedding models run in
//! [`embed`], behind chat in the compute order of [`priority`].

pub(crate) mod detokenize;
pub mod embed;
pub mod forward;
pub mod kv;
pub mod priority;
pub(crate) mod request;
pub(crate) mod sampling;
pub mod scheduler;
pub(crate) mod stats;
pub(crate) mod stop;
pub mod vision;
