//! The VM suite: boots Debian's stock kernels under QEMU (software emulation) and runs every
//! end-to-end test binary of `arp-trace-e2e` inside each guest, against that guest's kernel.
//!
//! Everything the guest needs goes into an initramfs built here: static busybox, the real
//! tools the tests drive (iproute2's `ip`, jq, setpriv, ...) with the libraries `ldd` lists,
//! the tracer, the test binaries and the `veth` module. The guest's `/init` prints marker
//! lines over the serial console; the host parses them to decide pass or fail.
//!
//! This module holds the matrix of guest runs, the host's tools, and the entry point that
//! plans the runs, boots each and sums them up.

mod cpio;
mod guest;
mod kernels;
mod payload;

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use cpio::initramfs;
use guest::{boot, RowOutcome};
use kernels::{fetch_kernel, Kernel};
use payload::{parse_ldd, payload};

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

/// Test binaries whose tests never depend on how `arp_solicit()`'s packet is caught (received
/// frames, the neighbour table's changes and conflicts, IPv6 neighbour discovery, whose packet always comes from the
/// neighbour's queue, trace files and their rotation, exit statuses, metrics, hostile names
/// and files, namespace names, the ring's wakeups): they run in each kernel's `auto` row
/// only, not again under every forced solicit path. The suite's time is bounded (README:
/// under 60 minutes on a fresh machine) and each row is emulated.
pub const PATH_INDEPENDENT: &[&str] = &[
    "conflicts",
    "exits",
    "files",
    "hostile_files",
    "hostile_names",
    "metrics",
    "ndisc",
    "netns_names",
    "receive",
    "rotation",
    "table",
    "wakeups",
];

/// The binaries a row runs: all of them in an `auto` row (`hooks` None, or `--hooks auto`
/// given), the others less [`PATH_INDEPENDENT`].
pub fn row_tests(all: &[String], hooks: Option<&str>) -> Vec<String> {
    let auto = hooks.is_none_or(|h| h == "auto");
    all.iter()
        .filter(|t| auto || !PATH_INDEPENDENT.contains(&t.as_str()))
        .cloned()
        .collect()
}

/// Kernel series the suite knows how to fetch (Debian bookworm and bookworm-backports/updates).
pub const SERIES: &[&str] = &["6.1", "6.12"];

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

/// How many more boots a row gets when its guest kernel dies of an emulation defect (a stray
/// int3 or a soft lockup, see `GuestReport::emulation`): each runs only the binaries that had
/// not ended, so a death the tracer causes every time still fails the row.
const MAX_EMULATION_REBOOTS: u32 = 3;

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
    let all_tests: Vec<String> = payload.tests.iter().map(|(n, _)| n.clone()).collect();
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
        let expected = row_tests(&all_tests, hooks.as_deref());
        let cpio = initramfs(&payload, k, hooks.as_deref(), &expected, &opts.args)?;
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
        let mut outcome = boot(k, &path, &label, &expected, None)?;
        // Only a guest kernel that died of an emulation defect is booted again, at most three
        // times, and only the binaries that had not ended run again; the summary says so.
        for again in 1..=MAX_EMULATION_REBOOTS {
            let (Some(_), Some(why)) = (&outcome.failure, outcome.report.emulation.clone()) else {
                break;
            };
            let Some(from) = outcome.report.resume_point(&expected) else {
                break;
            };
            eprintln!(
                "xtask: vm: [{label}] the guest kernel died ({why}), as software emulation \
                 can make it when the kernel patches its text (a hook attached or detached) \
                 while another vCPU runs the old bytes; booting this row again from {from}"
            );
            let rest = &expected[expected.iter().position(|e| e == from).unwrap_or(0)..];
            let next = boot(k, &path, &label, rest, Some(from))?;
            let report = std::mem::take(&mut outcome.report).resumed_by(next.report);
            outcome = RowOutcome {
                label: format!("{label}, boot {} from {from} after: {why}", again + 1),
                failure: guest::judge(&report, &expected, next.host_note.as_deref()),
                report,
                host_note: next.host_note,
                boot: outcome.boot,
                wall: outcome.wall + next.wall,
            };
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
    fn forced_paths_leave_out_only_the_path_independent_binaries() {
        let all = names(&[
            "attribution",
            "capture",
            "conflicts",
            "files",
            "receive",
            "rotation",
        ]);
        assert_eq!(row_tests(&all, None), all, "an auto row runs everything");
        assert_eq!(
            row_tests(&all, Some("auto")),
            all,
            "and so does --hooks auto"
        );
        assert_eq!(
            row_tests(&all, Some("kprobe")),
            names(&["attribution", "capture"])
        );
        // Every name in the list is a real test binary.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
        for t in PATH_INDEPENDENT {
            assert!(dir.join(format!("{t}.rs")).exists(), "{t}");
        }
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
}
