//! `cargo xtask deb`: the Debian package, built with dpkg-deb from a staged tree: the release
//! binary (stripped), the systemd unit and its defaults file from `deploy/`, and the man page
//! and shell completions when the tree or the build output has them. `Depends` is what
//! dpkg-shlibdeps finds the binary linked against, nothing more. No maintainer scripts: the
//! unit is installed, not enabled or started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::provision::{output, run};

/// Options of `cargo xtask deb`.
#[derive(clap::Args, Debug, Clone)]
pub struct Opts {
    /// Package this arp-trace binary instead of building the release one.
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Where to write the .deb (default target/debian).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const PACKAGE: &str = "arp-trace";
const UNIT: &str = "deploy/arp-trace.service";
const DEFAULTS: &str = "deploy/arp-trace.default";

/// Files another part of the build may provide, and where the package puts them.
#[derive(Debug, Default, PartialEq)]
pub struct Extras {
    pub man: Option<PathBuf>,
    pub bash: Option<PathBuf>,
    pub zsh: Option<PathBuf>,
    pub fish: Option<PathBuf>,
}

/// Directories never searched for extras: build internals, our own staging, VCS.
const SKIP_DIRS: &[&str] = &[
    ".git",
    "deps",
    "incremental",
    ".fingerprint",
    "debian",
    "vm",
    "tools",
    "node_modules",
];

/// Looks through the source tree and the build output (a few levels deep, so cargo's
/// `target/<profile>/build/<crate>/out/` is covered) for the man page (`arp-trace.1`, maybe
/// gzipped) and the completions clap_complete writes (`arp-trace.bash`, `_arp-trace`,
/// `arp-trace.fish`); the newest of each name wins.
pub fn find_extras(root: &Path) -> Extras {
    fn walk(dir: &Path, depth: u32, found: &mut Vec<(String, PathBuf, SystemTime)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth > 0 && !SKIP_DIRS.contains(&name.as_str()) {
                    walk(&e.path(), depth - 1, found);
                }
            } else if ft.is_file() {
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((name, e.path(), t));
            }
        }
    }
    let mut found = Vec::new();
    walk(root, 6, &mut found);
    let newest = |names: &[&str]| {
        found
            .iter()
            .filter(|(n, _, _)| names.contains(&n.as_str()))
            .max_by_key(|(_, _, t)| *t)
            .map(|(_, p, _)| p.clone())
    };
    Extras {
        man: newest(&["arp-trace.1", "arp-trace.1.gz"]),
        bash: newest(&["arp-trace.bash"]),
        zsh: newest(&["_arp-trace"]),
        fish: newest(&["arp-trace.fish"]),
    }
}

/// `Depends` as dpkg-shlibdeps reads it from the binary's dynamic section.
fn shlib_depends(bin: &Path, scratch: &Path) -> Result<String> {
    let debian = scratch.join("debian");
    std::fs::create_dir_all(&debian)?;
    std::fs::write(
        debian.join("control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"),
    )?;
    let out = output(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(format!("-e{}", bin.display()))
            .current_dir(scratch),
    )?;
    let deps = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out}"))?;
    Ok(deps.trim().to_string())
}

pub fn control(version: &str, arch: &str, depends: &str, installed_kib: u64) -> String {
    format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: arp-trace developers <arp-trace@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Section: net\n\
         Priority: optional\n\
         Description: every ARP request the kernel sends, with its sender address explained\n \
         arp-trace catches every ARP request the Linux kernel transmits, in every\n \
         network namespace, names the packet and the process behind it, and explains\n \
         why the kernel chose its sender address and which sysctl changes that.\n \
         .\n \
         The arp-trace.service unit serves Prometheus metrics on 127.0.0.1:9819; it\n \
         is installed but not started: systemctl enable --now arp-trace.\n"
    )
}

const COPYRIGHT: &str = "arp-trace\n\nCopyright: the arp-trace developers\nLicense: MIT or \
                         Apache-2.0, at your option.\n";

fn install(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::copy(src, dst)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(dst: &Path, text: &str) -> Result<()> {
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(dst, text).with_context(|| format!("cannot write {}", dst.display()))
}

fn du_kib(dir: &Path) -> u64 {
    fn walk(d: &Path) -> u64 {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len().div_ceil(1024)),
            })
            .sum()
    }
    walk(dir)
}

/// Stages the package tree under `stage` and builds the .deb into `out_dir`; returns its path.
pub fn package(root: &Path, bin: &Path, out_dir: &Path) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let work = root.join("target/debian");
    let stage = work.join(format!("{PACKAGE}_{version}_{arch}"));
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage)?;

    let exe = stage.join("usr/bin/arp-trace");
    install(bin, &exe, 0o755)?;
    // Debian ships binaries without debug sections; the build keeps them for profiling.
    run(Command::new("strip")
        .args(["--strip-debug", "--strip-unneeded"])
        .arg(&exe))?;
    install(
        &root.join(UNIT),
        &stage.join("lib/systemd/system/arp-trace.service"),
        0o644,
    )?;
    install(
        &root.join(DEFAULTS),
        &stage.join("etc/default/arp-trace"),
        0o644,
    )?;
    write(&stage.join("usr/share/doc/arp-trace/copyright"), COPYRIGHT)?;

    let extras = find_extras(root);
    if let Some(man) = &extras.man {
        let dst = stage.join("usr/share/man/man1/arp-trace.1.gz");
        if man.extension().is_some_and(|e| e == "gz") {
            install(man, &dst, 0o644)?;
        } else {
            let plain = stage.join("usr/share/man/man1/arp-trace.1");
            install(man, &plain, 0o644)?;
            // -n: no name or time in the header, so the package is reproducible.
            run(Command::new("gzip").args(["-9n", "-f"]).arg(&plain))?;
        }
    }
    for (src, dst) in [
        (
            &extras.bash,
            "usr/share/bash-completion/completions/arp-trace",
        ),
        (&extras.zsh, "usr/share/zsh/vendor-completions/_arp-trace"),
        (
            &extras.fish,
            "usr/share/fish/vendor_completions.d/arp-trace.fish",
        ),
    ] {
        if let Some(src) = src {
            install(src, &stage.join(dst), 0o644)?;
        }
    }

    let depends = shlib_depends(&exe, &work)?;
    let kib = du_kib(&stage);
    write(
        &stage.join("DEBIAN/control"),
        &control(version, &arch, &depends, kib),
    )?;
    write(&stage.join("DEBIAN/conffiles"), "/etc/default/arp-trace\n")?;

    std::fs::create_dir_all(out_dir)?;
    let deb = out_dir.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    // Its chatter goes to stderr: stdout carries only the package's path.
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb)
        .stdout(std::io::stderr()))?;
    eprintln!(
        "xtask: packaged {} (Depends: {depends}; man page {}, completions {})",
        deb.display(),
        if extras.man.is_some() {
            "yes"
        } else {
            "none found"
        },
        match [&extras.bash, &extras.zsh, &extras.fish]
            .iter()
            .filter(|e| e.is_some())
            .count()
        {
            0 => "none found".to_string(),
            n => format!("{n} shells"),
        }
    );
    Ok(deb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_are_found_in_the_tree_and_the_build_output_not_in_internals() {
        let d = std::env::temp_dir().join(format!("xtask-deb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let out = d.join("target/release/build/arp-trace-0123/out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(d.join("doc")).unwrap();
        std::fs::create_dir_all(d.join("target/release/deps")).unwrap();
        std::fs::write(d.join("doc/arp-trace.1"), ".TH").unwrap();
        std::fs::write(out.join("_arp-trace"), "#compdef").unwrap();
        std::fs::write(out.join("arp-trace.bash"), "complete").unwrap();
        std::fs::write(d.join("target/release/deps/arp-trace.fish"), "x").unwrap();
        let e = find_extras(&d);
        assert_eq!(e.man, Some(d.join("doc/arp-trace.1")));
        assert_eq!(e.zsh, Some(out.join("_arp-trace")));
        assert_eq!(e.bash, Some(out.join("arp-trace.bash")));
        assert_eq!(e.fish, None, "deps/ is a build internal");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_control_file_is_one_stanza_with_a_folded_description() {
        let c = control("0.1.0", "amd64", "libc6 (>= 2.34)", 1234);
        assert!(c.starts_with("Package: arp-trace\nVersion: 0.1.0\nArchitecture: amd64\n"));
        assert!(c.contains("\nDepends: libc6 (>= 2.34)\n"));
        assert!(!c.contains("\n\n"), "one stanza");
        for l in c
            .lines()
            .skip_while(|l| !l.starts_with("Description:"))
            .skip(1)
        {
            assert!(l.starts_with(' ') && l.len() <= 80, "{l:?}");
        }
    }

    /// The image builds with the commands a developer runs: the workspace's Rust through
    /// rustup, then `cargo xtask deb`, on the Debian release provision.rs targets.
    #[test]
    fn the_containerfile_builds_with_xtask_and_the_workspace_toolchain() {
        let root = crate::workspace_root();
        let cf = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
        let ws = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let rust = ws
            .lines()
            .find_map(|l| l.strip_prefix("rust-version = "))
            .unwrap()
            .trim_matches('"');
        assert!(
            cf.contains(&format!("ARG RUST_VERSION={rust}.0")),
            "Containerfile's Rust is not the workspace's {rust}"
        );
        let runs: Vec<&str> = cf
            .lines()
            .filter(|l| l.starts_with("RUN ") && l.contains("cargo"))
            .collect();
        assert_eq!(runs, ["RUN cargo xtask deb --output /out"], "{cf}");
        let froms: Vec<&str> = cf.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(froms.len(), 2, "{cf}");
        assert!(froms.iter().all(|f| f.contains(":bookworm")), "{froms:?}");
    }
}
