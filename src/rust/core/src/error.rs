//! One error type for the core; the binding maps each kind to an R condition class.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A bad argument or bad data from the caller.
    #[error("{0}")]
    Value(String),
    /// A device is missing, busy or failed (including a replica that failed mid-step).
    #[error("{0}")]
    Device(String),
    /// Reading or writing files.
    #[error("{0}")]
    Io(String),
    /// The model is not in a state that allows the call (e.g. fit before compile).
    #[error("{0}")]
    State(String),
    /// More memory asked for than this process can get (checked before allocating).
    #[error("{0}")]
    Resource(String),
    /// Another worker process of a multi-worker job failed or stopped.
    #[error("{0}")]
    Worker(String),
    /// The user asked to stop (Ctrl-C; see `cancel`); nothing was changed.
    #[error("interrupted by the user")]
    Interrupted,
    /// A tensor kernel failed.
    #[error("tensor backend error: {0}")]
    Backend(candle_core::Error),
}

impl From<candle_core::Error> for Error {
    /// Keeps candle's message and drops the backtrace it attaches when RUST_BACKTRACE is set
    /// (a stack dump is no help in an R error message).
    fn from(e: candle_core::Error) -> Self {
        let mut e = e;
        while let candle_core::Error::WithBacktrace { inner, .. } = e {
            e = *inner;
        }
        Error::Backend(e)
    }
}

impl Error {
    /// The R condition class this error becomes (all also inherit `rustgpu_error`).
    pub fn class(&self) -> &'static str {
        match self {
            Error::Value(_) => "rustgpu_value_error",
            Error::Device(_) => "rustgpu_device_error",
            Error::Io(_) => "rustgpu_io_error",
            Error::State(_) => "rustgpu_state_error",
            Error::Resource(_) => "rustgpu_resource_error",
            Error::Worker(_) => "rustgpu_worker_error",
            Error::Backend(_) => "rustgpu_runtime_error",
            Error::Interrupted => "rustgpu_interrupt",
        }
    }
}

impl Error {
    /// Whether a device ran out of memory (CUDA's allocation error, as candle reports it).
    pub fn is_out_of_memory(&self) -> bool {
        let text = self.to_string();
        text.contains("OUT_OF_MEMORY") || text.contains("out of memory")
    }
}

/// Rewrites a device's out-of-memory error into one that names the device and says what to
/// do; other errors pass through.
pub fn explain_out_of_memory(e: Error, device: &str) -> Error {
    if e.is_out_of_memory() && !matches!(e, Error::Device(ref m) if m.contains("batch_size")) {
        Error::Device(format!(
            "{} ran out of memory during this step ({}): use a smaller batch_size (or fewer, smaller layers); the model's weights are unchanged",
            device, e
        ))
    } else {
        e
    }
}

pub type Result<T> = std::result::Result<T, Error>;
