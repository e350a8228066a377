//! fragility-explorer: which parameters of a trained network are fragile, robust or
//! antifragile, and how adversarial attacks exploit them.

pub mod cli;
pub mod embedded;
pub mod engine;
pub mod export;
pub mod jobs;
pub mod render;
pub mod ui;

// mimalloc for everything built on the library (the app, tests, examples): it keeps freed
// tensor buffers for reuse where the system allocator hands large ones back to the kernel.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells the allocator to keep freed memory rather than return it to the kernel after
/// 10 ms: each engine step frees and reallocates the same large buffers, and re-faulting
/// their pages doubled the time of a sweep step (docs/PERFORMANCE.md).
pub fn tune_allocator() {
    // mimalloc v3's `mi_option_purge_delay`; -1 turns purging off.
    const MI_OPTION_PURGE_DELAY: i32 = 15;
    unsafe extern "C" {
        fn mi_option_set(option: i32, value: std::ffi::c_long);
    }
    // SAFETY: mi_option_set only stores an integer option; mimalloc is linked as the
    // global allocator above.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
