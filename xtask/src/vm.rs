//! The VM suite: boots Debian's stock kernels under QEMU (software emulation) and runs every
//! end-to-end test binary of `arp-trace-e2e` inside each guest, against that guest's kernel.
//!
//! Everything the guest needs goes into an initramfs built here: static busybox, the real
//! tools the tests drive (iproute2's `ip`, jq, setpriv, ...) with the libraries `ldd` lists,
//! the tracer, the test binaries and the `veth` module. The guest's `/init` prints marker
//! lines over the serial console; the host parses them to decide pass or fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::provision::run;

/// One guest run: a kernel series and the hook set the tracer is told to use. `auto` leaves
/// `ARP_TRACE_HOOKS` unset so the tracer picks; any other value needs `arp-trace --hooks`.
pub struct Row {
    pub kernel: &'static str,
    pub hooks: &'static str,
}

/// The matrix `cargo xtask test` runs. Adding a kernel or hook set is one line here.
pub const MATRIX: &[Row] = &[
    Row {
        kernel: "6.1",
        hooks: "auto",
    },
    Row {
        kernel: "6.12",
        hooks: "auto",
    },
    Row {
        kernel: "6.1",
        hooks: "kprobe",
    },
    Row {
        kernel: "6.12",
        hooks: "kprobe",
    },
    Row {
        kernel: "6.1",
        hooks: "tracepoint",
    },
    Row {
        kernel: "6.12",
        hooks: "tracepoint",
    },
];

/// Kernel series the suite knows how to fetch (Debian bookworm and bookworm-backports/updates).
pub const SERIES: &[&str] = &["6.1", "6.12"];

/// Tools the harness runs even if no source mentions them literally.
const BASE_TOOLS: &[&str] = &["ip", "jq", "setpriv"];
/// Test binaries whose subject does not depend on the kernel (trace files, replay, pcapng
/// read by tshark): they run on the host only, and their tools stay out of the guest.
const HOST_ONLY_TESTS: &[&str] = &["traces"];

/// Modules the guest loads (the tests build veth pairs).
const MODULES: &[&str] = &["veth"];

/// The harness multiplies its waits by ARP_TRACE_TIMEOUT_SCALE; software emulation runs the
/// tests about 3-5 times slower than the host, and the host may be busy too. The host's own
/// ARP_TRACE_TIMEOUT_SCALE, if set, wins.
const GUEST_TIMEOUT_SCALE: &str = "5";

const MARK: &str = "@@ARP-TRACE-VM@@";

/// Per-guest limit: boot plus every test binary. Override with ARP_TRACE_VM_TIMEOUT (seconds).
const DEFAULT_GUEST_TIMEOUT: Duration = Duration::from_secs(900);

pub struct Opts {
    /// Kernel series to run ("6.1", "6.12").
    pub kernels: Vec<String>,
    /// Explicit hook set; `None` runs the matrix rows of the chosen kernels.
    pub hooks: Option<String>,
    /// Arguments for every test binary (filters, `--test-threads`, ...).
    pub args: Vec<String>,
    /// The tracer to put in the guest.
    pub bin: PathBuf,
    /// eBPF toolchain, so building the test binaries reuses the host run's fingerprints.
    pub toolchain: String,
}

pub fn vm_dir() -> PathBuf {
    crate::workspace_root().join("target").join("vm")
}

/// Debian packages the suite needs on the host.
pub fn ensure_tools() -> Result<()> {
    let wanted = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("cpio", "cpio"),
        ("xz", "xz-utils"),
        ("objcopy", "binutils"),
        ("depmod", "kmod"),
    ];
    let mut missing: Vec<&str> = wanted
        .iter()
        .filter(|(b, _)| crate::provision::which(b).is_none())
        .map(|(_, p)| *p)
        .collect();
    if !is_static_busybox(Path::new("/bin/busybox")) {
        missing.push("busybox-static");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::provision::is_debian() {
        bail!(
            "the VM suite needs these Debian packages: {} (or skip it: --no-vm)",
            missing.join(", ")
        );
    }
    crate::provision::apt_install(&missing)
}

fn is_static_busybox(p: &Path) -> bool {
    if !p.is_file() {
        return false;
    }
    match Command::new("ldd").arg(p).output() {
        Ok(o) => parse_ldd(&String::from_utf8_lossy(&o.stdout))
            .map(|v| v.is_empty())
            .unwrap_or(false),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel packages
// ---------------------------------------------------------------------------------------------

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

    fn modules_dir(&self) -> PathBuf {
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
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// The module file's content, decompressed (insmod in busybox takes plain `.ko`).
fn read_module(path: &Path) -> Result<Vec<u8>> {
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

// ---------------------------------------------------------------------------------------------
// Binaries and their libraries
// ---------------------------------------------------------------------------------------------

/// The shared objects `ldd` lists (resolved paths and the loader); errors on "not found".
pub fn parse_ldd(out: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                bail!("shared library {} not found", name.trim());
            }
            if let Some(p) = rest
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                libs.push(PathBuf::from(p));
            }
        } else if let Some(p) = line
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

fn ldd(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Static binaries: nothing to copy.
        if text.contains("not a dynamic executable") || text.contains("statically linked") {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", bin.display()))
}

/// Programs the e2e sources start with `Command::new("...")`, so a tool another branch adds
/// to the tests (tshark, ...) lands in the guest without editing this list.
pub fn tools_named_in(source: &str) -> BTreeSet<String> {
    let mut tools = BTreeSet::new();
    let needle = "Command::new(\"";
    let mut rest = source;
    while let Some(i) = rest.find(needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            let name = &rest[..end];
            // The guest's shell is busybox's: /init itself runs on it.
            if !name.is_empty() && !name.contains('/') && name != "sh" {
                tools.insert(name.to_string());
            }
            rest = &rest[end..];
        }
    }
    tools
}

fn e2e_tools() -> Result<BTreeSet<String>> {
    let mut tools: BTreeSet<String> = BASE_TOOLS.iter().map(|s| s.to_string()).collect();
    let root = crate::workspace_root().join("tests");
    for dir in [root.join("src"), root.join("tests")] {
        for e in std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
        {
            let host_only = e
                .path()
                .file_stem()
                .is_some_and(|n| HOST_ONLY_TESTS.iter().any(|h| n == *h));
            if e.path().extension().is_some_and(|x| x == "rs") && !host_only {
                tools.extend(tools_named_in(&std::fs::read_to_string(e.path())?));
            }
        }
    }
    Ok(tools)
}

/// A test binary of `arp-trace-e2e`: its target name and path.
pub struct TestBin {
    pub name: String,
    pub path: PathBuf,
}

/// Test executables (integration test targets only) from `cargo --message-format=json`.
pub fn parse_test_artifacts(json_lines: &str, package: &str) -> Vec<TestBin> {
    let mut bins = Vec::new();
    for line in json_lines.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let pkg = v["package_id"].as_str().unwrap_or("");
        // "path+file:///w/tests#arp-trace-e2e@0.1.0" or "arp-trace-e2e 0.1.0 (path+...)".
        let ours = pkg.contains(&format!("#{package}@"))
            || pkg.starts_with(&format!("{package} "))
            || pkg.ends_with(&format!("#{package}"));
        let is_test = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        let host_only = v["target"]["name"]
            .as_str()
            .is_some_and(|n| HOST_ONLY_TESTS.contains(&n));
        if let (true, true, Some(exe), Some(name)) = (
            ours,
            is_test && !host_only,
            v["executable"].as_str(),
            v["target"]["name"].as_str(),
        ) {
            bins.push(TestBin {
                name: name.to_string(),
                path: PathBuf::from(exe),
            });
        }
    }
    bins.sort_by(|a, b| a.name.cmp(&b.name));
    bins
}

fn build_test_bins(toolchain: &str) -> Result<Vec<TestBin>> {
    let mut c = crate::cargo();
    c.arg("test")
        .args(crate::TEST_PACKAGES)
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .env("ARP_TRACE_EBPF_TOOLCHAIN", toolchain)
        .stderr(Stdio::inherit());
    eprintln!("xtask: running {c:?}");
    let out = c.output().context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building the e2e test binaries failed ({})", out.status);
    }
    let bins = parse_test_artifacts(&String::from_utf8_lossy(&out.stdout), "arp-trace-e2e");
    if bins.is_empty() {
        bail!("cargo reported no test binaries for arp-trace-e2e");
    }
    Ok(bins)
}

// ---------------------------------------------------------------------------------------------
// Initramfs (cpio "newc")
// ---------------------------------------------------------------------------------------------

enum Node {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// An in-memory newc archive. Parents are added automatically; entries are written sorted,
/// so every directory precedes its contents as the kernel's unpacker requires.
#[derive(Default)]
pub struct Cpio {
    nodes: BTreeMap<String, Node>,
}

impl Cpio {
    fn add(&mut self, path: &str, node: Node) {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.nodes
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Node::Dir);
            parent = p.parent();
        }
        self.nodes.insert(path, node);
    }

    pub fn dir(&mut self, path: &str) {
        self.add(path, Node::Dir);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add(path, Node::File { data, mode });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(path, Node::Symlink(target.into()));
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path.trim_start_matches('/'))
    }

    /// A host file at `guest` (symlinks followed), mode kept.
    fn host_file(&mut self, host: &Path, guest: &str) -> Result<()> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = std::fs::metadata(host)?.permissions().mode() & 0o7777;
        self.file(guest, data, mode);
        Ok(())
    }

    /// A binary plus every library it links, each at its host path.
    fn binary_with_libs(&mut self, host: &Path, guest: &str) -> Result<()> {
        self.host_file(host, guest)?;
        for lib in ldd(host)? {
            let g = lib.to_string_lossy().into_owned();
            if !self.contains(&g) {
                self.host_file(&lib, &g)?;
            }
        }
        Ok(())
    }

    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut ino = 1u32;
        let mut entry = |w: &mut dyn Write, name: &str, mode: u32, data: &[u8]| {
            let namesize = name.len() + 1;
            let header = format!(
                "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
                0, 0, if mode & 0o170000 == 0o040000 { 2 } else { 1 }, 0,
                data.len(), 0, 0, 0, 0, 0
            );
            ino += 1;
            w.write_all(header.as_bytes())?;
            w.write_all(name.as_bytes())?;
            w.write_all(&[0])?;
            w.write_all(&[0; 3][..pad4(110 + namesize)])?;
            w.write_all(data)?;
            w.write_all(&[0; 3][..pad4(data.len())])
        };
        for (name, node) in &self.nodes {
            match node {
                Node::Dir => entry(w, name, 0o040755, &[])?,
                Node::File { data, mode } => entry(w, name, 0o100000 | mode, data)?,
                Node::Symlink(t) => entry(w, name, 0o120777, t.as_bytes())?,
            }
        }
        entry(w, "TRAILER!!!", 0, &[])
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// `arg` quoted for a POSIX shell.
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

const INIT: &str = r#"#!/bin/sh
# Guest init: mount what the tracer and the tests need, run each test binary, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
. /etc/arp-trace-vm.env
for m in $VM_MODULES; do
    insmod "/lib/modules/$m" || echo "@@ARP-TRACE-VM@@ ERROR insmod $m"
done
ip link set lo up
echo "@@ARP-TRACE-VM@@ BOOTED $(uname -r) $(cut -d' ' -f1 /proc/uptime)"
eval "set -- $VM_TEST_ARGS"
for t in $VM_TESTS; do
    echo "@@ARP-TRACE-VM@@ BEGIN $t"
    "/tests/$t" "$@"
    rc=$?
    echo
    echo "@@ARP-TRACE-VM@@ END $t $rc"
done
echo "@@ARP-TRACE-VM@@ DONE"
poweroff -f
"#;

/// Host-side inputs shared by every guest.
pub struct Payload {
    tracer: Vec<u8>,
    tests: Vec<(String, Vec<u8>)>,
    tools: Vec<PathBuf>,
    /// Libraries the tracer and the test binaries link.
    libs: BTreeSet<PathBuf>,
}

/// A copy of `path` without debug info: the guest only runs it, and a tmpfs root of
/// unstripped debug binaries costs guest memory and copy time.
fn stripped(path: &Path) -> Result<Vec<u8>> {
    let dir = vm_dir().join("stage");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(path.file_name().unwrap());
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(path)
        .arg(&out))?;
    let data = std::fs::read(&out)?;
    let _ = std::fs::remove_file(&out);
    Ok(data)
}

pub fn payload(bin: &Path, toolchain: &str) -> Result<Payload> {
    let bins = build_test_bins(toolchain)?;
    let mut libs: BTreeSet<PathBuf> = ldd(bin)?.into_iter().collect();
    for t in &bins {
        libs.extend(ldd(&t.path)?);
    }
    let tests = bins
        .into_iter()
        .map(|t| Ok((t.name, stripped(&t.path)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut tools = Vec::new();
    for t in e2e_tools()? {
        match crate::provision::which(&t) {
            Some(p) => tools.push(p),
            None => bail!("the e2e tests run `{t}`, which is not installed on this machine"),
        }
    }
    Ok(Payload {
        tracer: stripped(bin)?,
        tests,
        tools,
        libs,
    })
}

/// The initramfs for one guest run.
fn initramfs(p: &Payload, k: &Kernel, hooks: Option<&str>, args: &[String]) -> Result<Cpio> {
    let mut c = Cpio::default();
    for d in [
        "proc", "sys", "dev", "run", "tmp", "root", "etc", "sbin", "usr/sbin", "var",
    ] {
        c.dir(d);
    }
    c.host_file(Path::new("/bin/busybox"), "/bin/busybox")?;
    let mut tool_names = BTreeSet::new();
    for t in &p.tools {
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        c.binary_with_libs(t, &format!("/usr/bin/{name}"))?;
        tool_names.insert(name);
    }
    let applets = Command::new("/bin/busybox").arg("--list").output()?;
    for a in String::from_utf8_lossy(&applets.stdout).lines() {
        // The real tools win: busybox `ip` cannot create veth pairs.
        if !a.is_empty() && a != "busybox" && !tool_names.contains(a) {
            c.symlink(&format!("/bin/{a}"), "busybox");
        }
    }
    c.file("/usr/bin/arp-trace", p.tracer.clone(), 0o755);
    for lib in &p.libs {
        let g = lib.to_string_lossy().into_owned();
        if !c.contains(&g) {
            c.host_file(lib, &g)?;
        }
    }
    for (name, data) in &p.tests {
        c.file(&format!("/tests/{name}"), data.clone(), 0o755);
    }
    let dep = std::fs::read_to_string(k.modules_dir().join("modules.dep"))
        .with_context(|| format!("reading modules.dep of {}", k.release))?;
    let mut modules = Vec::new();
    for m in MODULES {
        for rel in module_load_order(&dep, m)? {
            let name = format!("{}.ko", module_name(&rel));
            if !modules.contains(&name) {
                c.file(
                    &format!("/lib/modules/{name}"),
                    read_module(&k.modules_dir().join(&rel))?,
                    0o644,
                );
                modules.push(name);
            }
        }
    }
    c.file("/init", INIT.as_bytes().to_vec(), 0o755);
    let mut env = String::new();
    writeln!(env, "VM_MODULES={}", shell_quote(&modules.join(" "))).unwrap();
    let names: Vec<&str> = p.tests.iter().map(|(n, _)| n.as_str()).collect();
    writeln!(env, "VM_TESTS={}", shell_quote(&names.join(" "))).unwrap();
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    writeln!(env, "VM_TEST_ARGS={}", shell_quote(&quoted.join(" "))).unwrap();
    writeln!(env, "export ARP_TRACE_BIN=/usr/bin/arp-trace").unwrap();
    let scale = std::env::var("ARP_TRACE_TIMEOUT_SCALE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| GUEST_TIMEOUT_SCALE.to_string());
    writeln!(
        env,
        "export ARP_TRACE_TIMEOUT_SCALE={}",
        shell_quote(&scale)
    )
    .unwrap();
    if let Some(h) = hooks {
        writeln!(env, "export ARP_TRACE_HOOKS={}", shell_quote(h)).unwrap();
    }
    c.file("/etc/arp-trace-vm.env", env.into_bytes(), 0o644);
    c.file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
            .to_vec(),
        0o644,
    );
    c.file(
        "/etc/group",
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        0o644,
    );
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Markers
// ---------------------------------------------------------------------------------------------

/// What one test binary did in the guest.
#[derive(Debug, Default, PartialEq)]
pub struct BinResult {
    pub name: String,
    /// Exit code; `None` if its END marker never came.
    pub rc: Option<i32>,
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    pub failed_tests: Vec<String>,
}

/// Everything the host learns from the guest's console.
#[derive(Debug, Default, PartialEq)]
pub struct GuestReport {
    pub booted: bool,
    pub done: bool,
    pub bins: Vec<BinResult>,
    pub errors: Vec<String>,
    /// The guest kernel died on a stray breakpoint (`Oops: int3`) and where: the kernel
    /// patches a hooked function's first bytes through an int3 when a hook is attached or
    /// detached, and under TCG's multi-threaded emulation another vCPU can still run that
    /// byte after the patch is done. Seen once in a 6.12 guest, at `arp_solicit+0x5`.
    pub stray_int3: Option<String>,
}

/// Feeds console lines in order; markers may sit after other text on the same line because
/// kernel messages share the console.
impl GuestReport {
    pub fn feed(&mut self, line: &str) {
        if let Some(i) = line.find("Oops: int3") {
            self.stray_int3
                .get_or_insert_with(|| line[i..].trim().to_string());
        } else if let Some(i) = line.find("RIP: 0010:") {
            if let Some(s) = self.stray_int3.as_mut().filter(|s| !s.contains(" at ")) {
                s.push_str(" at ");
                s.push_str(line[i + "RIP: 0010:".len()..].trim());
            }
        }
        if let Some(i) = line.find(MARK) {
            let mut w = line[i + MARK.len()..].split_whitespace();
            match w.next() {
                Some("BOOTED") => self.booted = true,
                Some("BEGIN") => self.bins.push(BinResult {
                    name: w.next().unwrap_or("?").to_string(),
                    ..Default::default()
                }),
                Some("END") => {
                    let name = w.next().unwrap_or("?");
                    let rc = w.next().and_then(|r| r.parse().ok());
                    match self.bins.last_mut().filter(|b| b.name == name) {
                        Some(b) => b.rc = rc,
                        None => self.errors.push(format!("END without BEGIN for {name}")),
                    }
                }
                Some("DONE") => self.done = true,
                Some("ERROR") => self.errors.push(w.collect::<Vec<_>>().join(" ")),
                _ => {}
            }
            return;
        }
        let Some(cur) = self.bins.last_mut().filter(|b| b.rc.is_none()) else {
            return;
        };
        let line = line.trim();
        // libtest: "test result: FAILED. 3 passed; 1 failed; 0 ignored; ..."
        if let Some(r) = line.strip_prefix("test result: ") {
            for part in r.split(';') {
                let mut w = part.split_whitespace().rev();
                let (what, n) = (w.next(), w.next().and_then(|n| n.parse::<u32>().ok()));
                match (what, n) {
                    (Some("passed"), Some(n)) => cur.passed += n,
                    (Some("failed"), Some(n)) => cur.failed += n,
                    (Some("ignored"), Some(n)) => cur.ignored += n,
                    _ => {}
                }
            }
        } else if let Some(t) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            cur.failed_tests.push(t.to_string());
        }
    }

    /// Why this run failed, or `None` if every expected binary ran and exited 0.
    pub fn verdict(&self, expected: &[String]) -> Option<String> {
        let mut why = Vec::new();
        if !self.booted {
            why.push("the guest never reached the test runner".to_string());
        }
        why.extend(self.errors.iter().cloned());
        for e in expected {
            match self.bins.iter().find(|b| &b.name == e) {
                None => why.push(format!("{e}: never started")),
                Some(b) => match b.rc {
                    None => why.push(format!("{e}: no exit marker (guest died or hung)")),
                    Some(0) => {}
                    Some(rc) => why.push(format!(
                        "{e}: exit {rc}, failed: {}",
                        if b.failed_tests.is_empty() {
                            "(no test names reported)".to_string()
                        } else {
                            b.failed_tests.join(", ")
                        }
                    )),
                },
            }
        }
        if why.is_empty() && !self.done {
            why.push("no DONE marker".into());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// Running guests
// ---------------------------------------------------------------------------------------------

struct RowOutcome {
    label: String,
    report: GuestReport,
    failure: Option<String>,
    boot: Option<Duration>,
    wall: Duration,
}

fn guest_timeout() -> Duration {
    std::env::var("ARP_TRACE_VM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_GUEST_TIMEOUT)
}

fn boot(k: &Kernel, initrd: &Path, label: &str, expected: &[String]) -> Result<RowOutcome> {
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-m", "1536"])
        .args(["-smp", "2", "-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = printable(&String::from_utf8_lossy(&buf));
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        }));
    }
    drop(tx);
    let deadline = start + guest_timeout();
    let mut report = GuestReport::default();
    let mut boot_time = None;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                println!("[{label}] {line}");
                report.feed(&line);
                if boot_time.is_none() && report.booted {
                    boot_time = Some(start.elapsed());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait()?;
    for r in readers {
        let _ = r.join();
    }
    let mut failure = report.verdict(expected);
    if timed_out {
        failure = Some(format!(
            "guest did not finish within {}s (ARP_TRACE_VM_TIMEOUT); qemu killed; {}",
            guest_timeout().as_secs(),
            failure.unwrap_or_default()
        ));
    } else if !status.success() && failure.is_none() {
        failure = Some(format!("qemu exited with {status}"));
    }
    Ok(RowOutcome {
        label: label.into(),
        report,
        failure,
        boot: boot_time,
        wall: start.elapsed(),
    })
}

/// `line` without terminal escape sequences and control characters (the firmware clears the
/// screen), so CI logs stay readable.
pub fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// Whether the tracer understands `--hooks` (added on another branch; rows needing it wait).
fn tracer_has_hooks(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--hooks"))
        .unwrap_or(false)
}

/// A guest run: kernel series and `ARP_TRACE_HOOKS` (`None`: unset, the tracer picks).
type Planned = (String, Option<String>);
/// A matrix row left out: kernel series and hook set.
type Skipped = (String, String);

/// The guest runs for `kernels`: `hooks` on each if given, else the matrix rows. Rows naming a
/// hook set are skipped (second list) while the tracer has no `--hooks` option.
fn plan(
    kernels: &[String],
    hooks: Option<&str>,
    has_hooks: bool,
) -> Result<(Vec<Planned>, Vec<Skipped>)> {
    if let Some(h) = hooks {
        if !has_hooks {
            bail!("--hooks {h}: this arp-trace has no --hooks option yet; run without --hooks");
        }
        let rows = kernels
            .iter()
            .map(|k| (k.clone(), Some(h.into())))
            .collect();
        return Ok((rows, Vec::new()));
    }
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for r in MATRIX
        .iter()
        .filter(|r| kernels.iter().any(|k| k == r.kernel))
    {
        if r.hooks == "auto" {
            rows.push((r.kernel.to_string(), None));
        } else if has_hooks {
            rows.push((r.kernel.to_string(), Some(r.hooks.to_string())));
        } else {
            skipped.push((r.kernel.to_string(), r.hooks.to_string()));
        }
    }
    Ok((rows, skipped))
}

/// Runs the suite and fails if any guest run failed.
pub fn run_suite(opts: &Opts) -> Result<()> {
    let suite_start = Instant::now();
    for k in &opts.kernels {
        if !SERIES.contains(&k.as_str()) {
            bail!(
                "unknown kernel {k:?}: choose one of {} or all",
                SERIES.join(", ")
            );
        }
    }
    let has_hooks = tracer_has_hooks(&opts.bin);
    let (rows, skipped) = plan(&opts.kernels, opts.hooks.as_deref(), has_hooks)?;
    for (k, h) in skipped {
        eprintln!(
            "xtask: vm: skipping {k} --hooks {h}: `arp-trace --help` has no --hooks option yet"
        );
    }
    ensure_tools()?;
    let t = Instant::now();
    let payload = payload(&opts.bin, &opts.toolchain)?;
    eprintln!(
        "xtask: vm: test binaries and tools ready in {:.1}s: {}",
        t.elapsed().as_secs_f64(),
        payload
            .tests
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let expected: Vec<String> = payload.tests.iter().map(|(n, _)| n.clone()).collect();
    let mut kernels: BTreeMap<String, Kernel> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for (series, hooks) in &rows {
        if !kernels.contains_key(series) {
            let t = Instant::now();
            let k = fetch_kernel(series)?;
            eprintln!(
                "xtask: vm: kernel {series} = {} ({}) ready in {:.1}s",
                k.release,
                k.package,
                t.elapsed().as_secs_f64()
            );
            kernels.insert(series.clone(), k);
        }
        let k = &kernels[series];
        let label = format!("{series} {}", hooks.as_deref().unwrap_or("auto"));
        let t = Instant::now();
        let cpio = initramfs(&payload, k, hooks.as_deref(), &opts.args)?;
        let path = vm_dir().join(format!(
            "initramfs-{series}-{}.cpio",
            hooks.as_deref().unwrap_or("auto")
        ));
        let mut w = BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        cpio.write_to(&mut w)?;
        w.flush()?;
        drop(w);
        eprintln!(
            "xtask: vm: [{label}] initramfs {} ({} MB) built in {:.1}s; booting",
            path.display(),
            std::fs::metadata(&path)?.len() / 1_000_000,
            t.elapsed().as_secs_f64()
        );
        let mut outcome = boot(k, &path, &label, &expected)?;
        // Only a guest kernel that died on a stray int3 gets a second boot, and it is said.
        if let (Some(_), Some(int3)) = (&outcome.failure, outcome.report.stray_int3.clone()) {
            eprintln!(
                "xtask: vm: [{label}] the guest kernel died on a stray breakpoint ({int3}): \
                 emulated vCPUs can run a byte the kernel's text patching (hook attach or \
                 detach) already replaced; booting this row once more"
            );
            outcome = boot(k, &path, &label, &expected)?;
            outcome.label = format!("{label}, second boot after a stray int3");
        }
        outcomes.push(outcome);
    }
    eprintln!("xtask: vm: summary");
    let mut failed = Vec::new();
    for o in &outcomes {
        let passed: u32 = o.report.bins.iter().map(|b| b.passed).sum();
        let nfailed: u32 = o.report.bins.iter().map(|b| b.failed).sum();
        let ignored: u32 = o.report.bins.iter().map(|b| b.ignored).sum();
        eprintln!(
            "xtask: vm: [{}] {}: {passed} passed, {nfailed} failed, {ignored} ignored; boot to \
             first test {}, \
             wall {:.0}s",
            o.label,
            if o.failure.is_none() { "ok" } else { "FAILED" },
            o.boot
                .map(|b| format!("{:.1}s", b.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            o.wall.as_secs_f64()
        );
        if let Some(f) = &o.failure {
            eprintln!("xtask: vm: [{}]   {f}", o.label);
            failed.push(o.label.clone());
        }
    }
    eprintln!(
        "xtask: vm: suite took {:.0}s",
        suite_start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("VM suite failed on: {}", failed.join(", "));
    }
    Ok(())
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
    fn ldd_output_gives_resolved_paths_and_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x00007f0e)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libbpf.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libfoo.so.1"), "{err}");
    }

    #[test]
    fn ldd_of_real_binaries_finds_libc() {
        let libs = ldd(Path::new("/bin/sh")).unwrap();
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("libc.so")));
        assert!(libs.iter().all(|l| l.is_file()), "{libs:?}");
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

    #[test]
    fn markers_and_libtest_summary_are_parsed() {
        let console = "\
[    1.2] random: crng init done
@@ARP-TRACE-VM@@ BOOTED 6.1.0-50-amd64 3.21
@@ARP-TRACE-VM@@ BEGIN capture
running 3 tests
test a ... ok
test b ... FAILED
test c ... ok
test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out
[   40.0] veth: some kernel line @@ARP-TRACE-VM@@ END capture 101
@@ARP-TRACE-VM@@ BEGIN netns_names
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out
@@ARP-TRACE-VM@@ END netns_names 0
@@ARP-TRACE-VM@@ DONE
";
        let mut r = GuestReport::default();
        console.lines().for_each(|l| r.feed(l));
        assert!(r.booted && r.done);
        assert_eq!(
            r.bins,
            vec![
                BinResult {
                    name: "capture".into(),
                    rc: Some(101),
                    passed: 2,
                    failed: 1,
                    ignored: 1,
                    failed_tests: vec!["b".into()],
                },
                BinResult {
                    name: "netns_names".into(),
                    rc: Some(0),
                    passed: 4,
                    failed: 0,
                    ignored: 0,
                    failed_tests: vec![],
                },
            ]
        );
        let v = r.verdict(&names(&["capture", "netns_names"])).unwrap();
        assert!(v.contains("capture: exit 101, failed: b"), "{v}");
        assert!(!v.contains("netns_names"), "{v}");
        // A binary the host built but the guest never ran is a failure too.
        let v = r.verdict(&names(&["netns_names", "attribution"])).unwrap();
        assert!(v.contains("attribution: never started"), "{v}");
    }

    #[test]
    fn missing_markers_fail() {
        let mut r = GuestReport::default();
        assert!(r.verdict(&names(&["capture"])).is_some());
        r.feed("@@ARP-TRACE-VM@@ BOOTED x 1.0");
        r.feed("@@ARP-TRACE-VM@@ BEGIN capture");
        r.feed("test result: ok. 1 passed; 0 failed;");
        let v = r.verdict(&names(&["capture"])).unwrap();
        assert!(v.contains("no exit marker"), "{v}");
        r.feed("@@ARP-TRACE-VM@@ END capture 0");
        assert_eq!(r.verdict(&names(&["capture"])).unwrap(), "no DONE marker");
        r.feed("@@ARP-TRACE-VM@@ DONE");
        assert_eq!(r.verdict(&names(&["capture"])), None);
    }

    #[test]
    fn test_artifacts_are_picked_from_cargo_json() {
        let json = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/tests#arp-trace-e2e@0.1.0","target":{"kind":["test"],"name":"capture"},"executable":"/w/target/debug/deps/capture-1"}
{"reason":"compiler-artifact","package_id":"path+file:///w/tests#arp-trace-e2e@0.1.0","target":{"kind":["lib"],"name":"arp_trace_e2e"},"executable":null}
{"reason":"compiler-artifact","package_id":"path+file:///w/arp-trace#0.1.0","target":{"kind":["test"],"name":"other"},"executable":"/x"}
{"reason":"compiler-artifact","package_id":"path+file:///w/tests#arp-trace-e2e@0.1.0","target":{"kind":["test"],"name":"attribution"},"executable":"/w/target/debug/deps/attribution-2"}
{"reason":"compiler-artifact","package_id":"path+file:///w/tests#arp-trace-e2e@0.1.0","target":{"kind":["test"],"name":"traces"},"executable":"/w/target/debug/deps/traces-3"}
{"reason":"build-finished","success":true}"#;
        let bins = parse_test_artifacts(json, "arp-trace-e2e");
        let got: Vec<_> = bins
            .iter()
            .map(|b| (b.name.as_str(), b.path.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("attribution", "/w/target/debug/deps/attribution-2"),
                ("capture", "/w/target/debug/deps/capture-1")
            ]
        );
    }

    #[test]
    fn tools_are_found_in_sources() {
        let src = r#"let a = Command::new("ip"); Command::new("tshark").arg("-r");
            Command::new(bin()); Command::new("/usr/bin/x"); Command::new("jq");
            Command::new("sh").args(["-c", "x"])"#;
        assert_eq!(
            tools_named_in(src).into_iter().collect::<Vec<_>>(),
            ["ip", "jq", "tshark"]
        );
    }

    #[test]
    fn a_stray_int3_is_noticed_with_where_it_hit() {
        let mut r = GuestReport::default();
        for l in [
            "[   28.561820] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
            "[   28.562843] RIP: 0010:arp_solicit+0x5/0x310",
            "[   28.564099] RIP: 0010:filemap_get_entry+0xa8/0x1b0",
        ] {
            r.feed(l);
        }
        assert_eq!(
            r.stray_int3.as_deref(),
            Some("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI at arp_solicit+0x5/0x310")
        );
        let mut r = GuestReport::default();
        r.feed("[ 1.0] BUG: kernel NULL pointer dereference");
        r.feed("[ 1.0] RIP: 0010:arp_solicit+0x5/0x310");
        assert_eq!(r.stray_int3, None, "other oopses are not retried");
    }

    #[test]
    fn cpio_is_valid_newc() {
        let mut c = Cpio::default();
        c.file("/usr/bin/x", b"hello".to_vec(), 0o755);
        c.symlink("/bin/sh", "busybox");
        let mut out = Vec::new();
        c.write_to(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        // Parents first, then children; the system cpio agrees it is a valid archive.
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("cpio")
            .args(["-i", "-d", "--quiet"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(dir.join("usr/bin/x")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read_link(dir.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn matrix_rows_wait_for_the_hooks_option() {
        let all = names(&["6.1", "6.12"]);
        let (rows, skipped) = plan(&all, None, false).unwrap();
        assert_eq!(
            rows,
            [("6.1".to_string(), None), ("6.12".to_string(), None)]
        );
        assert_eq!(
            skipped,
            [
                ("6.1".to_string(), "kprobe".to_string()),
                ("6.12".to_string(), "kprobe".to_string()),
                ("6.1".to_string(), "tracepoint".to_string()),
                ("6.12".to_string(), "tracepoint".to_string())
            ]
        );
        let (rows, skipped) = plan(&names(&["6.12"]), None, true).unwrap();
        assert_eq!(
            rows,
            [
                ("6.12".to_string(), None),
                ("6.12".to_string(), Some("kprobe".to_string())),
                ("6.12".to_string(), Some("tracepoint".to_string()))
            ]
        );
        assert!(skipped.is_empty());
        let (rows, _) = plan(&all, Some("fentry"), true).unwrap();
        assert_eq!(
            rows,
            [
                ("6.1".to_string(), Some("fentry".to_string())),
                ("6.12".to_string(), Some("fentry".to_string()))
            ]
        );
        assert!(plan(&all, Some("kprobe"), false).is_err());
    }

    #[test]
    fn console_escapes_are_dropped() {
        assert_eq!(
            printable("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r\n"),
            "SeaBIOS (version 1.16)"
        );
        assert_eq!(printable("test a ... ok\r"), "test a ... ok");
    }

    #[test]
    fn quoting_survives_the_shell() {
        let args = ["a b", "it's", "--exact"];
        let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let script = format!(
            "V={}; eval \"set -- $V\"; printf '%s\\n' \"$@\"",
            shell_quote(&quoted.join(" "))
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\nit's\n--exact\n");
    }
}
