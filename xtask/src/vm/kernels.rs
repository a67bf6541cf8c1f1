//! Kernel packages: choosing Debian's stock image of a series, downloading and extracting it
//! once into `target/vm/kernels`, and the modules (with their dependencies) the guest loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use super::vm_dir;
use crate::provision::run;

/// The numeric version key of a stock amd64 kernel image package of `series`, and whether it
/// is the unsigned image; `None` for other flavours (cloud, rt, dbg) and other series.
fn package_key(series: &str, name: &str) -> Option<(Vec<u64>, bool)> {
    let rest = name.strip_prefix("linux-image-")?.strip_prefix(series)?;
    // "6.1" must not match "6.12...": the series is followed by a separator.
    if !rest.starts_with(['.', '-']) {
        return None;
    }
    let (middle, unsigned) = if let Some(m) = rest.strip_suffix("-amd64-unsigned") {
        (m, true)
    } else {
        (rest.strip_suffix("-amd64")?, false)
    };
    // 6.1: ".0-50"; 6.12: ".107+deb12". Anything else (e.g. "-cloud") is another flavour.
    let middle = match middle.find("+deb") {
        Some(i) if middle[i + 4..].chars().all(|c| c.is_ascii_digit()) => &middle[..i],
        Some(_) => return None,
        None => middle,
    };
    if !middle
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return None;
    }
    let key = middle
        .split(['.', '-'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some((key, unsigned))
}

/// Stock kernel image packages of `series` among `names`, best first: newest version, and the
/// unsigned image before the signed one (same kernel, no shim/signature wrapper).
pub fn select_packages(series: &str, names: &[String]) -> Vec<String> {
    let mut found: Vec<(Vec<u64>, bool, &String)> = names
        .iter()
        .filter_map(|n| package_key(series, n).map(|(k, u)| (k, u, n)))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    found.into_iter().map(|(_, _, n)| n.clone()).collect()
}

fn apt_package_names() -> Result<Vec<String>> {
    let out = Command::new("apt-cache")
        .args(["pkgnames", "linux-image-6."])
        .output()
        .context("cannot run apt-cache")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// An extracted kernel package: its root directory, `vmlinuz` and `uname -r`.
pub struct Kernel {
    pub package: String,
    pub root: PathBuf,
    pub release: String,
    pub vmlinuz: PathBuf,
}

impl Kernel {
    fn open(package: &str, root: PathBuf) -> Result<Kernel> {
        let boot = root.join("boot");
        let vmlinuz = std::fs::read_dir(&boot)
            .with_context(|| format!("reading {}", boot.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .ok_or_else(|| anyhow!("no vmlinuz in {}", boot.display()))?;
        let release = vmlinuz
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("vmlinuz-")
            .to_string();
        // Packages ship no modules.dep: dpkg's postinst runs depmod, which extraction skips.
        let dep = root.join("lib/modules").join(&release).join("modules.dep");
        if !dep.is_file() {
            run(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
        }
        Ok(Kernel {
            package: package.into(),
            root,
            release,
            vmlinuz,
        })
    }

    pub(super) fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// The kernel of `series`, from the cache (`target/vm/kernels/<package>`) or downloaded once.
pub fn fetch_kernel(series: &str) -> Result<Kernel> {
    let cache = vm_dir().join("kernels");
    std::fs::create_dir_all(&cache)?;
    let cached: Vec<String> = std::fs::read_dir(&cache)?
        .flatten()
        .filter(|e| e.path().join(".complete").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if let Some(pkg) = select_packages(series, &cached).first() {
        eprintln!("xtask: vm: kernel {series}: cached {pkg}");
        return Kernel::open(pkg, cache.join(pkg));
    }
    let t = Instant::now();
    let mut names = apt_package_names()?;
    if select_packages(series, &names).is_empty() {
        run(crate::provision::apt_get().args(["update", "-qq"]))?;
        names = apt_package_names()?;
    }
    let candidates = select_packages(series, &names);
    if candidates.is_empty() {
        bail!(
            "no Debian package linux-image-{series}*-amd64 is known to apt: add bookworm (6.1) \
             and bookworm-backports or -updates (6.12) to the apt sources, then run again"
        );
    }
    let dl = vm_dir().join("download");
    let (pkg, deb) = match download(&candidates, &dl) {
        Ok(found) => found,
        Err(e) => {
            // Stale package lists name versions the mirror no longer has.
            eprintln!("xtask: vm: {e:#}; refreshing the package lists and retrying");
            run(crate::provision::apt_get().args(["update", "-qq"]))?;
            download(&select_packages(series, &apt_package_names()?), &dl)?
        }
    };
    let t_dl = t.elapsed();
    let tmp = cache.join(format!("{pkg}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    std::fs::write(tmp.join(".complete"), "")?;
    let dst = cache.join(&pkg);
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::rename(&tmp, &dst)?;
    let _ = std::fs::remove_dir_all(&dl);
    eprintln!(
        "xtask: vm: kernel {series}: {pkg} downloaded in {:.1}s, extracted in {:.1}s",
        t_dl.as_secs_f64(),
        (t.elapsed() - t_dl).as_secs_f64()
    );
    Kernel::open(&pkg, dst)
}

/// Downloads the first of `candidates` (best first) apt can fetch into an empty `dl`.
fn download(candidates: &[String], dl: &Path) -> Result<(String, PathBuf)> {
    let _ = std::fs::remove_dir_all(dl);
    std::fs::create_dir_all(dl)?;
    // A name apt knows may have no downloadable version (e.g. only referenced); try the next.
    let mut last_err = String::from("no candidate packages");
    for pkg in candidates.iter().take(3) {
        let status = Command::new("apt-get")
            // Root cannot hand a directory under target/ to the _apt sandbox user; skip it.
            .args(["download", "-q", "-o", "APT::Sandbox::User=root", pkg])
            .current_dir(dl)
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            last_err = format!("apt-get download {pkg} failed ({status})");
            continue;
        }
        let deb = std::fs::read_dir(dl)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| anyhow!("apt-get download {pkg} left no .deb"))?;
        return Ok((pkg.clone(), deb));
    }
    bail!("cannot download a kernel package: {last_err}")
}

/// Modules to load for `name` (as named in modules.dep, e.g. `veth`), dependencies first.
pub fn module_load_order(modules_dep: &str, name: &str) -> Result<Vec<String>> {
    let deps: BTreeMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    let find = |n: &str| -> Option<&str> {
        deps.keys()
            .copied()
            .find(|k| module_name(k) == n.replace('-', "_"))
    };
    let root = find(name).ok_or_else(|| anyhow!("module {name} is not in modules.dep"))?;
    let mut order = Vec::new();
    fn visit<'a>(
        m: &'a str,
        deps: &BTreeMap<&'a str, Vec<&'a str>>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 {
            bail!("module dependency cycle at {m}");
        }
        if order.iter().any(|o| o == m) {
            return Ok(());
        }
        for d in deps.get(m).map(|v| v.as_slice()).unwrap_or_default() {
            visit(d, deps, order, depth + 1)?;
        }
        order.push(m.to_string());
        Ok(())
    }
    visit(root, &deps, &mut order, 0)?;
    Ok(order)
}

/// `kernel/drivers/net/veth.ko.xz` -> `veth` (dashes as underscores, as the kernel does).
pub(super) fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// The module file's content, decompressed (insmod in busybox takes plain `.ko`).
pub(super) fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => std::fs::read(path).with_context(|| format!("reading {name}")),
        Some(t) => {
            let out = Command::new(t)
                .args(["-dc"])
                .arg(path)
                .output()
                .with_context(|| format!("cannot run {t}"))?;
            if !out.status.success() {
                bail!(
                    "{t} -dc {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(out.stdout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn package_selection_prefers_newest_unsigned_stock_image() {
        let all = names(&[
            "linux-image-6.1.0-47-amd64",
            "linux-image-6.1.0-50-amd64",
            "linux-image-6.1.0-50-amd64-unsigned",
            "linux-image-6.1.0-50-amd64-dbg",
            "linux-image-6.1.0-51-cloud-amd64-unsigned",
            "linux-image-6.1.0-52-rt-amd64",
            "linux-image-6.1.0-9-amd64",
            "linux-image-6.12.107+deb12-amd64",
            "linux-image-6.12.107+deb12-amd64-unsigned",
            "linux-image-6.12.99+deb12-amd64-unsigned",
            "linux-image-6.12.111+deb12-cloud-amd64",
            "linux-image-6.10.0-1-amd64",
            "linux-image-amd64",
        ]);
        assert_eq!(
            select_packages("6.1", &all),
            names(&[
                "linux-image-6.1.0-50-amd64-unsigned",
                "linux-image-6.1.0-50-amd64",
                "linux-image-6.1.0-47-amd64",
                "linux-image-6.1.0-9-amd64",
            ])
        );
        assert_eq!(
            select_packages("6.12", &all),
            names(&[
                "linux-image-6.12.107+deb12-amd64-unsigned",
                "linux-image-6.12.107+deb12-amd64",
                "linux-image-6.12.99+deb12-amd64-unsigned",
            ])
        );
        assert!(select_packages("6.6", &all).is_empty());
    }

    #[test]
    fn module_order_puts_dependencies_first() {
        let dep = "kernel/drivers/net/veth.ko.xz:\n\
                   kernel/net/a.ko: kernel/net/b.ko kernel/net/c-d.ko\n\
                   kernel/net/b.ko: kernel/net/c-d.ko\n\
                   kernel/net/c-d.ko:\n";
        assert_eq!(
            module_load_order(dep, "veth").unwrap(),
            ["kernel/drivers/net/veth.ko.xz"]
        );
        assert_eq!(
            module_load_order(dep, "a").unwrap(),
            ["kernel/net/c-d.ko", "kernel/net/b.ko", "kernel/net/a.ko"]
        );
        assert!(module_load_order(dep, "c_d").is_ok());
        assert!(module_load_order(dep, "dummy").is_err());
    }
}
