//! Keras's HDF5 formats: the legacy (Keras 2) layout for weights and whole models, read and
//! written, plus reading tf-keras/Keras 3 `.weights.h5` files. Writes are atomic: a
//! temporary file in the same folder, renamed over the target only when complete. Also the
//! formats Keras's data sets ship in: numpy's `.npy` and Python pickles.
mod config;
mod h5;
pub mod npy;
pub mod numpy_random;
pub mod pickle;
pub mod tfevents;

pub use config::{model_config, model_from_config, training_config, TrainingConfig};
pub use h5::{load_model, load_optimizer_state, load_weights, save_model, save_weights, LoadedModel};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The SHA-256 of a file, in hex (Keras's `file_hash` for its data sets).
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::Io(format!("cannot read \"{}\": {}", path.display(), e)))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::Io(format!("cannot read \"{}\": {}", path.display(), e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{:02x}", b)).collect())
}

static FAIL_NEXT_WRITE: AtomicBool = AtomicBool::new(false);

/// Test hook: the next save fails midway (after part of the file is written).
pub fn inject_write_failure() {
    FAIL_NEXT_WRITE.store(true, Ordering::SeqCst);
}

fn injected_write_failure() -> Result<()> {
    if FAIL_NEXT_WRITE.swap(false, Ordering::SeqCst) {
        return Err(Error::Io("injected write failure (test hook)".into()));
    }
    Ok(())
}

/// Writes `path` through `write(temporary path)`, then renames; on any failure the old file
/// is untouched and the temporary file removed.
pub(crate) fn write_atomically(path: &Path, overwrite: bool, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(Error::Io(format!("\"{}\" already exists and `overwrite = FALSE`: choose another path or set `overwrite = TRUE`", path.display())));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::Io(format!("cannot write \"{}\": folder \"{}\" does not exist", path.display(), dir.display())));
    }
    let _held_until_replaced = lock_existing(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    let tmp = dir.join(format!(".{}.{}.{}.tmp", name, std::process::id(), rand::random::<u32>()));
    let result = write(&tmp).and_then(|_| std::fs::rename(&tmp, path).map_err(|e| Error::Io(format!("cannot write \"{}\": {}", path.display(), e))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Locks the file a save will replace, as libhdf5 (and so h5py and Keras) locks a file it has
/// open for writing: with flock(2). A file another process holds that way is not replaced
/// (that process's later writes would go to the unlinked old file and be lost): an error
/// naming it. The lock is held until the returned file is dropped, after the rename.
fn lock_existing(path: &Path) -> Result<Option<std::fs::File>> {
    // A target we cannot open for reading cannot be locked by this check: the rename decides.
    let Ok(file) = std::fs::File::open(path) else { return Ok(None) };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Io(format!(
            "\"{}\" is open in another program that has locked it (HDF5 file locking): close it there, or save to another path",
            path.display()
        ))),
        // Locks unsupported here (some network file systems): as libhdf5, go on without.
        Err(std::fs::TryLockError::Error(_)) => Ok(None),
    }
}
