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

fn main() -> anyhow::Result<()> {
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
