//! Cancellation through the host's hook (its own test binary: the hook is process-wide).
use rustgpu_core::{cancel, Error};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

#[test]
fn work_that_cannot_poll_is_abandoned_at_once_and_panics_come_back() {
    cancel::install(stop_requested);
    // Finishes normally while nobody asks to stop.
    assert_eq!(cancel::run_interruptibly("quick work", || Ok(7)).unwrap(), 7);
    // A C call that runs for seconds: the caller returns within the polling interval.
    let started = Instant::now();
    let stopper = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        STOP.store(true, Ordering::SeqCst);
    });
    let result = cancel::run_interruptibly("slow work", || {
        std::thread::sleep(Duration::from_secs(5));
        Ok(())
    });
    stopper.join().unwrap();
    assert!(matches!(result, Err(Error::Interrupted)));
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(cancel::check().is_err());
    STOP.store(false, Ordering::SeqCst);
    assert!(cancel::check().is_ok());
    // A panic in the work reaches the caller as a panic (which the binding turns into an error).
    let panicked = std::panic::catch_unwind(|| cancel::run_interruptibly::<()>("failing work", || panic!("boom")));
    assert!(panicked.is_err());
}
