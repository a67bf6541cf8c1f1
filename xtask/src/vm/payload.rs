//! The payload every guest shares: the tracer, the e2e test binaries (built and located through
//! cargo's JSON messages), the programs the tests run, and the libraries all of them link.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::vm_dir;
use crate::provision::run;

/// Tools the harness runs even if no source mentions them literally.
const BASE_TOOLS: &[&str] = &["ip", "jq", "setpriv"];
/// Test binaries whose subject does not depend on the kernel (trace files, replay, pcapng
/// read by tshark) or that take minutes under QEMU (300 namespaces of churn): they run on the
/// host only, and their tools stay out of the guest. So do the fleet's packaging checks
/// (Prometheus, dpkg, systemd-analyze, kubernetes-validate), which test files, not kernels,
/// and the command-line checks (a pty from script(1)), which test the terminal.
const HOST_ONLY_TESTS: &[&str] = &[
    "traces",
    "churn",
    "prometheus",
    "deploy",
    "cli",
    "install",
    "schema",
];

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

pub(super) fn ldd(bin: &Path) -> Result<Vec<PathBuf>> {
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
    tools.extend(tools_under(&crate::workspace_root().join("tests"))?);
    Ok(tools)
}

/// Programs named in the e2e sources under `tests_root` (the `arp-trace-e2e` crate).
fn tools_under(tests_root: &Path) -> Result<BTreeSet<String>> {
    let mut tools = BTreeSet::new();
    for f in e2e_sources(tests_root)? {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        tools.extend(tools_named_in(&text));
    }
    Ok(tools)
}

/// Every `.rs` file under `src/` and `tests/` of `tests_root`, at any depth, so a module moved
/// into a sub-folder still brings its programs into the guest; except the sources of the
/// host-only test binaries (`tests/<name>.rs` or `tests/<name>/`), whose tools stay out.
fn e2e_sources(tests_root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for sub in ["src", "tests"] {
        for entry in sorted_dir(&tests_root.join(sub))? {
            // Test binaries are the top-level entries of tests/; the library is in all of them.
            let host_only = sub == "tests"
                && entry
                    .file_stem()
                    .is_some_and(|n| HOST_ONLY_TESTS.iter().any(|h| n == *h));
            if !host_only {
                rust_files(&entry, &mut files)?;
            }
        }
    }
    Ok(files)
}

/// `path` if it is a `.rs` file, or the `.rs` files below it if it is a directory.
fn rust_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        for entry in sorted_dir(path)? {
            rust_files(&entry, out)?;
        }
    } else if path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort();
    Ok(entries)
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

/// Host-side inputs shared by every guest.
pub struct Payload {
    pub(super) tracer: Vec<u8>,
    pub(super) tests: Vec<(String, Vec<u8>)>,
    pub(super) tools: Vec<PathBuf>,
    /// Libraries the tracer and the test binaries link.
    pub(super) libs: BTreeSet<PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sources_in_sub_folders_count_but_host_only_tests_do_not() {
        let root = std::env::temp_dir().join(format!("xtask-e2e-src-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (file, text) in [
            ("src/lib.rs", r#"Command::new("ip")"#),
            ("src/net/deep/more.rs", r#"Command::new("tc")"#),
            ("src/notes.txt", r#"Command::new("not-rust")"#),
            ("tests/capture.rs", r#"Command::new("jq")"#),
            ("tests/common/mod.rs", r#"Command::new("ethtool")"#),
            ("tests/multi/main.rs", r#"Command::new("ss")"#),
            ("tests/traces.rs", r#"Command::new("tshark")"#),
            ("tests/traces/helpers.rs", r#"Command::new("editcap")"#),
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let found = tools_under(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found.unwrap().into_iter().collect::<Vec<_>>(),
            ["ethtool", "ip", "jq", "ss", "tc"]
        );
    }

    #[test]
    fn every_harness_source_is_scanned() {
        let root = crate::workspace_root().join("tests");
        let sources = e2e_sources(&root).unwrap();
        for e in std::fs::read_dir(root.join("src")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                assert!(sources.contains(&p), "{} not scanned", p.display());
            }
        }
        // The harness's own programs, found without BASE_TOOLS' help.
        let tools = tools_under(&root).unwrap();
        for t in BASE_TOOLS {
            assert!(
                tools.contains(*t),
                "{t} not found in the e2e sources: {tools:?}"
            );
        }
    }
}
