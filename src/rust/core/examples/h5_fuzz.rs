//! Loads mutated copies of a Keras HDF5 file, each in a child process with a time limit, and
//! keeps the ones that crash the loader or make it spin (issue #21's "files that spin"):
//! `cargo run --release -p rustgpu-core --example h5_fuzz -- SEED.h5 CASES OUT_DIR`
//! (FUZZ_SEED picks the mutations, FUZZ_LIMIT_S the seconds after which a load is a hang).
//! Mutations: a run of random bytes, a byte set to 0x00/0xff, a truncation. Each case is
//! loaded as `load_model_hdf5()` and `load_model_weights_hdf5()` load it. Prints a summary;
//! writes `hang-N.h5` and `crash-N.h5` into OUT_DIR (nothing for ordinary errors).
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A load slower than this counts as a hang (FUZZ_LIMIT_S; default 5 s: a good load of these
/// small files takes milliseconds).
fn limit() -> Duration {
    Duration::from_secs(std::env::var("FUZZ_LIMIT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

fn load(path: &Path) {
    // The outcome is not the point: only whether it returns.
    if let Ok(loaded) = rustgpu_core::io::load_model(path) {
        let mut model = loaded.model;
        let _ = rustgpu_core::io::load_weights(path, &mut model, false, false);
    }
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--load" {
        load(Path::new(&args[2]));
        return;
    }
    let (seed_path, cases, out) = match args.as_slice() {
        [_, s, n, o] => (s.clone(), n.parse::<usize>().expect("CASES is a count"), o.clone()),
        _ => panic!("usage: h5_fuzz SEED.h5 CASES OUT_DIR"),
    };
    let seed = std::fs::read(&seed_path).expect("read the seed file");
    std::fs::create_dir_all(&out).expect("create OUT_DIR");
    let mut rng = rand::rngs::StdRng::seed_from_u64(std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1));
    let me = std::env::current_exe().expect("own path");
    let (mut hangs, mut crashes, mut ok) = (0, 0, 0);
    for case in 0..cases {
        let bytes = mutate(&seed, &mut rng);
        let path = Path::new(&out).join("case.h5");
        std::fs::write(&path, &bytes).expect("write case");
        let mut child = Command::new(&me).arg("--load").arg(&path).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if start.elapsed() > limit() {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match status {
            None => {
                hangs += 1;
                std::fs::write(Path::new(&out).join(format!("hang-{}.h5", case)), &bytes).expect("keep case");
            }
            Some(s) if !s.success() => {
                crashes += 1;
                std::fs::write(Path::new(&out).join(format!("crash-{}.h5", case)), &bytes).expect("keep case");
            }
            Some(_) => ok += 1,
        }
    }
    println!("{} cases: {} returned, {} crashed, {} hung (> {:?})", cases, ok, crashes, hangs, limit());
}
