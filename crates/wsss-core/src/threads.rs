//! Keeping candle's CPU worker threads from competing for the cores.
//!
//! candle 0.11 runs a CPU forward on two sets of threads: matrix products on a rayon pool
//! of n threads (n = `RAYON_NUM_THREADS`, else the physical cores), element-wise ops of 64 Ki
//! elements and more on its own "barrier pool" of n − 1 workers plus the calling thread.
//! After each element-wise op a barrier worker busy-waits for the next one, 25 000 spins by
//! default (`CANDLE_BARRIER_POOL_SPIN_LIMIT`), and rayon's workers do the same after each
//! product: with n cores, up to 2n − 1 threads want them, and the spinning ones slow the
//! working ones. `perf` on the GETAM bench (DeiT-S/16, 224², 2 threads) put 16% of all
//! samples in the barrier workers' spin loop.
//!
//! Two remedies, both used by the `wsss` binary and the CAM benches:
//! - [`park_idle_workers`] sets the spin limit to 0, so an idle barrier worker sleeps at
//!   once (waking it costs a futex call, small beside an op of 64 Ki elements);
//! - [`on_compute_pool`] runs a computation on a thread of candle's own rayon pool, so the
//!   products' helpers and the calling thread are the same n threads.
//!
//! Criterion medians on this 2-core machine (DeiT-S/16, 224², K = 3, `RAYON_NUM_THREADS=2`,
//! two runs each): ViT forward 157/165 ms by default, 102/119 ms with both; GETAM (batched)
//! 315/309 ms by default, 202/230 ms with both.

use std::ffi::OsStr;

/// The variable candle reads once, when it starts its barrier pool.
pub const SPIN_LIMIT_VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// The spin limit [`park_idle_workers`] sets: park at once.
const SPIN_LIMIT: &str = "0";

/// The value to give [`SPIN_LIMIT_VAR`], given its current value: `Some("0")` when it is
/// unset, `None` (leave it) when the user chose one.
pub fn spin_limit_to_set(current: Option<&OsStr>) -> Option<&'static str> {
    match current {
        None => Some(SPIN_LIMIT),
        Some(_) => None,
    }
}

/// Makes candle's idle element-wise workers sleep instead of spinning (see the module
/// docs), unless `CANDLE_BARRIER_POOL_SPIN_LIMIT` is already set; returns true when it set
/// the variable.
///
/// It writes the process environment, so call it first thing in `main`, before any thread
/// starts and before the first candle op (candle reads the variable once).
///
/// ```
/// let set = wsss_core::threads::park_idle_workers();
/// assert!(std::env::var_os(wsss_core::threads::SPIN_LIMIT_VAR).is_some());
/// # let _ = set;
/// ```
pub fn park_idle_workers() -> bool {
    match spin_limit_to_set(std::env::var_os(SPIN_LIMIT_VAR).as_deref()) {
        Some(value) => {
            std::env::set_var(SPIN_LIMIT_VAR, value);
            true
        }
        None => false,
    }
}

/// Runs `f` on a thread of candle's CPU rayon pool (`Device::Cpu.with_context`), so that
/// the matrix products it starts share that pool's n threads with it instead of adding n
/// more; returns what `f` returns. Nested calls run `f` in place.
///
/// ```
/// let n = wsss_core::threads::on_compute_pool(|| rayon::current_num_threads());
/// assert!(n >= 1);
/// ```
pub fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    candle_core::Device::Cpu.with_context(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unset_limit_is_changed() {
        assert_eq!(spin_limit_to_set(None), Some("0"));
        assert_eq!(spin_limit_to_set(Some(OsStr::new("25000"))), None);
        assert_eq!(spin_limit_to_set(Some(OsStr::new(""))), None);
    }

    #[test]
    fn the_compute_pool_is_a_rayon_pool() {
        let inside = on_compute_pool(|| rayon::current_thread_index().is_some());
        assert!(inside, "f did not run on a pool thread");
        assert_eq!(on_compute_pool(|| on_compute_pool(|| 7)), 7);
    }
}
