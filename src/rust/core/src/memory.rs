//! How much memory this process can still get, and the check made before any allocation
//! whose size comes from a user or a file: Rust aborts the process (and R with it) when an
//! allocation fails, so a size that cannot be met must be refused before it is attempted,
//! as an error naming what asked for it.
use crate::error::{Error, Result};

/// Bytes this process can still allocate: the least of the system's available memory, the
/// room left under this process's address-space limit, and the room left in its cgroup.
/// None when none of them can be read (not Linux).
pub fn available_bytes() -> Option<u64> {
    [mem_available(), address_space_room(), cgroup_room()].into_iter().flatten().min()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `MemAvailable` from /proc/meminfo.
fn mem_available() -> Option<u64> {
    let text = read("/proc/meminfo")?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// RLIMIT_AS (`ulimit -v`) minus the address space already mapped.
fn address_space_room() -> Option<u64> {
    let limits = read("/proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft = line.split_whitespace().nth(3)?;
    let limit: u64 = soft.parse().ok()?; // "unlimited" does not parse: no limit
    let statm = read("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    Some(limit.saturating_sub(pages * 4096))
}

/// The cgroup's memory limit minus its usage (cgroup v2, else v1).
fn cgroup_room() -> Option<u64> {
    let pair = |max: &str, current: &str| -> Option<u64> {
        let limit: u64 = read(max)?.trim().parse().ok()?; // "max" does not parse: no limit
        let used: u64 = read(current)?.trim().parse().ok()?;
        Some(limit.saturating_sub(used))
    };
    pair("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current")
        .or_else(|| pair("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
}

/// Bytes of `count` values of `size` bytes, None when that overflows.
pub fn bytes(count: u64, size: u64) -> Option<u64> {
    count.checked_mul(size)
}

/// Values in a tensor of `shape`, None when the product overflows.
pub fn elements(shape: &[usize]) -> Option<u64> {
    shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d as u64))
}

fn human(b: u64) -> String {
    let gb = b as f64 / (1u64 << 30) as f64;
    if gb >= 1.0 {
        format!("{:.1} GB", gb)
    } else {
        format!("{:.0} MB", b as f64 / (1u64 << 20) as f64)
    }
}

pub(crate) const SMALL: u64 = 16 << 20;

/// Refuses to go on when `needed` bytes (None: beyond any machine's) exceed what this process
/// can get: a resource error naming `what`, the size, the memory available and `advice`.
pub fn check(what: &str, needed: Option<u64>, advice: &str) -> Result<()> {
    // Below 16 MB the check would read four /proc and cgroup files for an allocation that
    // cannot matter (the step check runs every batch): such sizes pass unread.
    if matches!(needed, Some(n) if n < SMALL) {
        return Ok(());
    }
    let available = available_bytes();
    let fits = match (needed, available) {
        (None, _) => false,
        (Some(n), Some(a)) => n <= a,
        // Unknown availability: refuse only what no machine could hold (over 1 TB).
        (Some(n), None) => n <= 1 << 40,
    };
    if fits {
        return Ok(());
    }
    let asked = needed.map(human).unwrap_or_else(|| "more than 2^64 bytes".into());
    let have = available.map(|a| format!("{} are available", human(a))).unwrap_or_else(|| "that is more than this machine has".into());
    Err(Error::Resource(format!("{} needs {} of memory but {}: {}", what, asked, have, advice)))
}

/// A buffer of `n` copies of `value`, allocated fallibly: the checks above read limits that
/// can change before the allocation (another process takes the memory, overcommit is off),
/// and a refused allocation must be an error naming `what`, not an abort of R.
pub fn filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| refused::<T>(n, what))?;
    v.resize(n, value);
    Ok(v)
}

/// The error for `n` values of `T` that the allocator refused.
fn refused<T>(n: usize, what: &str) -> Error {
    let asked = bytes(n as u64, std::mem::size_of::<T>() as u64).map(human).unwrap_or_else(|| "more than 2^64 bytes".into());
    Error::Resource(format!("{} needs {} of memory, which the system refused: free memory, or use smaller sizes", what, asked))
}

/// `n` zeros, or a resource error where the system refuses the memory: as [`filled`] with
/// 0, but from the allocator's zeroed memory (fresh pages from the OS for large blocks come
/// zero) instead of a write of every value on one thread: the staging copy of 60M values
/// spent a few tenths of a second writing zeros that it then overwrote, and Ctrl-C waited.
pub fn zeroed_f32(n: usize, what: &str) -> Result<Vec<f32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(n).map_err(|_| refused::<f32>(n, what))?;
    // SAFETY: the layout has a non-zero size (n > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut f32;
    if ptr.is_null() {
        return Err(refused::<f32>(n, what));
    }
    // SAFETY: allocated by the global allocator with the layout of n f32s, which Vec frees
    // with; every value is zero bits, a valid f32.
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// The same check against a GPU's free memory (`free` bytes on `gpu`, e.g. "/gpu:0"), where a
/// step's activations live when it runs there: CUDA reports a failed allocation as an error
/// rather than aborting, but only after partial work, and the message would not say what to do.
pub fn check_on_gpu(what: &str, needed: Option<u64>, gpu: &str, free: u64, advice: &str) -> Result<()> {
    match needed {
        Some(n) if n <= free => Ok(()),
        _ => {
            let asked = needed.map(human).unwrap_or_else(|| "more than 2^64 bytes".into());
            Err(Error::Resource(format!("{} on {} needs {} of GPU memory but {} are free: {}", what, gpu, asked, human(free), advice)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_allocation_is_a_resource_error() {
        assert_eq!(filled(3, 0.5f32, "three").unwrap(), vec![0.5; 3]);
        // More than any address space: try_reserve_exact refuses it (capacity overflow).
        let e = filled(usize::MAX / 4, 0f64, "a huge buffer").unwrap_err();
        assert_eq!(e.class(), "rustgpu_resource_error");
        assert!(e.to_string().starts_with("a huge buffer needs"), "{}", e);
    }

    #[test]
    fn zeroed_memory_is_zeros_and_a_refusal_is_a_resource_error() {
        assert_eq!(zeroed_f32(5, "five").unwrap(), vec![0f32; 5]);
        assert!(zeroed_f32(0, "none").unwrap().is_empty());
        // Beyond what a layout can describe, and beyond any machine's memory: both refused.
        for n in [usize::MAX / 2, usize::MAX / 16] {
            let e = zeroed_f32(n, "a huge buffer").unwrap_err();
            assert_eq!(e.class(), "rustgpu_resource_error");
            assert!(e.to_string().starts_with("a huge buffer needs"), "{}", e);
        }
    }

    #[test]
    fn a_gpu_check_compares_with_the_free_memory_given() {
        assert!(check_on_gpu("a step on 8 rows", Some(1 << 20), "/gpu:0", 2 << 20, "").is_ok());
        let e = check_on_gpu("a step on 4096 rows", Some(80 << 30), "/gpu:1", 70 << 30, "use a smaller batch_size").unwrap_err();
        assert_eq!(e.class(), "rustgpu_resource_error");
        assert_eq!(e.to_string(), "a step on 4096 rows on /gpu:1 needs 80.0 GB of GPU memory but 70.0 GB are free: use a smaller batch_size");
        assert!(check_on_gpu("x", None, "/gpu:0", u64::MAX, "").is_err());
    }

    #[test]
    fn refuses_sizes_beyond_memory_and_overflowing_products() {
        assert!(check("a small buffer", Some(1024), "").is_ok());
        let e = check("layer \"dense\"'s kernel", bytes(elements(&[1 << 40, 1 << 20]).unwrap(), 4), "use fewer units").unwrap_err();
        assert_eq!(e.class(), "rustgpu_resource_error");
        assert!(e.to_string().contains("layer \"dense\"'s kernel needs") && e.to_string().contains("use fewer units"), "{}", e);
        assert_eq!(elements(&[usize::MAX, 3]), None);
        assert!(check("x", None, "").is_err());
    }
}
