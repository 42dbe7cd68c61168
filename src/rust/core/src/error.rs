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
    /// A tensor kernel failed.
    #[error("tensor backend error: {0}")]
    Backend(#[from] candle_core::Error),
}

impl Error {
    /// The R condition class this error becomes (all also inherit `rustgpu_error`).
    pub fn class(&self) -> &'static str {
        match self {
            Error::Value(_) => "rustgpu_value_error",
            Error::Device(_) => "rustgpu_device_error",
            Error::Io(_) => "rustgpu_io_error",
            Error::State(_) => "rustgpu_state_error",
            Error::Backend(_) => "rustgpu_runtime_error",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `value_err!("units must be positive, got {}", n)` builds an `Error::Value`.
#[macro_export]
macro_rules! value_err {
    ($($arg:tt)*) => { $crate::error::Error::Value(format!($($arg)*)) };
}
