//! Keeping freed memory in the process (glibc's malloc).
//!
//! The CPU kernels allocate and free buffers of megabytes on every call (the K·N planes of
//! a CRF loss and its gradient, candle's tensors). By default glibc serves such blocks with
//! `mmap` and gives freed memory back to the kernel (`munmap`, heap trimming), so the next
//! call takes a page fault and a page clear on every 4 KiB it touches. Measured on the
//! dense CRF loss bench (320×320, K = 21, 1 thread, 2-core AMD EPYC, criterion medians):
//! 98 → 64 ms at scale 1 and 51 → 23 ms at scale 0.5 once freed memory is kept, with
//! a third of the default run's time in the kernel's page-fault path (`perf`).
//!
//! [`retain_freed_memory`] is what the `wsss` binary and the benches call first thing;
//! library users may call it too. The price: the process keeps up to its peak heap
//! resident instead of shrinking between calls.

/// Blocks below this are served from the heap, not by `mmap`.
const MMAP_THRESHOLD: i32 = 256 << 20;
/// Free memory at the top of the heap kept before trimming.
const TRIM_THRESHOLD: i32 = 1 << 30;
/// Extra memory requested whenever the heap grows.
const TOP_PAD: i32 = 64 << 20;

/// Tells glibc's malloc to keep freed memory for reuse (see the module docs); returns true
/// when every setting was applied, false on other C libraries (nothing to do there).
///
/// Call it once, early (before threads start allocating); later calls change nothing.
///
/// ```
/// // Before the first large allocation of the program.
/// let applied = wsss_core::malloc::retain_freed_memory();
/// assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        [
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (libc::M_TOP_PAD, TOP_PAD),
        ]
        .into_iter()
        .all(|(param, value)| set(param, value))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// One `mallopt` call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(param: i32, value: i32) -> bool {
    // SAFETY: `mallopt` only changes malloc's tuning parameters under malloc's own lock;
    // it takes no pointers and leaves every existing allocation valid.
    unsafe { libc::mallopt(param, value) == 1 }
}
