//! rustgpu-core: Keras-style models on candle with single-machine data parallelism.
//! Pure Rust; the R package's binding crate converts R values and forwards here.
pub mod activation;
pub mod cancel;
pub mod collective;
pub mod constraint;
pub mod device;
pub mod error;
pub mod fork;
pub mod gradients;
pub mod image;
pub mod initializer;
pub mod io;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod random;
pub mod regularizer;
pub mod row_split;
pub mod shape;
pub mod tensor;
pub mod trace;
pub mod train;
pub mod workers;

#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
pub use model::Model;
pub use tensor::HostTensor;
pub use train::{BatchStats, Compiled, Executor};
