//! End-to-end: the real tracer watching ARP that the real kernel sends in throw-away
//! network namespaces. Needs root. Every test builds its own topology, so they run in
//! parallel; each filters by, or only looks at, its own namespaces.

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

/// Quiet period used to check that something does *not* arrive.
const QUIET: Duration = Duration::from_millis(1500);

fn request_to(target: &'static str) -> impl Fn(&Value) -> bool {
    move |v| is_request(v) && v["target_ip"] == target
}

#[test]
fn seed_request_fields() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    srv.flush_neigh();

    // A socket bound to eth5's address, talking out of eth3: the ARP sender is 203.0.113.10.
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let evs = t.wait_for(
        |v| is_request(v) && from_ns(v, srv) && v["sender_ip"] == SRV_ETH5_IP,
        EVENT_TIMEOUT,
    );
    assert_eq!(evs.len(), 1, "one request expected: {evs:?}");
    let ev = &evs[0];
    assert_fields(
        ev,
        &[
            ("type", json!("arp")),
            ("ifname", json!("eth3")),
            ("netns_name", json!(srv.name())),
            ("netns", json!(srv.inode())),
            ("sender_ip", json!(SRV_ETH5_IP)),
            ("target_ip", json!(C3_IP)),
            ("unicast", json!(false)),
            ("sender_mac", json!(srv.mac("eth3"))),
            ("eth_dst", json!("ff:ff:ff:ff:ff:ff")),
            ("target_mac", json!("00:00:00:00:00:00")),
        ],
    );
    assert!(ev["ifindex"].as_u64().unwrap_or(0) > 0, "ifindex: {ev}");
    assert!(s(ev, "time").contains('T'), "time is RFC 3339: {ev}");
    assert_frame_consistent(ev);

    // Unbound socket: the kernel picks eth3's own address.
    srv.flush_neigh();
    srv.send_udp(None, udp(C3_IP));
    let evs = t.wait_for(
        |v| is_request(v) && from_ns(v, srv) && v["sender_ip"] == SRV_ETH3_IP,
        EVENT_TIMEOUT,
    );
    let ev = &evs[0];
    assert_fields(
        ev,
        &[
            ("ifname", json!("eth3")),
            ("target_ip", json!(C3_IP)),
            ("unicast", json!(false)),
        ],
    );
    assert_frame_consistent(ev);

    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}

#[test]
fn absent_host_three_requests() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    let target = "198.51.100.99";
    let sent = Instant::now();
    srv.send_udp(None, udp(target));
    let is_ours = |v: &Value| is_request(v) && from_ns(v, srv) && v["target_ip"] == target;
    let evs = t.wait_for_n(is_ours, 3, EVENT_TIMEOUT);
    let took = sent.elapsed();
    // Initial request + 2 retransmits, retrans_time (1 s) apart: ~2 s in all.
    assert!(
        took < scaled(Duration::from_secs(10)),
        "3 requests took {took:?}"
    );
    sleep(Duration::from_secs(3));
    let evs_after = t.matching(is_ours);
    assert_eq!(
        evs_after.len(),
        3,
        "exactly 3 requests expected: {evs_after:#?}"
    );
    for ev in &evs {
        assert_fields(
            ev,
            &[
                ("ifname", json!("eth3")),
                ("sender_ip", json!(SRV_ETH3_IP)),
                ("unicast", json!(false)),
            ],
        );
        assert_frame_consistent(ev);
    }
    let times: Vec<f64> = evs.iter().map(|v| time_of_day_secs(s(v, "time"))).collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        // Skip the (unlikely) midnight wrap.
        if gap >= 0.0 {
            assert!(
                (0.5..=3.0 * timeout_scale()).contains(&gap),
                "retransmits should be ~1 s apart, got {gap:.3} s: {evs:#?}"
            );
        }
    }
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}

#[test]
fn reply_from_client() {
    let seed = Seed::new();
    let (srv, c3) = (&seed.srv, &seed.c3);
    let t = Tracer::start(&["--json", "--netns", c3.name()]);
    srv.send_udp(None, udp(C3_IP));
    let evs = t.wait_for(|v| is_reply(v) && from_ns(v, c3), EVENT_TIMEOUT);
    let ev = &evs[0];
    assert_fields(
        ev,
        &[
            ("ifname", json!("eth0")),
            ("netns", json!(c3.inode())),
            ("sender_ip", json!(C3_IP)),
            ("target_ip", json!(SRV_ETH3_IP)),
            ("unicast", json!(true)),
            ("sender_mac", json!(c3.mac("eth0"))),
            ("target_mac", json!(srv.mac("eth3"))),
            ("eth_dst", json!(srv.mac("eth3"))),
        ],
    );
    assert_frame_consistent(ev);
    sleep(QUIET);
    let foreign: Vec<Value> = t.matching(|v| !from_ns(v, c3));
    assert!(
        foreign.is_empty(),
        "events from outside c3 with --netns c3: {foreign:#?}"
    );
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}

#[test]
fn namespace_created_after_start() {
    // No --netns: the tracer watches every namespace, including ones born after it.
    let t = Tracer::start(&["--json"]);
    let seed = Seed::new();
    let (srv, c3) = (&seed.srv, &seed.c3);
    let (srv_ino, c3_ino) = (srv.inode(), c3.inode());
    let absent = "198.51.100.97";
    srv.send_udp(None, udp(C3_IP)); // request in srv, reply in c3
    srv.send_udp(None, udp(absent)); // 3 requests, 1 s apart

    let in_srv = |v: &Value| v["netns"].as_u64() == Some(srv_ino);
    let evs = t.wait_for(
        |v| in_srv(v) && is_request(v) && v["target_ip"] == C3_IP,
        EVENT_TIMEOUT,
    );
    assert_eq!(s(&evs[0], "ifname"), "eth3");
    assert_eq!(s(&evs[0], "sender_ip"), SRV_ETH3_IP);
    let evs = t.wait_for(
        |v| v["netns"].as_u64() == Some(c3_ino) && is_reply(v),
        EVENT_TIMEOUT,
    );
    assert_eq!(s(&evs[0], "sender_ip"), C3_IP);

    // The name: the tracer learns it by rescanning /run/netns (at most every 200 ms, so the
    // very first event may lack it); the later retransmits must carry it.
    t.wait_for(|v| in_srv(v) && from_ns(v, srv), EVENT_TIMEOUT);
    let wrong: Vec<Value> =
        t.matching(|v| in_srv(v) && !v["netns_name"].is_null() && !from_ns(v, srv));
    assert!(
        wrong.is_empty(),
        "events from {} (inode {srv_ino}) under another name (stale name of a deleted namespace \
         whose inode was reused?): {wrong:#?}",
        srv.name()
    );
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}

#[test]
fn interface_filter() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name(), "-i", "eth5"]);
    srv.send_udp(None, udp(C3_IP)); // ARP on eth3
    srv.send_udp(None, udp(C5_IP)); // ARP on eth5
    let evs = t.wait_for(request_to(C5_IP), EVENT_TIMEOUT);
    assert_eq!(s(&evs[0], "ifname"), "eth5");
    assert_eq!(s(&evs[0], "sender_ip"), SRV_ETH5_IP);
    sleep(QUIET);
    let all = t.json();
    // ARP events only: address and sysctl changes are not selected by -i (see README).
    let not_eth5: Vec<&Value> = all
        .iter()
        .filter(|v| v["type"] != "facts_change" && v["ifname"] != "eth5")
        .collect();
    assert!(
        not_eth5.is_empty(),
        "events not on eth5 with -i eth5: {not_eth5:#?}"
    );
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}

#[test]
fn netns_filter_by_path_and_inode() {
    let seed = Seed::new();
    let (srv, c3) = (&seed.srv, &seed.c3);
    let srv_path = srv.path();
    let by_path = Tracer::start(&["--json", "--netns", srv_path.to_str().unwrap()]);
    let c3_inode = c3.inode().to_string();
    let by_inode = Tracer::start(&["--json", "--netns", &c3_inode]);

    srv.send_udp(None, udp(C3_IP)); // request in srv, reply in c3

    let req = by_path.wait_for(|v| is_request(v) && v["target_ip"] == C3_IP, EVENT_TIMEOUT);
    let in_ns = |ns: &Netns| {
        [
            ("netns", json!(ns.inode())),
            ("netns_name", json!(ns.name())),
        ]
    };
    assert_fields(&req[0], &in_ns(srv));
    let rep = by_inode.wait_for(|v| is_reply(v) && v["sender_ip"] == C3_IP, EVENT_TIMEOUT);
    assert_fields(&rep[0], &in_ns(c3));

    sleep(QUIET);
    let wrong: Vec<Value> = by_path.matching(|v| v["netns"].as_u64() != Some(srv.inode()));
    assert!(
        wrong.is_empty(),
        "--netns {} let through: {wrong:#?}",
        srv_path.display()
    );
    let wrong: Vec<Value> = by_inode.matching(|v| v["netns"].as_u64() != Some(c3.inode()));
    assert!(
        wrong.is_empty(),
        "--netns {c3_inode} let through: {wrong:#?}"
    );

    for t in [by_path, by_inode] {
        let (status, _, stderr) = t.stop();
        assert!(status.success(), "exit {}: {stderr}", describe(&status));
    }
}

#[test]
fn count_exits_after_n_requests() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "-4", "-c", "2", "--netns", srv.name()]);
    srv.send_udp(None, udp("198.51.100.98")); // absent: 3 requests
    let (status, stdout, stderr) = t.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
    let evs: Vec<Value> = parse_json_lines(&stdout)
        .into_iter()
        .filter(|v| v["type"] == "arp")
        .collect();
    assert_eq!(evs.len(), 2, "exactly 2 ARP objects with -c 2: {stdout}");
    for ev in &evs {
        assert!(is_request(ev), "{ev}");
        assert_eq!(s(ev, "target_ip"), "198.51.100.98");
        assert_eq!(s(ev, "netns_name"), srv.name());
    }
}

/// `HH:MM:SS.micros`
fn is_clock(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 15
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 2 | 5 | 8) || c.is_ascii_digit())
}

#[test]
fn human_output() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--netns", srv.name()]);
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let lines = t.wait_for_line(|l| l.contains("who-has"), EVENT_TIMEOUT);
    let line = &lines[0];
    // The tcpdump-like part; the tracer may append an annotation after two spaces.
    let head = line.split("  ").next().unwrap();
    let w: Vec<&str> = head.split(' ').collect();
    let mac = format!("({})", srv.mac("eth3"));
    let ok = w.len() == 8
        && is_clock(w[0])
        && w[1] == format!("{}/eth3", srv.name())
        && w[2..7] == ["ARP", "who-has", C3_IP, "tell", SRV_ETH5_IP]
        && w[7] == mac;
    assert!(
        ok,
        "line {line:?} should start `HH:MM:SS.micros {}/eth3 ARP who-has {C3_IP} tell {SRV_ETH5_IP} {mac}`",
        srv.name()
    );
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
    assert!(
        stdout.lines().all(|l| !l.trim_start().starts_with('{')),
        "text mode printed JSON: {stdout}"
    );
}

#[test]
fn json_through_jq() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    t.wait_for(
        |v| is_request(v) && v["sender_ip"] == SRV_ETH5_IP,
        EVENT_TIMEOUT,
    );
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));

    let printed = jq_over(
        r#"select(.op=="request" and .sender_ip=="203.0.113.10") | .ifname"#,
        &stdout,
    );
    let got: Vec<&str> = printed.lines().collect();
    assert_eq!(got, ["\"eth3\""], "jq output; input:\n{stdout}");
}

fn stop_and_counts(sig: libc::c_int) {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    // One request; c3's reply leaves in c3 (filtered out) and arrives on srv's eth3.
    srv.send_udp(None, udp(C3_IP));
    t.wait_for(request_to(C3_IP), EVENT_TIMEOUT);
    t.wait_for(|v| is_received(v) && from_ns(v, srv), EVENT_TIMEOUT);
    sleep(Duration::from_millis(300));
    let (status, stdout, stderr) = t.stop_with(sig);
    assert!(
        status.success(),
        "exit {} after signal {sig}: {stderr}",
        describe(&status)
    );
    let arp: Vec<Value> = parse_json_lines(&stdout)
        .into_iter()
        .filter(|v| v["type"] == "arp")
        .collect();
    assert_eq!(arp.len(), 2, "stdout: {stdout}");
    assert!(is_request(&arp[0]) && is_received(&arp[1]), "{arp:?}");
    assert!(stderr.contains("1 ARP request,"), "stderr: {stderr}");
    assert!(stderr.contains("1 ARP frame received"), "stderr: {stderr}");
    assert!(stderr.contains("0 lost"), "stderr: {stderr}");
    let c = parse_counts(&stderr);
    assert_eq!(
        (c.requests, c.replies, c.lost),
        (1, 0, 0),
        "stderr: {stderr}"
    );
}

#[test]
fn sigint_prints_counts() {
    stop_and_counts(libc::SIGINT);
}

#[test]
fn sigterm_prints_counts() {
    stop_and_counts(libc::SIGTERM);
}

#[test]
fn lost_events_are_counted() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "-B", "4", "--netns", srv.name()]);
    t.signal(libc::SIGSTOP);
    let dsts: Vec<_> = (100..250)
        .map(|i| udp(&format!("198.51.100.{i}")))
        .collect();
    srv.send_udp_many(None, &dsts);
    sleep(Duration::from_millis(500));
    t.signal(libc::SIGCONT);
    sleep(Duration::from_millis(500));
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
    let c = parse_counts(&stderr);
    let seen = parse_json_lines(&stdout)
        .iter()
        .filter(|v| is_request(v) && from_ns(v, srv))
        .count() as u64;
    eprintln!("lost_events_are_counted: {seen} shown, {c:?}");
    assert!(
        c.lost > 0,
        "a 4 KiB buffer and a stopped reader must lose events: {stderr}"
    );
    assert!(
        seen + c.lost >= 150,
        "150 requests sent, {seen} shown + {} lost < 150: {stderr}",
        c.lost
    );
    assert_eq!(seen, c.requests, "counts line vs shown requests: {stderr}");
}

#[test]
fn error_unknown_netns() {
    let mut cmd = Command::new(bin());
    cmd.args(["--netns", "does-not-exist"]);
    let f = run_to_completion(cmd, Duration::from_secs(30));
    assert_eq!(
        f.status.code(),
        Some(1),
        "exit {}: {}",
        describe(&f.status),
        f.stderr
    );
    let lines = f.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line expected: {:?}", f.stderr);
    assert!(lines[0].starts_with("arp-trace: "), "{:?}", lines[0]);
    assert!(lines[0].contains("does-not-exist"), "{:?}", lines[0]);
    assert!(f.stdout.is_empty(), "stdout: {}", f.stdout);
}

#[test]
fn error_unprivileged() {
    let f = run_unprivileged(&[]);
    assert!(
        !f.status.success(),
        "unprivileged run succeeded: {}",
        f.stderr
    );
    assert_ne!(
        f.status.code(),
        Some(127),
        "setpriv could not execute the tracer: {}",
        f.stderr
    );
    let lines = f.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line expected: {:?}", f.stderr);
    assert!(lines[0].starts_with("arp-trace: "), "{:?}", lines[0]);
    assert!(
        lines[0].contains("sudo"),
        "should suggest sudo: {:?}",
        lines[0]
    );
}

#[test]
fn error_bad_buffer_size() {
    let mut cmd = Command::new(bin());
    cmd.args(["-B", "100"]);
    let f = run_to_completion(cmd, Duration::from_secs(30));
    assert!(!f.status.success(), "-B 100 accepted: {}", f.stderr);
    assert!(!f.stderr.trim().is_empty(), "no error message for -B 100");
    assert!(f.stdout.is_empty(), "stdout: {}", f.stdout);
}
