//! End-to-end lifecycle (issue 12): stopping is unconditional, and a killed tracer leaves
//! nothing in the kernel.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

/// Every BPF program, map and link id a process holds, from its fdinfo.
fn bpf_ids(pid: i32) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for l in text.lines() {
            for (key, kind) in [
                ("prog_id:", "prog"),
                ("map_id:", "map"),
                ("link_id:", "link"),
            ] {
                if let Some(v) = l.strip_prefix(key) {
                    ids.insert(format!("{kind} {}", v.trim()));
                }
            }
        }
    }
    ids
}

/// The ids of every BPF object of `kind` (`prog`, `map`, `link`) the kernel has, from bpftool;
/// `Err` with its output when bpftool failed (it does while objects are being freed: "can't
/// get link by id: Resource temporarily unavailable").
fn kernel_ids(kind: &str) -> Result<BTreeSet<String>, String> {
    let out = Command::new("bpftool")
        .args(["-j", kind, "show"])
        .output()
        .expect("bpftool");
    if !out.status.success() {
        return Err(format!("bpftool {kind} show: {out:?}"));
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_u64())
        .map(|id| format!("{kind} {id}"))
        .collect())
}

fn bpffs_entries() -> BTreeSet<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// SIGKILL gives the tracer no chance to clean up: whatever it attached must die with its
/// file descriptors (it pins nothing and adds no qdisc).
#[test]
fn sigkill_leaves_no_program_map_link_qdisc_or_pin() {
    let seed = Seed::new();
    let before_pins = bpffs_entries();
    let t = Tracer::start(&["--json", "--netns", seed.srv.name()]);
    seed.srv.send_udp(None, udp(C3_IP));
    let ours = bpf_ids(t.pid());
    assert!(
        ours.iter().any(|i| i.starts_with("prog")) && ours.iter().any(|i| i.starts_with("map")),
        "the tracer holds no BPF objects? {ours:?}"
    );
    let (status, _, _) = t.stop_with(libc::SIGKILL);
    assert_eq!(describe(&status), "killed by signal 9");
    // The kernel frees them once the last reference goes (after an RCU grace period).
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    let left = loop {
        let all: Result<Vec<BTreeSet<String>>, String> = ["prog", "map", "link"]
            .iter()
            .map(|k| kernel_ids(k))
            .collect();
        let left: Vec<String> = match all {
            Ok(all) => ours
                .iter()
                .filter(|i| all.iter().any(|s| s.contains(*i)))
                .cloned()
                .collect(),
            // Still being freed: ask again, unless that goes on past the deadline.
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => vec!["(bpftool failed)".into()],
        };
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        left.is_empty(),
        "left in the kernel after SIGKILL: {left:?}"
    );
    for ns in [&seed.srv, &seed.c3] {
        let q = ns.ip(&["-j", "link", "show"]);
        let tc = Command::new("ip")
            .args(["netns", "exec", ns.name(), "tc", "qdisc", "show"])
            .output();
        if let Ok(o) = tc {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                !text.contains("clsact"),
                "{}: a clsact qdisc: {text}",
                ns.name()
            );
        }
        assert!(!q.contains("xdp"), "{}: an XDP program: {q}", ns.name());
    }
    assert_eq!(
        bpffs_entries(),
        before_pins,
        "files appeared in /sys/fs/bpf"
    );
}

/// A stop cannot wait forever: with stdout a pipe no one reads (the tracer blocks writing to
/// it), Ctrl-C still ends the run within the grace period, saying why.
#[test]
fn ctrl_c_ends_the_run_even_when_stdout_blocks() {
    let seed = Seed::new();
    let ready =
        std::env::temp_dir().join(format!("arp-trace-e2e-{}-block.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(bin())
        .args(["--json", "-v", "--netns", seed.srv.name(), "--ready-file"])
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::piped()) // never read
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn arp-trace");
    let deadline = Instant::now() + scaled(READY_TIMEOUT);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "tracer not ready");
        thread::sleep(Duration::from_millis(20));
    }
    // Foreign-sender requests with their explanations: kilobytes each, so a few dozen fill
    // the pipe's 64 KiB.
    let targets: Vec<_> = (100..200)
        .map(|i| udp(&format!("198.51.100.{i}")))
        .collect();
    seed.srv
        .send_udp_many(Some(SRV_ETH5_IP.parse().unwrap()), &targets);
    thread::sleep(scaled(Duration::from_secs(2)));
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let limit = scaled(Duration::from_secs(30));
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the tracer did not stop within {limit:?} of Ctrl-C");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = std::fs::remove_file(&ready);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("no clean stop within"), "{err}");
}
