//! With the `mpi` feature: compiles the C layer over MPI (mpi/shim.c) with `mpicc` (or
//! $MPICC) into a static library, and links MPI's own libraries as `mpicc` reports them.
use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {:?}: {}", cmd, e));
    assert!(status.success(), "{:?} failed", cmd);
}

fn main() {
    println!("cargo:rerun-if-changed=mpi/shim.c");
    println!("cargo:rerun-if-env-changed=MPICC");
    if std::env::var_os("CARGO_FEATURE_MPI").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mpicc = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".into());
    let object = out.join("shim.o");
    run(Command::new(&mpicc).args(["-O2", "-fPIC", "-c", "mpi/shim.c", "-o"]).arg(&object));
    run(Command::new("ar").arg("crs").arg(out.join("librustgpu_mpi.a")).arg(&object));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=rustgpu_mpi");
    // Open MPI's wrapper says `--showme:link`, MPICH's `-link_info` (which repeats the compiler).
    let link = ["--showme:link", "-link_info"]
        .iter()
        .filter_map(|flag| Command::new(&mpicc).arg(flag).output().ok())
        .find(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for word in link.split_whitespace() {
        if let Some(dir) = word.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={}", dir);
        } else if let Some(lib) = word.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={}", lib);
        }
    }
    println!("cargo:rustc-link-lib=dylib=dl");
}
