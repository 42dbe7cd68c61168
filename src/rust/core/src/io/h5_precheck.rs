//! Checks of a file's bytes made before libhdf5 opens it, for corruptions that make libhdf5
//! itself loop forever (where it would hold its global lock, so that every later HDF5 call in
//! the R session waited too).
//!
//! A global heap collection ("GCOL", where variable-length strings such as `model_config` are
//! stored) whose free-space object has size 0: HDF5 2.2's `H5HG__cache_heap_deserialize`
//! advances by the object's size and spins on it (found by `examples/h5_fuzz.rs`, 1 in 2,000
//! mutations of rustgpu's files). Each collection found is walked as libhdf5 walks it; one
//! whose walk would not advance makes the file corrupt. Anything else odd is left to libhdf5,
//! which reports it as an error.
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

const MAGIC: &[u8; 4] = b"GCOL";
/// Collection header: magic, version, 3 reserved bytes, size (8 bytes: Keras files and ours use
/// 8-byte lengths).
const HEADER: usize = 16;
/// Object header: index (2), reference count (2), reserved (4), size (8).
const OBJECT_HEADER: usize = 16;
/// Collections larger than this are not walked (libhdf5's own are 4 KiB and up; ours and
/// Keras's small): a bound on what this check reads.
const MAX_COLLECTION: u64 = 1 << 24;

/// Whether the collection starting at `heap` (its bytes from the magic on) would make libhdf5's
/// walk stand still.
fn stalls(heap: &[u8]) -> bool {
    let mut p = HEADER;
    while p < heap.len() {
        if p + OBJECT_HEADER > heap.len() {
            return false; // the tail too small for an object: free space, the walk ends
        }
        let index = u16::from_le_bytes([heap[p], heap[p + 1]]);
        let size = u64::from_le_bytes(heap[p + 8..p + 16].try_into().expect("8 bytes"));
        let need = if index > 0 { (OBJECT_HEADER as u64).saturating_add(size.saturating_add(7) & !7) } else { size };
        if need == 0 {
            return true;
        }
        match usize::try_from(need).ok().and_then(|n| p.checked_add(n)) {
            Some(next) => p = next,
            None => return false, // beyond the collection: libhdf5 reports the overflow
        }
    }
    false
}

/// Refuses a file holding a global heap collection that would make libhdf5 loop forever.
pub fn check(path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::Io(format!("cannot read \"{}\": {}", path.display(), e)))?;
    let mut bytes = Vec::new();
    // Read in pieces, so that a file of any size is scanned without holding it all.
    let mut piece = vec![0u8; 1 << 20];
    let mut offset = 0u64; // file offset of bytes[0]
    loop {
        let n = file.read(&mut piece).map_err(|e| Error::Io(format!("cannot read \"{}\": {}", path.display(), e)))?;
        bytes.extend_from_slice(&piece[..n]);
        let done = n == 0;
        let mut i = 0;
        while i + HEADER <= bytes.len() {
            if &bytes[i..i + 4] == MAGIC && bytes[i + 4] == 1 {
                let size = u64::from_le_bytes(bytes[i + 8..i + 16].try_into().expect("8 bytes"));
                if (HEADER as u64..=MAX_COLLECTION).contains(&size) {
                    let end = i + size as usize;
                    if end > bytes.len() && !done {
                        break; // read on, then walk it whole
                    }
                    if stalls(&bytes[i..end.min(bytes.len())]) {
                        return Err(Error::Io(format!(
                            "\"{}\" is corrupt: its global heap at byte {} (where HDF5 keeps strings) would make libhdf5 loop forever",
                            path.display(),
                            offset + i as u64
                        )));
                    }
                }
            }
            i += 1;
        }
        if done {
            return Ok(());
        }
        // Keep the bytes not yet scanned (a collection or header cut by the piece's end).
        bytes.drain(..i);
        offset += i as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(objects: &[(u16, u64)], size: usize) -> Vec<u8> {
        let mut c = Vec::from(&MAGIC[..]);
        c.extend([1, 0, 0, 0]);
        c.extend((size as u64).to_le_bytes());
        for &(index, len) in objects {
            c.extend(index.to_le_bytes());
            c.extend([1, 0, 0, 0, 0, 0]);
            c.extend(len.to_le_bytes());
            c.extend(std::iter::repeat_n(b'x', if index > 0 { ((len + 7) & !7) as usize } else { 0 }));
        }
        let free = size - c.len();
        c.extend(0u16.to_le_bytes());
        c.extend([0; 6]);
        c.extend((free as u64).to_le_bytes());
        c.resize(size, 0);
        c
    }

    #[test]
    fn a_collection_whose_walk_stands_still_is_found_and_others_pass() {
        let good = collection(&[(1, 11), (2, 300)], 4096);
        assert!(!stalls(&good));
        let mut bad = good.clone();
        // The free-space object's size set to 0 (its header starts after the two objects).
        let free_at = HEADER + (OBJECT_HEADER + 16) + (OBJECT_HEADER + 304);
        bad[free_at + 8..free_at + 16].copy_from_slice(&0u64.to_le_bytes());
        assert!(stalls(&bad));

        let dir = std::env::temp_dir();
        let (ok_path, bad_path) = (dir.join(format!("gcol-ok-{}.bin", std::process::id())), dir.join(format!("gcol-bad-{}.bin", std::process::id())));
        // Cut by the 1 MiB pieces the file is read in: the collection straddles a boundary.
        let mut file = vec![7u8; (1 << 20) - 100];
        file.extend(&good);
        std::fs::write(&ok_path, &file).unwrap();
        file.truncate((1 << 20) - 100);
        file.extend(&bad);
        std::fs::write(&bad_path, &file).unwrap();
        assert!(check(&ok_path).is_ok());
        let err = check(&bad_path).unwrap_err().to_string();
        assert!(err.contains("would make libhdf5 loop forever") && err.contains(&format!("byte {}", (1 << 20) - 100)), "{}", err);
        let _ = std::fs::remove_file(ok_path);
        let _ = std::fs::remove_file(bad_path);
    }
}
