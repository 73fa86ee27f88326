//! Scheduling policy for the idle watcher, the one thread that must never take the
//! CPU from a worker in the middle of a request.
//!
//! Every readiness event wakes the watcher, and under the default policy a wake-up
//! preempts the running worker at once: on one CPU at 64 keep-alive connections that
//! was a switch to the watcher and back for every four requests (0.45 context switches
//! and 0.24 `epoll_wait`s per request), each wake handing over a handful of
//! connections. As a `SCHED_BATCH` thread it is never preempted *for*: it runs when a
//! worker blocks (an empty queue, a linger read) or its time slice ends, and then hands
//! over everything that became ready meanwhile in one pass (about 50 connections per
//! `epoll_wait`; 0.03 context switches per request). Measured with wrk on CPU 1 and
//! the server pinned to CPU 0, 1 KiB at 64 connections: 70.2k and 79.8k req/s before,
//! 95.5k and 103.4k after, p99 unchanged (3.8–5.4 ms before, 4.0 ms after). With a
//! CPU to spare the watcher runs at once, as before: the policy only decides who
//! waits when the CPU is taken.

/// Makes the calling thread a `SCHED_BATCH` thread (see the module doc). Any
/// unprivileged thread may do this; where it is refused (a seccomp profile), the
/// thread keeps the default policy, which is only slower.
pub fn prefer_batch(thread: &str) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for the duration of the call; pid 0
    // names the calling thread, and no memory is handed to the kernel to keep.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        log::debug!("{thread}: SCHED_BATCH refused: {}", std::io::Error::last_os_error());
    }
}
