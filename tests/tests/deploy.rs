//! End-to-end packaging (issue 17, host only): the .deb `cargo xtask deb` builds installs with
//! the real dpkg into a throw-away root (never this host's) and its binary runs; the systemd
//! unit passes `systemd-analyze verify` as installed there and grants exactly the
//! capabilities the tracer documents; the Kubernetes manifests validate offline against the
//! Kubernetes schemas (kubernetes-validate) and agree with each other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arp_trace_e2e::*;

fn run(mut c: Command, secs: u64) -> Finished {
    c.current_dir(workspace());
    run_to_completion(c, Duration::from_secs(secs))
}

fn ok(f: &Finished, what: &str) {
    assert!(f.status.success(), "{what}: {f:?}");
}

/// `cargo xtask deb` packaging the binary under test, into `out`; the .deb's path.
fn build_deb(out: &Path) -> PathBuf {
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.args(["run", "--quiet", "--package", "xtask", "--", "deb", "--bin"])
        .arg(bin())
        .arg("--output")
        .arg(out);
    let f = run(c, 900);
    ok(&f, "cargo xtask deb");
    // Its path is all it prints on stdout.
    PathBuf::from(f.stdout.trim())
}

/// An empty dpkg database in `root` that knows the host's installed versions of exactly the
/// packages the .deb depends on, so dpkg checks `Depends` for real.
fn admindir(root: &Path, deb: &Path) -> PathBuf {
    let admin = root.join("var/lib/dpkg");
    for d in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("available"), "").unwrap();
    let mut c = Command::new("dpkg-deb");
    c.arg("--field").arg(deb).arg("Depends");
    let f = run(c, 60);
    ok(&f, "dpkg-deb --field");
    let names: Vec<String> = f
        .stdout
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap().to_string())
        .collect();
    let mut c = Command::new("dpkg-query");
    c.arg("--status").args(&names);
    let f = run(c, 60);
    ok(&f, "dpkg-query --status (the host lacks a dependency)");
    std::fs::write(admin.join("status"), &f.stdout).unwrap();
    // Their file lists, empty: dpkg only warns without them.
    for stanza in f.stdout.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        if let (Some(p), Some(a)) = (field("Package:"), field("Architecture:")) {
            std::fs::write(admin.join(format!("info/{p}:{a}.list")), "").unwrap();
        }
    }
    admin
}

#[test]
fn the_deb_installs_into_a_throwaway_root_and_its_unit_verifies() {
    let d = Scratch::new("deb");
    let deb = build_deb(&d.0.join("out"));
    let root = d.0.join("root");
    let admin = admindir(&root, &deb);

    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .arg(format!("--admindir={}", admin.display()))
        .arg(format!("--log={}", d.file("dpkg.log")))
        .arg("--install")
        .arg(&deb);
    let f = run(c, 120);
    ok(&f, "dpkg --install into the throw-away root");
    assert!(!f.stderr.contains("warning"), "{}", f.stderr);

    let installed = root.join("usr/bin/arp-trace");
    let mut c = Command::new(&installed);
    c.arg("-V");
    let f = run(c, 30);
    ok(&f, "the installed arp-trace -V");
    assert_eq!(
        f.stdout.trim(),
        format!("arp-trace {}", env!("CARGO_PKG_VERSION"))
    );
    for p in [
        "lib/systemd/system/arp-trace.service",
        "etc/default/arp-trace",
        "usr/share/doc/arp-trace/copyright",
        "usr/share/man/man1/arp-trace.1.gz",
        "usr/share/bash-completion/completions/arp-trace",
        "usr/share/zsh/vendor-completions/_arp-trace",
        "usr/share/fish/vendor_completions.d/arp-trace.fish",
    ] {
        assert!(root.join(p).is_file(), "{p} not installed");
    }
    // The packaged page is the binary's own and renders.
    let mut c = Command::new("man");
    c.arg("-l")
        .arg(root.join("usr/share/man/man1/arp-trace.1.gz"))
        .env("MANPAGER", "cat");
    let f = run(c, 60);
    ok(&f, "man -l the packaged page");
    assert!(f.stdout.contains("EXIT STATUS"), "{f:?}");
    let mut c = Command::new("dpkg-query");
    c.arg(format!("--admindir={}", admin.display())).args([
        "--showformat=${Status}",
        "--show",
        "arp-trace",
    ]);
    assert_eq!(run(c, 30).stdout, "install ok installed");

    // The unit as the package installed it, checked by systemd against that root (where its
    // ExecStart= binary exists).
    let mut c = Command::new("systemd-analyze");
    c.args(["verify", "--man=no", "--recursive-errors=no"])
        .arg(format!("--root={}", root.display()))
        .arg("arp-trace.service");
    let f = run(c, 60);
    ok(&f, "systemd-analyze verify");
    assert!(
        f.stderr.trim().is_empty(),
        "systemd-analyze verify: {}",
        f.stderr
    );
}

/// The capabilities kernel/privileges.rs names, required and useful.
fn documented_caps() -> Vec<String> {
    let src =
        std::fs::read_to_string(workspace().join("arp-trace/src/kernel/privileges.rs")).unwrap();
    let mut caps: Vec<String> = src
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("CAP_") && w.len() > 4)
        .map(str::to_string)
        .collect();
    caps.sort();
    caps.dedup();
    caps
}

#[test]
fn the_unit_grants_only_the_documented_capabilities_and_hardens_the_rest() {
    let unit = std::fs::read_to_string(workspace().join("deploy/arp-trace.service")).unwrap();
    let value = |k: &str| -> Vec<String> {
        let v = unit
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {k}= in the unit"));
        let mut v: Vec<String> = v.split_whitespace().map(str::to_string).collect();
        v.sort();
        v
    };
    let caps = documented_caps();
    assert!(caps.contains(&"CAP_BPF".to_string()), "{caps:?}");
    assert_eq!(value("CapabilityBoundingSet"), caps);
    assert_eq!(value("AmbientCapabilities"), caps);
    assert_eq!(value("NoNewPrivileges"), ["yes"]);
    assert_eq!(value("Restart"), ["on-failure"]);
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    assert!(
        exec.contains("-q") && exec.contains("--metrics 127.0.0.1:9819"),
        "{exec}"
    );
    // Hardening that would break BPF, setns or /proc reading stays out.
    for never in [
        "PrivateNetwork=",
        "ProtectProc=",
        "SystemCallFilter=",
        "PrivateUsers=",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(never)),
            "{never} in the unit"
        );
    }
}

fn validator() -> PathBuf {
    venv_tool("kubernetes-validate")
}

/// Every document of a YAML file as JSON, through the validator's own Python and PyYAML.
fn yaml_docs(file: &str) -> Vec<Value> {
    let python = validator().with_file_name("python3");
    let python = if python.is_file() {
        python
    } else {
        PathBuf::from("python3")
    };
    let mut c = Command::new(python);
    c.args([
        "-c",
        "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        file,
    ]);
    let f = run(c, 60);
    ok(&f, "reading YAML");
    serde_json::from_str(&f.stdout).unwrap()
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas_and_agree() {
    let files = ["deploy/daemonset.yaml", "deploy/servicemonitor.yaml"];
    // The newest schemas the validator has, and an older release still in wide use.
    for version in [None, Some("1.28")] {
        let mut c = Command::new(validator());
        c.arg("--strict");
        if let Some(v) = version {
            c.args(["--kubernetes-version", v]);
        }
        c.args(files);
        let f = run(c, 120);
        ok(&f, "kubernetes-validate");
        assert!(
            !f.stdout.contains("ERROR") && !f.stderr.contains("ERROR"),
            "{f:?}"
        );
        for kind in ["namespace", "daemonset", "service"] {
            assert!(
                f.stdout
                    .contains(&format!("passed for resource {kind}/arp-trace")),
                "{kind} not validated: {f:?}"
            );
        }
    }

    // The ServiceMonitor is a CRD the validator has no schema for: check what ties it to the
    // rest instead.
    let ds_docs = yaml_docs("deploy/daemonset.yaml");
    let ds = ds_docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let sm_docs = yaml_docs("deploy/servicemonitor.yaml");
    let svc = sm_docs.iter().find(|d| d["kind"] == "Service").unwrap();
    let sm = sm_docs
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .unwrap();
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let pod = &ds["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the DaemonSet's pods");
    }
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(svc["metadata"]["namespace"], ds["metadata"]["namespace"]);

    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["hostPID"], true);
    let c = &spec["containers"][0];
    let port = &c["ports"][0];
    assert_eq!(port["containerPort"], 9819);
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9819");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9819);
    assert!(c["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().is_some_and(|a| a.ends_with(":9819"))));
    // Capabilities, not privileged: exactly the documented set.
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    let mut added: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("CAP_{}", v.as_str().unwrap()))
        .collect();
    added.sort();
    assert_eq!(added, documented_caps());
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    // No bpffs and no debugfs: nothing is pinned, BTF tracepoints need neither.
    let mounts = serde_json::to_string(&spec["volumes"]).unwrap();
    for never in ["/sys/fs/bpf", "/sys/kernel/debug", "/sys/kernel/tracing"] {
        assert!(!mounts.contains(never), "{never} mounted: {mounts}");
    }
}
