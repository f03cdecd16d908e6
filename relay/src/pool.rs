//! The worker threads that serve requests (UDP) and connections (TCP).
//!
//! Threads are made as needed and kept: a new thread per request cost
//! about a millisecond per exchange on a busy machine (its creation and
//! first scheduling), five times the relay's own work. A job is handed to
//! an idle worker through a channel; when none is idle, one more is
//! started. How many jobs run at once is bounded by the caller's slots
//! (`state::Shared::slot`), so the workers never outnumber
//! `max_concurrent` (plus the rare race of two submitters each starting
//! one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use log::warn;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Workers and their queue.
pub struct Pool {
    tx: Mutex<Sender<Job>>,
    rx: Arc<Mutex<Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
    workers: AtomicUsize,
}

/// Workers never exceed this, whatever the configuration.
const MAX_WORKERS: usize = 4096;

impl Pool {
    /// An empty pool (workers start with the first jobs).
    pub fn new() -> Pool {
        let (tx, rx) = channel();
        Pool {
            tx: Mutex::new(tx),
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(AtomicUsize::new(0)),
            workers: AtomicUsize::new(0),
        }
    }

    /// Runs `job` on a worker; false when it cannot be queued.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> bool {
        if self.idle.load(Ordering::Acquire) == 0
            && self.workers.load(Ordering::Acquire) < MAX_WORKERS
        {
            self.spawn();
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.send(Box::new(job)).is_ok()
    }

    fn spawn(&self) {
        let rx = self.rx.clone();
        let idle = self.idle.clone();
        let spawned = std::thread::Builder::new()
            .name("relay-worker".into())
            .spawn(move || loop {
                idle.fetch_add(1, Ordering::AcqRel);
                let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                idle.fetch_sub(1, Ordering::AcqRel);
                match job {
                    // A panic ends the job (its slot and socket are
                    // dropped while unwinding), not the worker.
                    Ok(job) => {
                        let _ = krb5_wss::panic::guard("a relay worker", job);
                    }
                    Err(_) => return,
                }
            });
        match spawned {
            Ok(_) => {
                self.workers.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => warn!("cannot start a worker thread: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::mpsc::sync_channel;

    #[test]
    fn workers_are_reused() {
        let pool = Pool::new();
        let (tx, rx) = sync_channel(0);
        for i in 0..20 {
            let tx = tx.clone();
            assert!(pool.run(move || tx.send(i).unwrap()));
            assert_eq!(rx.recv().unwrap(), i);
            // Let the worker go back to waiting.
            while pool.idle.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(pool.workers.load(Ordering::Acquire), 1);
    }

    #[test]
    fn a_panicking_job_keeps_its_worker() {
        let pool = Pool::new();
        let (tx, rx) = sync_channel(0);
        assert!(pool.run(move || {
            tx.send(()).unwrap();
            panic!("test panic");
        }));
        rx.recv().unwrap();
        // The only worker comes back to wait after the panic.
        while pool.idle.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        assert_eq!(pool.workers.load(Ordering::Acquire), 1);
    }
}
