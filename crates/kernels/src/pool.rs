//! The worker threads of the kernels' parallel loops (matrix products, attention, activation
//! quantization, norms): a loop's items are taken in chunks from a shared cursor by the caller
//! and by every worker that joins in time, and the caller never waits for a worker that did
//! not join.
//!
//! candle's barrier pool, which these loops used before, ends every loop by waiting for every
//! worker to acknowledge it, started or not. When a worker's core is taken by another thread
//! (the HTTP server's, the client's, a profiler), a loop whose items the caller has long
//! finished alone waits until the scheduler runs that worker again; a decode step runs some
//! 300 loops, and on two cores a second process made them several times slower.
//!
//! Here the pool's state is one word: the loop's generation, a "closed" bit and the number of
//! workers inside the loop. A worker enters by incrementing that number while the loop is open
//! (one compare-and-swap on the exact word, so never into another generation); the caller
//! closes the loop when the cursor runs out and then waits for the workers inside, which are
//! running their last chunk. A worker that wakes late finds the loop closed and goes back to
//! waiting. Idle workers spin for [`SPIN`] and then park, so that an idle server leaves its
//! cores alone; the caller unparks them when it opens a loop.

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle worker spins (watching for the next loop) before it parks: about the gap
/// between two loops of a decode step, so that a running model keeps its workers awake.
const SPIN: Duration = Duration::from_micros(200);
/// The "closed" bit of the state word.
const CLOSED: u64 = 1 << 31;
/// The bits of the state word that count the workers inside the loop.
const INSIDE: u64 = CLOSED - 1;

/// The generation part of a state word.
fn generation(state: u64) -> u64 {
    state >> 32
}

/// One parallel loop, on the caller's stack for as long as any worker is inside it.
struct Job<'a> {
    /// The next item to take.
    cursor: AtomicUsize,
    /// Items in the loop.
    items: usize,
    /// Items taken at once.
    chunk: usize,
    /// The loop's body.
    body: &'a (dyn Fn(Range<usize>) + Sync),
    /// The first panic of a worker, raised again in the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    /// Takes and runs chunks until none is left.
    fn run(&self) {
        loop {
            let start = self.cursor.fetch_add(self.chunk, Ordering::Relaxed);
            if start >= self.items {
                return;
            }
            (self.body)(start..self.items.min(start + self.chunk));
        }
    }
}

/// What the caller and the workers share.
struct Shared {
    /// Generation (upper 32 bits), [`CLOSED`], workers inside ([`INSIDE`]).
    state: AtomicU64,
    /// The open loop's [`Job`] (valid while a worker counted inside it reads it).
    job: AtomicPtr<Job<'static>>,
    /// The workers, to unpark them.
    workers: OnceLock<Vec<Thread>>,
}

/// The pool: `threads - 1` workers beside the calling thread.
struct Pool {
    /// State shared with the workers.
    shared: &'static Shared,
    /// One loop at a time.
    calls: Mutex<()>,
    /// Whether there are workers at all.
    parallel: bool,
}

thread_local! {
    /// Set on workers, and on a caller while its loop runs: a loop started from inside a loop
    /// runs inline.
    static IN_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// The process's pool, with as many threads (the caller included) as candle uses.
fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            workers: OnceLock::new(),
        }));
        let threads = candle_core::utils::get_num_threads().max(1);
        let workers: Vec<Thread> = (1..threads)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("kernels-{i}"))
                    .spawn(move || work(shared))
                    .ok()
                    .map(|handle| handle.thread().clone())
            })
            .collect();
        let parallel = !workers.is_empty();
        // Set once, right here: the pool is built once.
        let _ = shared.workers.set(workers);
        Pool {
            shared,
            calls: Mutex::new(()),
            parallel,
        }
    })
}

/// Threads that run a loop: the workers and the caller.
pub(crate) fn threads() -> usize {
    pool().shared.workers.get().map_or(1, |w| w.len() + 1)
}

/// Runs `body` over `0..items` in chunks, on the calling thread and on the workers that join
/// in time; returns when every item is done. A panic in `body` is raised again here.
pub(crate) fn execute_chunked(items: usize, body: impl Fn(Range<usize>) + Sync) {
    if items == 0 {
        return;
    }
    let pool = pool();
    if IN_LOOP.with(Cell::get) || !pool.parallel {
        body(0..items);
        return;
    }
    // A poisoned lock only means an earlier loop panicked; the pool's state is whole.
    let _call = pool.calls.lock().unwrap_or_else(|e| e.into_inner());
    let job = Job {
        cursor: AtomicUsize::new(0),
        items,
        // About eight chunks a thread: late joiners find work, early finishers take more.
        chunk: items.div_ceil(threads() * 8).max(1),
        body: &body,
        panic: Mutex::new(None),
    };
    let shared = pool.shared;
    // The lifetime is erased for the workers' sake: they read the job only while counted
    // inside the loop, and this function returns only once none is inside.
    let erased = (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut();
    shared.job.store(erased, Ordering::Release);
    let next = generation(shared.state.load(Ordering::Relaxed)).wrapping_add(1) & 0xFFFF_FFFF;
    shared.state.store(next << 32, Ordering::Release);
    for worker in shared.workers.get().into_iter().flatten() {
        worker.unpark();
    }
    IN_LOOP.with(|f| f.set(true));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
    IN_LOOP.with(|f| f.set(false));
    // Close the loop, then wait for the workers inside (each on its last chunk).
    shared.state.fetch_or(CLOSED, Ordering::AcqRel);
    while shared.state.load(Ordering::Acquire) & INSIDE != 0 {
        std::hint::spin_loop();
    }
    shared.job.store(std::ptr::null_mut(), Ordering::Relaxed);
    if let Err(payload) = caught {
        std::panic::resume_unwind(payload);
    }
    let worker_panic = job.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(payload) = worker_panic {
        std::panic::resume_unwind(payload);
    }
}

/// A worker: waits for a loop to open, joins it if it is still open, runs chunks, leaves.
fn work(shared: &'static Shared) {
    IN_LOOP.with(|f| f.set(true));
    let mut seen = 0u64;
    loop {
        let state = wait_for_next(shared, seen);
        seen = generation(state);
        if join(shared, seen) {
            // SAFETY: counted inside an open loop, whose caller keeps the job alive (and
            // `job` pointing at it) until no worker is inside.
            let job = unsafe { &*shared.job.load(Ordering::Acquire) };
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run())) {
                let mut first = job.panic.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(payload);
            }
            shared.state.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Spins (then parks) until the generation differs from `seen`; returns the state word.
fn wait_for_next(shared: &Shared, seen: u64) -> u64 {
    let mut since = Instant::now();
    let mut spins = 0u32;
    loop {
        let state = shared.state.load(Ordering::Acquire);
        if generation(state) != seen {
            return state;
        }
        spins = spins.wrapping_add(1);
        // The clock is read every 64 spins: cheap next to the spinning itself.
        if spins.is_multiple_of(64) && since.elapsed() > SPIN {
            // An unpark between the check above and this park makes it return at once.
            std::thread::park();
            since = Instant::now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Enters loop `generation` if it is still open.
fn join(shared: &Shared, generation_seen: u64) -> bool {
    let mut state = shared.state.load(Ordering::Acquire);
    loop {
        if generation(state) != generation_seen || state & CLOSED != 0 {
            return false;
        }
        match shared
            .state
            .compare_exchange_weak(state, state + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return true,
            Err(now) => state = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    #[test]
    fn every_item_runs_exactly_once() {
        for items in [1, 2, 7, 64, 1000] {
            let counts: Vec<AtomicU32> = (0..items).map(|_| AtomicU32::new(0)).collect();
            for _ in 0..50 {
                execute_chunked(items, |range| {
                    for i in range {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 50), "{items} items");
        }
    }

    #[test]
    fn a_loop_inside_a_loop_runs_inline() {
        let total = AtomicUsize::new(0);
        execute_chunked(8, |outer| {
            for _ in outer {
                execute_chunked(4, |inner| {
                    total.fetch_add(inner.len(), Ordering::Relaxed);
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 32);
    }

    #[test]
    fn a_panic_in_the_body_reaches_the_caller_and_the_pool_goes_on() {
        let result = std::panic::catch_unwind(|| {
            execute_chunked(100, |range| {
                if range.contains(&57) {
                    panic!("item 57");
                }
            })
        });
        assert!(result.is_err());
        let done = AtomicUsize::new(0);
        execute_chunked(100, |range| {
            done.fetch_add(range.len(), Ordering::Relaxed);
        });
        assert_eq!(done.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn loops_from_several_threads_run_one_after_another() {
        // Loops from two threads at once: the second waits for the first (one loop at a
        // time), and both finish with every item done.
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..100 {
                        execute_chunked(16, |range| {
                            done.fetch_add(range.len(), Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::Relaxed), 2 * 100 * 16);
    }
}
