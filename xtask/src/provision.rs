//! One-time provisioning of what building and testing arp-trace needs: a Rust toolchain that
//! can build `core` for the BPF target, bpf-linker, and the test tools. Every step checks
//! first and does nothing when already done, so the cost after the first run is a few
//! `stat` calls.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The bpf-linker release that builds against LLVM 22 with Rust 1.95/1.96.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Name under which Debian's compiler (which ships its source) is linked into rustup.
const DEBIAN_TOOLCHAIN: &str = "debian-bpf";
const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "llvm-22-dev"];

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".rustup"))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"))
}

pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([cargo_home().join("bin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn has_core_src(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
}

/// A rustup nightly that ships rust-src (the upstream aya recipe), if any.
fn nightly_with_src() -> Option<String> {
    let dir = rustup_home().join("toolchains");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("nightly") && has_core_src(&e.path())).then_some(name)
        })
        .collect();
    found.sort();
    found.pop()
}

fn debian_toolchain_ready() -> bool {
    let link = rustup_home().join("toolchains").join(DEBIAN_TOOLCHAIN);
    link.exists() && has_core_src(&link) && Path::new("/usr/bin/rustc").is_file()
}

pub fn is_debian() -> bool {
    Path::new("/etc/debian_version").is_file() && which("apt-get").is_some()
}

fn is_root() -> bool {
    // SAFETY: no failure mode.
    unsafe { libc::geteuid() == 0 }
}

pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// A command's standard output; its stderr becomes the error when it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn apt_get() -> Command {
    let mut c = if is_root() {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    };
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn dpkg_installed(pkg: &str) -> bool {
    Path::new(&format!("/var/lib/dpkg/info/{pkg}.list")).is_file()
        || Path::new(&format!("/var/lib/dpkg/info/{pkg}:amd64.list")).is_file()
}

/// Installs Debian packages that are missing, running `apt-get update` once first.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(apt_get().args(["update", "-qq"]))?;
    run(apt_get()
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

fn manual_steps() -> String {
    format!(
        "no toolchain here can build the eBPF programs, and this is not a Debian system \
         xtask can provision. Install either:\n\
         \x20 (a) a nightly with its source: rustup toolchain install nightly --component rust-src\n\
         \x20     and bpf-linker: cargo install bpf-linker\n\
         \x20 (b) a distribution rustc with rust source (rustc, cargo, rust-src) linked into rustup:\n\
         \x20     rustup toolchain link {DEBIAN_TOOLCHAIN} /usr\n\
         \x20     and bpf-linker built against its LLVM:\n\
         \x20     LLVM_PREFIX=/usr/lib/llvm-NN cargo install bpf-linker --no-default-features --features llvm-NN\n\
         then run the command again."
    )
}

/// Returns the rustup toolchain name to build the eBPF crate with, provisioning it if needed.
pub fn ensure_toolchain() -> Result<String> {
    if let Ok(tc) = std::env::var("ARP_TRACE_EBPF_TOOLCHAIN") {
        if !tc.is_empty() {
            return Ok(tc);
        }
    }
    let linker = which("bpf-linker").is_some();
    if linker {
        if let Some(n) = nightly_with_src() {
            return Ok(n);
        }
        if debian_toolchain_ready() {
            return Ok(DEBIAN_TOOLCHAIN.into());
        }
    }
    if !is_debian() {
        bail!(manual_steps());
    }
    if which("rustup").is_none() {
        bail!(
            "rustup is not installed: install Rust with rustup as README's Quick start shows \
             (curl ... https://sh.rustup.rs | sh), then run this again"
        );
    }
    eprintln!("xtask: provisioning the eBPF toolchain (once; a few minutes)");
    apt_install(DEBIAN_PACKAGES)?;
    if !debian_toolchain_ready() {
        run(Command::new("rustup").args(["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]))?;
    }
    if which("bpf-linker").is_none() {
        run(Command::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            // Build with the rustup stable toolchain, not the crate's directory override.
            .current_dir(home()))?;
    }
    if !debian_toolchain_ready() || which("bpf-linker").is_none() {
        bail!(
            "provisioning finished but the toolchain is still incomplete:\n{}",
            manual_steps()
        );
    }
    Ok(DEBIAN_TOOLCHAIN.into())
}

/// Where provisioning puts tools that are not installed system-wide.
pub fn tools_dir() -> PathBuf {
    crate::workspace_root().join("target/tools")
}

/// The kubernetes-validate release whose schemas the manifests are checked against.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// The JSON Schema validator the output is checked with against arp-trace's own schema
/// (`tests/tests/schema.rs`).
const CHECK_JSONSCHEMA: &str = "check-jsonschema==0.39.0";

/// What the test venv holds: each command it must have, and the pinned package giving it.
const VENV_TOOLS: [(&str, &str); 2] = [
    ("kubernetes-validate", KUBERNETES_VALIDATE),
    ("check-jsonschema", CHECK_JSONSCHEMA),
];

/// The fleet tests' tools: Debian's Prometheus and promtool, unpacked from the package into
/// target/tools/prometheus rather than installed, so no service starts and no system user
/// is made; kubernetes-validate and check-jsonschema from PyPI in a virtualenv under
/// target/tools; and dpkg-dev,
/// binutils and systemd for `cargo xtask deb` and `systemd-analyze verify`.
pub fn ensure_fleet_tools() -> Result<()> {
    let tools = tools_dir();
    let wanted = [
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("strip", "binutils"),
        ("systemd-analyze", "systemd"),
        ("python3", "python3"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(b, _)| which(b).is_none())
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() {
        if !is_debian() {
            bail!(
                "the tests need these tools installed: {}",
                missing.join(", ")
            );
        }
        apt_install(&missing)?;
    }
    let prom = tools.join("prometheus");
    if !prom.join("usr/bin/prometheus").is_file() || !prom.join("usr/bin/promtool").is_file() {
        if !is_debian() {
            bail!("the Prometheus test needs Debian's prometheus package (or prometheus and promtool in {})", prom.join("usr/bin").display());
        }
        let debs = tools.join("debs");
        std::fs::create_dir_all(&debs)?;
        run(apt_get().args(["update", "-qq"]))?;
        run(apt_get()
            .args(["download", "prometheus"])
            .current_dir(&debs))?;
        let deb = std::fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("prometheus_"))
            })
            .context("apt-get download prometheus left no prometheus_*.deb")?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&prom))?;
    }
    let venv = tools.join("venv");
    let missing: Vec<&str> = VENV_TOOLS
        .iter()
        .filter(|(bin, _)| !venv.join("bin").join(bin).is_file())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !venv.join("bin/pip").is_file() {
            let made = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status();
            if !made.is_ok_and(|s| s.success()) {
                // Debian's own python3 keeps venv in a package of its own.
                apt_install(&["python3-venv"])?;
                run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
            }
        }
        // `python3 -m pip`, not `bin/pip`: a venv copied from elsewhere keeps pip scripts
        // that would install into the original.
        run(Command::new(venv.join("bin/python3"))
            .args(["-m", "pip", "install", "-q"])
            .args(&missing))?;
    }
    Ok(())
}

/// Tools the tests drive: iproute2 for namespaces, jq and tshark to read output, cpio, man
/// and bash for the installed man page and completion.
pub fn ensure_test_tools() -> Result<()> {
    ensure_fleet_tools()?;
    let wanted = [
        ("ip", "iproute2"),
        ("jq", "jq"),
        ("setpriv", "util-linux"),
        ("tshark", "tshark"),
        // xtask's own unit tests check the initramfs writer against the system cpio.
        ("cpio", "cpio"),
        // The lifecycle tests list what the kernel still holds after a SIGKILL.
        ("bpftool", "bpftool"),
        // The CLI tests render the installed man page and load the bash completion.
        ("man", "man-db"),
        ("col", "bsdextrautils"),
        ("bash", "bash"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(b, _)| which(b).is_none())
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_debian() {
        bail!(
            "the tests need these tools installed: {}",
            missing.join(", ")
        );
    }
    apt_install(&missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_steps_name_both_recipes() {
        let s = manual_steps();
        assert!(s.contains("rust-src") && s.contains("bpf-linker") && s.contains("toolchain link"));
    }

    #[test]
    fn core_source_detection() {
        let d = std::env::temp_dir().join(format!("xtask-sysroot-{}", std::process::id()));
        assert!(!has_core_src(&d));
        std::fs::create_dir_all(d.join("lib/rustlib/src/rust/library/core")).unwrap();
        assert!(has_core_src(&d));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The README's first-cargo recipe installs the Rust the workspace declares, and the
    /// "rustup is not installed" message points at it.
    #[test]
    fn quick_start_installs_the_workspace_s_rust() {
        let root = crate::workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("rust-version = "))
            .expect("rust-version in Cargo.toml")
            .trim_matches('"');
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let quick = &readme[readme.find("## Quick start").unwrap()..];
        let quick = &quick[..quick.find("\n## ").unwrap()];
        assert!(
            quick.contains(&format!("--default-toolchain {version}.0")),
            "README's Quick start should install Rust {version}"
        );
        assert!(quick.contains("https://sh.rustup.rs") && quick.contains(". \"$HOME/.cargo/env\""));
    }
}
