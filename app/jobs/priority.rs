//! Compute runs below the window's priority. On a machine with few cores a long job holds
//! every core; without a GPU the window is drawn by the CPU too (Mesa's llvmpipe), and at
//! equal priority each frame waits for the job's threads. A lower priority costs the job
//! nothing when the window is idle.

/// How much lower than the UI (a Unix nice increment).
const NICE: i32 = 10;

/// Lowers the calling thread's priority (Linux: the nice value is per thread, and threads
/// it starts inherit it). Elsewhere a no-op.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; a failure (not permitted)
    // only leaves the priority as it was.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + NICE).min(19));
    }
}

/// Lowers the calling thread and starts rayon's shared pool (the kernels' and gemm's
/// threads) at the same priority, unless something already started it.
pub fn lower_compute() {
    lower_this_thread();
    rayon::ThreadPoolBuilder::new().start_handler(|_| lower_this_thread()).build_global().ok();
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_lowered_thread_runs_at_a_higher_nice_value_and_others_do_not() {
        let own = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = own();
        let lowered = std::thread::spawn(move || {
            super::lower_this_thread();
            own()
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, (before + super::NICE).min(19));
        assert_eq!(own(), before, "only the calling thread changes");
    }
}
