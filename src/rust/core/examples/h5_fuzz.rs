//! Loads mutated copies of HDF5 model and weights files, each in a child process with a time
//! limit, and keeps those that crash the loader or make it spin.
//!
//! `cargo run --release -p rustgpu-core --example h5_fuzz -- --ci CASES OUT_DIR` writes its own
//! seeds (the Keras fixture models, saved again by rustgpu's `save_model` with their optimizer
//! state and by `save_weights`) and mutates each in turn; `-- SEED.h5 CASES OUT_DIR` mutates one
//! file (a model file; weights files need `--ci`'s model beside them). FUZZ_SEED picks the
//! mutations, FUZZ_LIMIT_S the seconds after which a load counts as a hang.
//!
//! Mutations: a run of random bytes, a byte set to 0x00/0xff, a truncation. A model file is
//! loaded as `load_model_hdf5()` loads it (config, weights, training config and optimizer
//! state from one open; then the state is restored into the compiled optimizer); a weights
//! file as `load_model_weights_hdf5()` loads it, by order and by name.
//!
//! Every crash and hang is attributed: the child prints its stack when a fatal signal arrives
//! (and, for a hang, when the parent asks with SIGUSR1 before killing it), which the parent
//! names with binutils' `addr2line`; a stack holding an HDF5 function (`H5...`) stopped inside
//! libhdf5 (which never calls back into our code), any other is ours, and so is a panic. Exit status 1 when ours are found; the cases are kept in
//! OUT_DIR (`crash-N.h5` with `crash-N.txt`, its stack).
use rand::{Rng, SeedableRng};
use rustgpu_core::io;
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::Optimizer;
use rustgpu_core::Compiled;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A load slower than this counts as a hang (FUZZ_LIMIT_S; default 5 s: a good load of these
/// small files takes milliseconds).
fn limit() -> Duration {
    Duration::from_secs(std::env::var("FUZZ_LIMIT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

/// The stack printed on a fatal signal, through glibc's async-signal-tolerant backtrace calls.
mod stack_on_signal {
    use std::ffi::c_void;

    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
        fn backtrace(buffer: *mut *mut c_void, size: i32) -> i32;
        fn backtrace_symbols_fd(buffer: *const *mut c_void, size: i32, fd: i32);
        fn raise(sig: i32) -> i32;
        fn _exit(status: i32) -> !;
    }

    pub const SIGUSR1: i32 = 10;
    const FATAL: [i32; 5] = [4, 6, 7, 8, 11]; // SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV
    /// The exit status of a child stopped by SIGUSR1 (asked for its stack while hanging).
    const ASKED: i32 = 3;

    extern "C" fn on_signal(sig: i32) {
        let mut frames = [std::ptr::null_mut(); 128];
        // SAFETY: glibc's backtrace functions; `backtrace` was called once at install time
        // so that it loads libgcc outside the handler; the buffer outlives both calls.
        unsafe {
            let n = backtrace(frames.as_mut_ptr(), frames.len() as i32);
            backtrace_symbols_fd(frames.as_ptr(), n, 2);
            if sig == SIGUSR1 {
                _exit(ASKED);
            }
            signal(sig, 0); // SIG_DFL, then die of the signal as we would have
            raise(sig);
        }
    }

    pub fn install() {
        let mut warm = [std::ptr::null_mut(); 4];
        // SAFETY: as above; `on_signal` has the signature signal(2) expects.
        unsafe {
            backtrace(warm.as_mut_ptr(), 4);
            for sig in FATAL.into_iter().chain([SIGUSR1]) {
                signal(sig, on_signal as extern "C" fn(i32) as usize);
            }
        }
    }

    pub fn ask(pid: u32) {
        extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        // SAFETY: a plain kill(2) of our own child.
        unsafe {
            kill(pid as i32, SIGUSR1);
        }
    }
}

/// `load_model_hdf5()`: the model, its training setup and optimizer state, restored.
fn load_model(path: &Path) {
    let Ok(loaded) = io::load_model(path) else { return };
    let (Some(training), Some(state)) = (loaded.training, loaded.optimizer_state) else { return };
    let Ok(losses) = training.losses.iter().map(|l| Loss::parse(l)).collect::<rustgpu_core::Result<Vec<_>>>() else { return };
    let n = losses.len();
    let mut compiled = Compiled { losses, loss_weights: vec![1.0; n], metrics: vec![], optimizer: Optimizer::new(training.optimizer) };
    let _ = io::restore_optimizer_state(&state, &loaded.model, &mut compiled.optimizer);
}

/// `load_model_weights_hdf5()` into the model of `model_path`, by order and by name.
fn load_weights(model_path: &Path, path: &Path) {
    let mut model = io::load_model(model_path).expect("the pristine model loads").model;
    let _ = io::load_weights(path, &mut model, false, false);
    let _ = io::load_weights(path, &mut model, true, true);
}

fn mutate(seed: &[u8], rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    match rng.gen_range(0..4) {
        0 => {
            let at = rng.gen_range(0..bytes.len());
            let n = rng.gen_range(1..=8).min(bytes.len() - at);
            for b in &mut bytes[at..at + n] {
                *b = rng.gen();
            }
        }
        1 => {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = 0xff;
        }
        2 => {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = 0;
        }
        _ => bytes.truncate(rng.gen_range(0..bytes.len())),
    }
    bytes
}

/// A file to mutate: a model file, or a weights file with the model file it fits.
struct Seed {
    path: PathBuf,
    model_for_weights: Option<PathBuf>,
}

/// The fixture models saved again by rustgpu, as models (with optimizer state) and as weights.
fn own_seeds(out: &Path) -> Vec<Seed> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/h5");
    let mut seeds = Vec::new();
    for name in ["keras_dense_model", "keras_functional_model"] {
        let loaded = io::load_model(&fixtures.join(format!("{}.h5", name))).expect("fixture loads");
        let training = loaded.training.expect("fixture has a training config");
        let losses: Vec<Loss> = training.losses.iter().map(|l| Loss::parse(l).expect("known loss")).collect();
        let n = losses.len();
        let mut compiled = Compiled { losses, loss_weights: vec![1.0; n], metrics: vec![], optimizer: Optimizer::new(training.optimizer) };
        io::restore_optimizer_state(&loaded.optimizer_state.expect("fixture has optimizer state"), &loaded.model, &mut compiled.optimizer)
            .expect("state restores");
        let model_path = out.join(format!("seed-{}.h5", name));
        let weights_path = out.join(format!("seed-{}.weights.h5", name));
        io::save_model(&model_path, &loaded.model, Some(&compiled), true, true).expect("save model");
        io::save_weights(&weights_path, &loaded.model, true).expect("save weights");
        seeds.push(Seed { path: model_path.clone(), model_for_weights: None });
        seeds.push(Seed { path: weights_path, model_for_weights: Some(model_path) });
    }
    seeds
}

#[derive(Default)]
struct Tally {
    returned: usize,
    panicked: usize,
    crashed_ours: usize,
    crashed_libhdf5: usize,
    hung_ours: usize,
    hung_libhdf5: usize,
}

fn run_case(me: &Path, seed: &Seed, case_path: &Path, log_path: &Path) -> (Option<std::process::ExitStatus>, String) {
    let mut cmd = Command::new(me);
    match &seed.model_for_weights {
        Some(model) => cmd.arg("--load-weights").arg(model).arg(case_path),
        None => cmd.arg("--load-model").arg(case_path),
    };
    let log = std::fs::File::create(log_path).expect("create log");
    let mut child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > limit() {
            // Ask for its stack, then make sure it is gone.
            stack_on_signal::ask(child.id());
            let asked = Instant::now();
            while child.try_wait().expect("wait").is_none() && asked.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    (status, std::fs::read_to_string(log_path).unwrap_or_default())
}

/// The stack a child printed, with the function of each frame in our executable named (HDF5
/// is linked in statically, and glibc's backtrace names only exported symbols): one name per
/// line, from binutils' addr2line, before the raw frames.
fn symbolized(exe: &Path, stack: &str) -> String {
    let marker = format!("{}(+0x", exe.display());
    let offsets: Vec<&str> = stack.lines().filter_map(|l| l.strip_prefix(marker.as_str())?.split(')').next()).collect();
    if offsets.is_empty() {
        return stack.to_string();
    }
    let names = Command::new("addr2line")
        .arg("-f")
        .arg("-e")
        .arg(exe)
        .args(offsets.iter().map(|o| format!("0x{}", o)))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().step_by(2).map(str::to_string).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    format!("{}\n{}", names, stack)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, mode, path] if mode == "--load-model" => {
            stack_on_signal::install();
            load_model(Path::new(path));
            return;
        }
        [_, mode, model, path] if mode == "--load-weights" => {
            stack_on_signal::install();
            load_weights(Path::new(model), Path::new(path));
            return;
        }
        _ => {}
    }
    let (seeds_arg, cases, out) = match args.as_slice() {
        [_, s, n, o] => (s.clone(), n.parse::<usize>().expect("CASES is a count"), PathBuf::from(o)),
        _ => panic!("usage: h5_fuzz (--ci | SEED.h5) CASES OUT_DIR"),
    };
    std::fs::create_dir_all(&out).expect("create OUT_DIR");
    let seeds = if seeds_arg == "--ci" { own_seeds(&out) } else { vec![Seed { path: PathBuf::from(seeds_arg), model_for_weights: None }] };
    let seed_bytes: Vec<Vec<u8>> = seeds.iter().map(|s| std::fs::read(&s.path).expect("read the seed file")).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1));
    let me = std::env::current_exe().expect("own path");
    let mut t = Tally::default();
    let started = Instant::now();
    for case in 0..cases {
        let k = case % seeds.len();
        let bytes = mutate(&seed_bytes[k], &mut rng);
        let path = out.join("case.h5");
        std::fs::write(&path, &bytes).expect("write case");
        let (status, stack) = run_case(&me, &seeds[k], &path, &out.join("case.txt"));
        let stack = symbolized(&me, &stack);
        let in_libhdf5 = stack.lines().any(|l| l.starts_with("H5") || l.contains("libhdf5"));
        let kind = match status {
            Some(s) if s.success() => {
                t.returned += 1;
                continue;
            }
            Some(s) if s.code() == Some(101) => {
                t.panicked += 1;
                "panic"
            }
            None => {
                if in_libhdf5 {
                    t.hung_libhdf5 += 1;
                    "hang-libhdf5"
                } else {
                    t.hung_ours += 1;
                    "hang"
                }
            }
            Some(_) => {
                if in_libhdf5 {
                    t.crashed_libhdf5 += 1;
                    "crash-libhdf5"
                } else {
                    t.crashed_ours += 1;
                    "crash"
                }
            }
        };
        let seed_name = seeds[k].path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::fs::write(out.join(format!("{}-{}.h5", kind, case)), &bytes).expect("keep case");
        std::fs::write(out.join(format!("{}-{}.txt", kind, case)), format!("seed: {}\n{}", seed_name, stack)).expect("keep stack");
    }
    let ours = t.panicked + t.crashed_ours + t.hung_ours;
    println!(
        "h5_fuzz: {} mutations of {} seed files in {:.0} s: {} returned (loaded or a clean error); ours: {} panics, {} crashes, {} hangs; inside libhdf5: {} crashes, {} hangs (> {:?})",
        cases,
        seeds.len(),
        started.elapsed().as_secs_f64(),
        t.returned,
        t.panicked,
        t.crashed_ours,
        t.hung_ours,
        t.crashed_libhdf5,
        t.hung_libhdf5,
        limit()
    );
    if ours > 0 {
        eprintln!("h5_fuzz: {} failures in our code; the cases are in {}", ours, out.display());
        std::process::exit(1);
    }
}
