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

/// Settings of the allocator and of candle's thread pool for engine work; call first
/// in `main`, before any thread starts (it sets an environment variable).
///
/// - The allocator keeps freed memory rather than returning it to the kernel after
///   10 ms: each engine step frees and reallocates the same large buffers, and re-faulting
///   their pages doubled the time of a sweep step.
/// - candle's element-wise workers spin 25,000 times waiting for the next op before they
///   park; between ops they then take a core from the rayon threads running our kernels
///   (a quarter of a ResNet-18 FGSM step's samples on 2 cores). 5,000 spins gave ResNet-18
///   most of the gain of 1,000 without the small CNN's loss (its ops are short, and
///   workers that park answer late). A value the user set is kept.
///
/// Both measured in docs/PERFORMANCE.md.
pub fn tune_runtime() {
    // mimalloc v3's `mi_option_purge_delay`; -1 turns purging off.
    const MI_OPTION_PURGE_DELAY: i32 = 15;
    const SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    unsafe extern "C" {
        fn mi_option_set(option: i32, value: std::ffi::c_long);
    }
    // SAFETY: mi_option_set only stores an integer option; mimalloc is linked as the
    // global allocator above.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    if std::env::var_os(SPIN_LIMIT).is_none() {
        // SAFETY: called at the start of main, before any other thread reads the environment.
        unsafe { std::env::set_var(SPIN_LIMIT, "5000") }
    }
}
