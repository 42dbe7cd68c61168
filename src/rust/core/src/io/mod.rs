//! Keras's HDF5 formats: the legacy (Keras 2) layout for weights and whole models, read and
//! written, plus reading tf-keras/Keras 3 `.weights.h5` files. Writes are atomic: a
//! temporary file in the same folder, renamed over the target only when complete. Also the
//! formats Keras's data sets ship in: numpy's `.npy` and Python pickles.
mod config;
mod h5;
mod h5_precheck;
pub mod npy;
pub mod numpy_random;
pub mod pickle;
pub mod tfevents;

pub use config::{model_config, model_from_config, training_config, TrainingConfig};
pub use h5::{load_model, load_optimizer_state, load_weights, restore_optimizer_state, save_model, save_weights, LoadedModel, SavedOptimizerState};

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
/// is untouched and the temporary file removed. A symlink is followed (the file it points to
/// is replaced, beside which the temporary file is written); anything at `path` that is not
/// a regular file (a folder, FIFO or device) is refused; the replaced file's permissions are
/// kept (and its owner, where allowed); with `overwrite = FALSE` the last step is exclusive
/// (link(2), which fails if the name exists), so a file created meanwhile is never replaced.
pub(crate) fn write_atomically(path: &Path, overwrite: bool, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let target = resolve_symlink(path)?;
    let existing = std::fs::metadata(&target).ok();
    if existing.is_some() && !overwrite {
        return Err(Error::Io(format!("\"{}\" already exists and `overwrite = FALSE`: choose another path or set `overwrite = TRUE`", path.display())));
    }
    if let Some(meta) = &existing {
        if !meta.is_file() {
            return Err(Error::Io(format!("\"{}\" is not a regular file (a folder, FIFO or device): save to a file name", path.display())));
        }
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::Io(format!("cannot write \"{}\": folder \"{}\" does not exist", path.display(), dir.display())));
    }
    let _held_until_replaced = lock_existing(&target)?;
    // The temporary name must stay within the file system's 255 bytes when the target's own
    // name is long (a legal 250-byte name was refused): at most 200 bytes of it are kept.
    let name = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    let short: String = name.char_indices().take_while(|(i, c)| i + c.len_utf8() <= 200).map(|(_, c)| c).collect();
    let tmp = dir.join(format!(".{}.{}.{}.tmp", short, std::process::id(), rand::random::<u32>()));
    let cannot = |e: std::io::Error| Error::Io(format!("cannot write \"{}\": {}", path.display(), e));
    let result = write(&tmp).and_then(|_| {
        if let Some(meta) = &existing {
            keep_permissions(&tmp, meta);
        }
        if overwrite {
            std::fs::rename(&tmp, &target).map_err(cannot)
        } else {
            match std::fs::hard_link(&tmp, &target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(Error::Io(format!("\"{}\" was created by someone else while saving, and `overwrite = FALSE`: it is left as it is", path.display())))
                }
                Err(e) => Err(cannot(e)),
            }
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The file a path names, following symlinks (users keep `current.h5 -> runs/run42.h5`); a
/// dangling link names the file it would point to.
fn resolve_symlink(path: &Path) -> Result<PathBuf> {
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|e| Error::Io(format!("cannot read the link \"{}\": {}", target.display(), e)))?;
                target = match target.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(target),
        }
    }
    Err(Error::Io(format!("\"{}\" is a chain of more than 40 symlinks (a loop?)", path.display())))
}

/// The replaced file's mode and owner for the new one (the owner only where this process may
/// set it: root, or the same owner).
fn keep_permissions(tmp: &Path, old: &std::fs::Metadata) {
    let _ = std::fs::set_permissions(tmp, old.permissions());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(tmp, Some(old.uid()), Some(old.gid()));
    }
}

/// A file to read: it must exist and be a regular file (reading a FIFO or a device would
/// block, or never end).
pub fn check_readable_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|_| Error::Io(format!("file \"{}\" does not exist", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Io(format!("\"{}\" is not a regular file (a folder, FIFO or device): give the path of a file", path.display())));
    }
    Ok(())
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
