//! End-to-end namespace churn (issue 12): while tracing, 300 namespaces come and go, each
//! sending one ARP request. Every request is reported (or counted lost), the tracer's threads
//! stay bounded, and its threads, descriptors and memory go back to their level before the
//! churn once the namespaces are gone. Host only: 300 namespaces are minutes under QEMU.

use std::thread;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

const NAMESPACES: usize = 300;
/// The tracer watches at most this many namespaces at once (one thread each).
const MAX_WATCHED: u64 = 64;

fn status(pid: i32) -> (u64, u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    (field("Threads:"), fds, field("VmRSS:"))
}

#[test]
fn three_hundred_namespaces_come_and_go() {
    let t = Tracer::start(&["--json"]);
    let pid = t.pid();
    // A namespace first, so the tracer's own start-up work is done before the baseline.
    {
        let ns = lone("cw");
        ns.send_udp(None, udp("198.51.100.99"));
        t.wait_for(|v| is_request(v) && from_ns(v, &ns), EVENT_TIMEOUT);
    }
    thread::sleep(Duration::from_secs(3));
    let before = status(pid);
    let mut inodes = Vec::new();
    let mut max_threads = 0;
    for i in 0..NAMESPACES {
        let ns = lone("cw");
        ns.send_udp(None, udp(&format!("198.51.100.{}", 100 + i % 100)));
        inodes.push(ns.inode());
        // Let the tracer see some of them while they exist.
        if i % 10 == 0 {
            thread::sleep(Duration::from_millis(100));
        }
        max_threads = max_threads.max(status(pid).0);
    }
    let deadline = Instant::now() + scaled(Duration::from_secs(30));
    let seen = loop {
        let seen: std::collections::BTreeSet<u64> = t
            .json()
            .iter()
            .filter(|v| is_request(v))
            .filter_map(|v| v["netns"].as_u64())
            .filter(|n| inodes.contains(n))
            .collect();
        if seen.len() >= inodes.len() || Instant::now() > deadline {
            break seen;
        }
        thread::sleep(Duration::from_millis(200));
    };
    // Namespace threads leave within a second of their namespace going; allow a few.
    thread::sleep(Duration::from_secs(5));
    let after = status(pid);
    let (status_code, _, stderr) = t.stop();
    assert!(status_code.success(), "{stderr}");
    let counts = parse_counts(&stderr);
    // Inodes are reused by new namespaces, so count distinct ones seen against distinct made.
    let made: std::collections::BTreeSet<u64> = inodes.iter().copied().collect();
    assert!(
        seen.len() == made.len() || counts.lost > 0,
        "{} of {} namespaces' requests reported, none counted lost: {stderr}",
        seen.len(),
        made.len()
    );
    assert!(
        max_threads <= MAX_WATCHED + 4,
        "{max_threads} threads during the churn (bound {})",
        MAX_WATCHED + 4
    );
    assert!(
        after.0 <= before.0 + 1,
        "threads {} -> {}: namespace threads did not leave",
        before.0,
        after.0
    );
    assert!(after.1 <= before.1 + 2, "fds {} -> {}", before.1, after.1);
    assert!(
        after.2 <= before.2 + 8 * 1024,
        "RSS {} kB -> {} kB",
        before.2,
        after.2
    );
    eprintln!(
        "churn: threads {} (max {max_threads}) -> {}, fds {} -> {}, RSS {} kB -> {} kB",
        before.0, after.0, before.1, after.1, before.2, after.2
    );
}
