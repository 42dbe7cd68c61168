//! Data parallelism: persistent workers, one per device, that run replicas' sub-batches
//! concurrently; batch splitting; output merging and gradient reduction on the merge device.
//! A device's worker is created the first time a parallel model uses the device and is
//! shared by every parallel model on it, so making and dropping models starts no threads.
use crate::device::{DeviceInfo, DeviceKind};
use crate::error::{Error, Result};
use crate::row_split::{RowSplit, SplitMode};
use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Splits `rows` into `parts` contiguous, order-preserving ranges whose sizes differ by at
/// most one; when there are fewer rows than parts the last ranges are empty.
pub fn split_batch(rows: usize, parts: usize) -> Vec<Range<usize>> {
    let base = rows / parts;
    let extra = rows % parts;
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Where outputs are concatenated and gradients reduced (`cpu_merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeDevice {
    Cpu,
    FirstReplica,
}

/// What a device's worker thread has: the device (and, around each task, its own thread
/// pool: the device's thread budget).
pub struct WorkerContext {
    pub info: DeviceInfo,
    pub device: candle_core::Device,
}

type Task = Box<dyn FnOnce(&WorkerContext) + Send>;

/// When a replica ran a task; kept to show (and test) that replicas overlap in time.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    pub replica: usize,
    pub start: Instant,
    pub end: Instant,
}

struct Worker {
    /// Pinned to cores of its own (see `spawn_worker`).
    pinned: bool,
    /// The process whose thread it is (a forked child has none of its parent's threads).
    pid: u32,
    sender: Mutex<Option<mpsc::Sender<Task>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop; then wait for the thread.
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if self.pid != std::process::id() {
            // A forked child's copy of a parent's worker: there is no thread to wait for (or
            // to detach, which the handle's own drop would try).
            if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
                std::mem::forget(h);
            }
            return;
        }
        if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

/// The device workers, created on first use. A worker whose device is no longer offered
/// (e.g. after `use_virtual_gpus()` changed) and that no model uses is stopped.
static WORKERS: Mutex<Vec<(DeviceInfo, Arc<Worker>)>> = Mutex::new(Vec::new());

/// Held while one `run_all` call submits its tasks (see there).
static SUBMITTING: Mutex<()> = Mutex::new(());

fn device_worker(info: &DeviceInfo) -> Result<Arc<Worker>> {
    let current = crate::device::gpu_devices();
    let mut registry = WORKERS.lock().unwrap_or_else(|e| e.into_inner());
    // In a forked child the parent's workers have no threads: new ones are made here.
    registry.retain(|(_, w)| w.pid == std::process::id());
    registry.retain(|(i, w)| Arc::strong_count(w) > 1 || current.contains(i));
    if let Some((_, w)) = registry.iter().find(|(i, _)| i == info) {
        return Ok(w.clone());
    }
    let worker = Arc::new(spawn_worker(info.clone())?);
    registry.push((info.clone(), worker.clone()));
    Ok(worker)
}

/// A failure to inject into one replica (a test hook for the failure paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The replica's task returns an error.
    Error,
    /// The replica's task panics.
    Panic,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    replica: usize,
    /// Training steps to let pass before failing.
    steps_left: u64,
    kind: FaultKind,
}

/// A set of persistent workers, one per device, created once per parallel model.
/// A task that a worker thread owns until it has run it.
type WorkerTask<T> = Box<dyn FnOnce(&WorkerContext) -> Result<T> + Send + 'static>;

pub struct ReplicaSet {
    pub devices: Vec<DeviceInfo>,
    pub merge: MergeDevice,
    /// How each step's rows are shared among the replicas.
    pub split: RowSplit,
    workers: Vec<Arc<Worker>>,
    timeline: Arc<Mutex<VecDeque<Interval>>>,
    fault: Mutex<Option<Fault>>,
}

const TIMELINE_LEN: usize = 256;

impl ReplicaSet {
    pub fn new(devices: Vec<DeviceInfo>, merge: MergeDevice) -> Result<Self> {
        Self::with_split(devices, merge, SplitMode::Even)
    }

    pub fn with_split(devices: Vec<DeviceInfo>, merge: MergeDevice, split: SplitMode) -> Result<Self> {
        let timeline = Arc::new(Mutex::new(VecDeque::with_capacity(TIMELINE_LEN)));
        let workers = devices.iter().map(device_worker).collect::<Result<Vec<_>>>()?;
        let split = RowSplit::new(split, devices.len());
        Ok(Self { devices, merge, split, workers, timeline, fault: Mutex::new(None) })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether every replica computes in host memory (virtual GPUs).
    pub fn is_host_backed(&self) -> bool {
        self.devices.iter().all(|d| d.kind == DeviceKind::Virtual)
    }

    /// Whether every replica's worker is pinned to cores of its own (then waiting replicas may
    /// spin briefly; on shared cores spinning would take time from the replicas waited for).
    pub fn has_own_cores(&self) -> bool {
        self.workers.iter().all(|w| w.pinned)
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `f` on replica `replica`'s worker; the result arrives on the returned channel.
    pub fn submit<T, F>(&self, replica: usize, f: F) -> Result<mpsc::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&WorkerContext) -> Result<T> + Send + 'static,
    {
        if self.workers[replica].pid != std::process::id() {
            return Err(Error::State(
                "a parallel model made before a fork (parallel::mclapply(), future's multicore plan) cannot run in the forked process: its device workers stay in the parent; use the template model there, or call multi_gpu_model() in the child".into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let label = self.devices[replica].label();
        let timeline = self.timeline.clone();
        let task: Task = Box::new(move |ctx: &WorkerContext| {
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| f(ctx)))
                .unwrap_or_else(|panic| Err(Error::Device(format!("replica {} on {} failed: {}", replica, label, panic_message(&panic)))));
            if let Ok(mut t) = timeline.lock() {
                if t.len() == TIMELINE_LEN {
                    t.pop_front();
                }
                t.push_back(Interval { replica, start, end: Instant::now() });
            }
            let _ = tx.send(result);
        });
        let sender = self.workers[replica].sender.lock().unwrap_or_else(|e| e.into_inner()).clone();
        sender
            .ok_or_else(|| Error::Device("the device's worker was stopped".into()))?
            .send(task)
            .map_err(|_| Error::Device(format!("replica {} on {} has stopped", replica, self.devices[replica].label())))?;
        Ok(rx)
    }

    /// Runs one task per replica concurrently and waits for all of them (even after a
    /// failure, so no worker is left busy with this step). Results come back in replica order.
    /// Tasks may borrow from the caller (`'env`): like a scoped thread, none outlives this call.
    pub fn run_all<'env, T, F>(&self, make_task: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(usize) -> Option<Box<dyn FnOnce(&WorkerContext) -> Result<T> + Send + 'env>>,
    {
        let mut pending = Vec::with_capacity(self.len());
        let mut submit_error = None;
        // Workers are shared by every replica set on their device, and a fused training step's
        // tasks wait for each other (`StepBarrier`). Submitting one call's tasks as a whole
        // queues every worker's tasks in the same order across calls, so no worker can sit at
        // one step's barrier while a task it waits for is queued behind another step's task
        // on another worker (two models training at once on shared virtual GPUs deadlocked so).
        let in_order = SUBMITTING.lock().unwrap_or_else(|e| e.into_inner());
        for replica in 0..self.len() {
            let Some(task) = make_task(replica) else {
                pending.push(None);
                continue;
            };
            // SAFETY: every submitted task is waited for below before this function returns:
            // a task either runs to completion (and sends its result) or is dropped, closing
            // its channel; either way it no longer uses borrows of 'env once `recv` returns.
            let task: WorkerTask<T> = unsafe { std::mem::transmute(task) };
            match self.submit(replica, task) {
                Ok(rx) => pending.push(Some(rx)),
                Err(e) => {
                    submit_error = Some(e);
                    break;
                }
            }
        }
        drop(in_order);
        let mut results = Vec::with_capacity(self.len());
        let mut first_error = submit_error;
        for (replica, rx) in pending.into_iter().enumerate() {
            let Some(rx) = rx else { continue };
            let outcome =
                rx.recv().unwrap_or_else(|_| Err(Error::Device(format!("replica {} on {} stopped mid-step", replica, self.devices[replica].label()))));
            match outcome {
                Ok(v) => results.push(v),
                Err(e) => {
                    // A replica released because another failed reports the other's error.
                    let released = |e: &Error| matches!(e, Error::State(m) if m == crate::collective::PEER_FAILED);
                    if first_error.as_ref().is_none_or(|f| released(f) && !released(&e)) {
                        first_error = Some(if released(&e) { e } else { annotate(e, replica, &self.devices[replica]) });
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// Makes `replica` fail (error or panic) in the training step after `after_steps` more steps.
    pub fn inject_fault(&self, replica: usize, after_steps: u64, kind: FaultKind) -> Result<()> {
        if replica >= self.len() {
            return Err(Error::Value(format!("there is no replica {} (this model has {})", replica, self.len())));
        }
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = Some(Fault { replica, steps_left: after_steps, kind });
        Ok(())
    }

    /// Called once per training step: the replica that must fail in this step, if any.
    pub fn fault_for_this_step(&self) -> Option<(usize, FaultKind)> {
        let mut guard = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let fault = guard.as_mut()?;
        if fault.steps_left > 0 {
            fault.steps_left -= 1;
            return None;
        }
        let due = (fault.replica, fault.kind);
        *guard = None;
        Some(due)
    }

    /// The most recent task intervals (oldest first).
    pub fn timeline(&self) -> Vec<Interval> {
        self.timeline.lock().map(|t| t.iter().copied().collect()).unwrap_or_default()
    }
}

/// Where the replicas of one step wait for each other (all gradients computed, before the
/// optimizer update). A replica that fails, or whose task never runs, abandons it, and the
/// others then go on without updating: no replica waits for one that will not come.
pub(crate) struct StepBarrier {
    parties: usize,
    /// Whether a waiting party may spin first (only when every party has a core of its own).
    spin: bool,
    arrived: std::sync::atomic::AtomicUsize,
    abandoned: std::sync::atomic::AtomicBool,
    lock: Mutex<()>,
    wake: std::sync::Condvar,
}

impl StepBarrier {
    pub(crate) fn new(parties: usize, spin: bool) -> Self {
        Self { parties, spin, arrived: Default::default(), abandoned: Default::default(), lock: Mutex::new(()), wake: std::sync::Condvar::new() }
    }

    fn all_here(&self) -> bool {
        self.arrived.load(std::sync::atomic::Ordering::Acquire) >= self.parties
    }

    fn is_abandoned(&self) -> bool {
        self.abandoned.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until every party has arrived (true) or one abandoned the step (false).
    pub(crate) fn arrive(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 >= self.parties {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
            return !self.is_abandoned();
        }
        // Replicas finish their backward passes at about the same time: a short spin saves
        // the sleep and wake-up (~0.1 ms on a VM) before blocking.
        if self.spin {
            let spin_until = Instant::now() + std::time::Duration::from_micros(200);
            while !self.all_here() && !self.is_abandoned() && Instant::now() < spin_until {
                std::hint::spin_loop();
            }
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.all_here() && !self.is_abandoned() {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        !self.is_abandoned()
    }

    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, std::sync::atomic::Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }
}

/// Abandons the barrier when dropped before its party arrived: a task that fails, panics, or
/// is dropped unrun (its worker gone) releases the others.
pub(crate) struct Arrival<'b> {
    barrier: &'b StepBarrier,
    arrived: bool,
}

impl<'b> Arrival<'b> {
    pub(crate) fn new(barrier: &'b StepBarrier) -> Self {
        Self { barrier, arrived: false }
    }

    pub(crate) fn arrive(mut self) -> bool {
        self.arrived = true;
        self.barrier.arrive()
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            self.barrier.abandon();
        }
    }
}

fn spawn_worker(info: DeviceInfo) -> Result<Worker> {
    let (tx, rx) = mpsc::channel::<Task>();
    let label = info.label();
    let threads = if info.kind == DeviceKind::Cuda { 1 } else { info.threads.max(1) };
    let name = format!("rustgpu-{}", label.trim_start_matches('/').replace(':', ""));
    let pool_name = name.clone();
    // A virtual GPU's threads are pinned to cores of their own when all virtual GPUs fit on
    // the machine (n GPUs x threads <= cores), as a real GPU is a device of its own; the OS
    // otherwise moved them between cores mid-step (measured: 2 x 1 thread MLP scaling 1.32-1.52x
    // unpinned against 1.43-1.64x pinned, interleaved on a noisy 2-core VM). RUSTGPU_PIN=0: off.
    let wanted = std::env::var("RUSTGPU_PIN").map_or(true, |v| v != "0");
    let pin = if info.kind == DeviceKind::Virtual && wanted { crate::device::virtual_gpu_first_core(info.id) } else { None };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{}-{}", pool_name, i))
        .start_handler(move |i| {
            if let Some(first) = pin {
                pin_to_cpu(first + i);
            }
        })
        .build()
        .map_err(|e| Error::Device(format!("cannot start worker threads for {}: {}", label, e)))?;
    let device = info.candle_device()?;
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let ctx = WorkerContext { info, device };
            // The task loop runs on one of the device's pool threads (its kernels split their
            // work over that pool only), so a task starts with one hand-off, not two.
            pool.install(move || {
                while let Some(task) = next_task(&rx, pin.is_some()) {
                    task(&ctx);
                }
            });
        })
        .map_err(|e| Error::Device(format!("cannot start the worker of {}: {}", label, e)))?;
    Ok(Worker { pinned: pin.is_some(), pid: std::process::id(), sender: Mutex::new(Some(tx)), handle: Mutex::new(Some(handle)) })
}

/// The worker's next task, or None once the channel is closed. A worker pinned to a core of
/// its own first watches the channel for a moment: in a training loop the next step's task
/// comes a fraction of a millisecond after the last one ends, and catching it awake saves
/// the sleep and wake-up (~0.05 ms on a VM, per step). Unpinned workers may share cores with
/// others, so they block at once.
fn next_task(rx: &mpsc::Receiver<Task>, spin: bool) -> Option<Task> {
    if spin {
        let until = Instant::now() + std::time::Duration::from_micros(300);
        loop {
            match rx.try_recv() {
                Ok(task) => return Some(task),
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) if Instant::now() < until => std::hint::spin_loop(),
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
    }
    rx.recv().ok()
}

/// Pins the calling thread to one core (Linux; elsewhere a no-op).
#[cfg(target_os = "linux")]
fn pin_to_cpu(cpu: usize) {
    extern "C" {
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut mask = [0u64; 16];
    let c = cpu % n;
    mask[c / 64] |= 1 << (c % 64);
    // SAFETY: sets the calling thread's CPU mask from a mask the size we pass; a failure
    // (e.g. a restricted cpuset) leaves the thread unpinned, which is harmless.
    unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) };
}

#[cfg(not(target_os = "linux"))]
fn pin_to_cpu(_cpu: usize) {}

fn annotate(e: Error, replica: usize, info: &DeviceInfo) -> Error {
    let prefix = format!("replica {} on {}", replica, info.label());
    match e {
        Error::Device(m) if m.starts_with(&prefix) => Error::Device(m),
        Error::Value(m) => Error::Value(m),
        Error::Interrupted => Error::Interrupted,
        other if other.is_out_of_memory() => crate::error::explain_out_of_memory(other, &format!("{} ({})", prefix, info.name)),
        other => Error::Device(format!("{} ({}) failed: {}", prefix, info.name, other)),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_contiguous_balanced_and_allows_empty_parts() {
        assert_eq!(split_batch(10, 4), vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(split_batch(3, 4), vec![0..1, 1..2, 2..3, 3..3]);
        assert_eq!(split_batch(8, 2), vec![0..4, 4..8]);
        for rows in 0..40 {
            for parts in 1..9 {
                let s = split_batch(rows, parts);
                assert_eq!(s.len(), parts);
                assert_eq!(s.last().unwrap().end, rows);
                let lens: Vec<usize> = s.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn step_barrier_releases_everyone_or_is_abandoned() {
        let barrier = StepBarrier::new(3, true);
        let passed = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3).map(|_| s.spawn(|| Arrival::new(&barrier).arrive())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(passed, vec![true; 3]);
        // One party never arrives (its arrival is dropped, as when its task fails): the
        // others are released, told that the step was abandoned.
        let barrier = StepBarrier::new(3, false);
        let passed = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2).map(|_| s.spawn(|| Arrival::new(&barrier).arrive())).collect();
            std::thread::sleep(std::time::Duration::from_millis(5));
            drop(Arrival::new(&barrier));
            hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(passed, vec![false; 2]);
    }

    fn virtual_devices(n: usize) -> Vec<DeviceInfo> {
        (0..n).map(|id| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }).collect()
    }

    #[test]
    fn workers_run_concurrently_and_report_panics_by_replica() {
        let set = ReplicaSet::new(virtual_devices(2), MergeDevice::Cpu).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        // Both tasks wait on one barrier: this only finishes if they run at the same time.
        let out = set
            .run_all(|r| {
                let b = barrier.clone();
                Some(Box::new(move |ctx: &WorkerContext| {
                    b.wait();
                    Ok(ctx.info.id * 10 + r)
                }))
            })
            .unwrap();
        assert_eq!(out, vec![0, 11]);
        let err = set
            .run_all(|r| {
                Some(Box::new(move |_: &WorkerContext| -> Result<usize> {
                    if r == 1 {
                        panic!("injected");
                    }
                    Ok(r)
                }))
            })
            .unwrap_err();
        assert!(err.to_string().contains("replica 1 on /gpu:1"), "{}", err);
        // The set still works after a failed step.
        assert_eq!(set.run_all(|r| Some(Box::new(move |_: &WorkerContext| Ok(r)))).unwrap(), vec![0, 1]);
    }
}
