//! Builds the eBPF programs from `arp-trace-ebpf/` with aya-build during a normal cargo build.
//! The toolchain is the one `cargo xtask` provisioned (it sets ARP_TRACE_EBPF_TOOLCHAIN), or
//! failing that whichever capable one is already installed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn on_path(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([home().join(".cargo/bin")])
        .any(|d| d.join(bin).is_file())
}

/// A rustup toolchain that can build `core` for the BPF target: it must ship its source.
fn toolchain_has_src(name: &str) -> bool {
    let out = Command::new("rustup")
        .args(["run", name, "rustc", "--print", "sysroot"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let sysroot = String::from_utf8_lossy(&o.stdout).trim().to_string();
            Path::new(&sysroot)
                .join("lib/rustlib/src/rust/library/core")
                .is_dir()
        }
        _ => false,
    }
}

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// `ARP_TRACE_COMMIT` for `--version`, the metrics' build info and the trace header: the
/// commit checked out (`-dirty` when tracked files differ from it), or what the environment
/// says for builds outside a checkout (a source tarball), or nothing. The script reruns when
/// HEAD moves, the branch's ref or the index changes, or a source of the binary is edited,
/// so the name never lags behind what was compiled.
fn commit() {
    println!("cargo:rerun-if-env-changed=ARP_TRACE_COMMIT");
    if let Ok(c) = std::env::var("ARP_TRACE_COMMIT") {
        println!("cargo:rustc-env=ARP_TRACE_COMMIT={c}");
        return;
    }
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    // A worktree's .git is a file: ask git where HEAD, the refs and the index really are.
    let git_dir = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from);
    let common =
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]).map(PathBuf::from);
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let mut watch: Vec<PathBuf> = Vec::new();
    if let Some(d) = &git_dir {
        watch.extend([d.join("HEAD"), d.join("index")]);
    }
    if let Some(c) = &common {
        watch.push(c.join("packed-refs"));
        if let Some(b) = &branch {
            watch.push(c.join(b));
        }
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    watch.extend([
        crate_dir.join("src"),
        crate_dir.join("../arp-trace-model/src"),
    ]);
    // A path that does not exist would make cargo rerun the script on every build.
    for p in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    // --no-optional-locks: reading the status must not rewrite the index it watches.
    let dirty = git(&[
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
    ])
    .is_some_and(|s| !s.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=ARP_TRACE_COMMIT={head}{suffix}");
}

fn main() -> anyhow::Result<()> {
    commit();
    println!("cargo:rerun-if-env-changed=ARP_TRACE_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-changed=../arp-trace-common/src");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");

    // Builds that never load BPF (the fuzz target, on a sanitizer toolchain) skip the eBPF
    // programs; the binary then says so instead of tracing.
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        let out = std::env::var("OUT_DIR")?;
        std::fs::write(Path::new(&out).join("arp-trace"), b"")?;
        return Ok(());
    }

    let toolchain = match std::env::var("ARP_TRACE_EBPF_TOOLCHAIN") {
        Ok(t) if !t.is_empty() => t,
        _ if toolchain_has_src("nightly") => "nightly".to_string(),
        _ if toolchain_has_src("debian-bpf") => "debian-bpf".to_string(),
        _ => anyhow::bail!(
            "no Rust toolchain here can build the eBPF programs (they need a toolchain with \
             rust-src and bpf-linker). Run `cargo xtask build` once: it provisions one."
        ),
    };
    if !on_path("bpf-linker") {
        anyhow::bail!(
            "bpf-linker is not installed. Run `cargo xtask build` once: it provisions it."
        );
    }
    // Debian's stable rustc builds `core` for the BPF target only with unstable flags enabled.
    if toolchain != "nightly" {
        // SAFETY: build scripts are single-threaded here; aya-build reads it below.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let ebpf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../arp-trace-ebpf");
    let ebpf_dir = ebpf_dir.canonicalize()?;
    let root = ebpf_dir.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "arp-trace-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
