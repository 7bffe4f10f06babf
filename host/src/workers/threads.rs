//! The workers' own threads, behind the server's on the CPU.
//!
//! An acknowledgement is what a caller outside waits for; parsing, deliveries
//! and sends are not, but they are what moves messages on. On a machine with
//! few cores, both on the same threads meant a webhook's handler waited for a
//! core behind whatever the workers were doing. So the workers run on a
//! runtime of their own whose threads have a lower scheduling priority (a
//! higher `nice`): the kernel gives the server's threads a core first, and
//! the workers every cycle they leave — under a load that saturates the
//! machine, a proportional share (the kernel's weight for nice 5 is a third
//! of nice 0's), so deliveries slow down but never stop.

use std::future::Future;

use tokio::task::JoinSet;

/// How much lower the workers' threads are scheduled (Linux `nice`, 0–19).
pub const NICE: i32 = 5;

/// The workers' runtime; shut down (without waiting) when dropped, so it can
/// be dropped from async code.
#[derive(Debug)]
pub struct WorkerThreads(Option<tokio::runtime::Runtime>);

impl WorkerThreads {
    /// Starts `threads` worker threads at priority `nice` (0: as the server's).
    pub fn start(threads: usize, nice: i32) -> std::io::Result<WorkerThreads> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("patchbay-worker")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        Ok(WorkerThreads(Some(runtime)))
    }

    /// Runs `task` on the workers' threads, as one of `set`.
    pub fn spawn<F>(&self, set: &mut JoinSet<F::Output>, task: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.0.as_ref().expect("running until dropped");
        set.spawn_on(task, runtime.handle());
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority by `nice` (on Linux a thread's nice
/// value is its own). A refusal is only logged: the workers run regardless.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(error = %e, "cannot lower the workers' scheduling priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value.
    fn nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn workers_run_on_their_own_threads_at_a_lower_priority() {
        let workers = WorkerThreads::start(1, NICE).unwrap();
        let mut set = JoinSet::new();
        workers.spawn(&mut set, async {
            (std::thread::current().name().map(str::to_owned), nice())
        });
        let (name, worker_nice) = set.join_next().await.unwrap().unwrap();
        assert_eq!(name.as_deref(), Some("patchbay-worker"));
        // The kernel caps nice at 19.
        assert_eq!(worker_nice, (nice() + NICE).min(19));
        assert_ne!(std::thread::current().name(), Some("patchbay-worker"));
    }

    #[tokio::test]
    async fn nice_zero_keeps_the_servers_priority() {
        let workers = WorkerThreads::start(1, 0).unwrap();
        let mut set = JoinSet::new();
        workers.spawn(&mut set, async { nice() });
        assert_eq!(set.join_next().await.unwrap().unwrap(), nice());
    }
}
