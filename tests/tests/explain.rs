//! End-to-end: every request's verdict (`foreign_sender`, `reason`, `explanation`,
//! `consequence`, `remedy`) and the facts it rests on, for each reason a namespace can produce,
//! read by the real tracer from namespaces it is not in; the summary on exit and periodically.
//! Sysctls are only ever set inside the test's own namespaces.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

fn ipv4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The seed topology with arp_announce set explicitly (new namespaces inherit the host's).
fn seed(all: u8, eth3: u8) -> Seed {
    let seed = Seed::new();
    seed.srv.set_announce("all", all);
    seed.srv.set_announce("eth3", eth3);
    seed.srv.set_announce("eth5", 0);
    seed
}

/// Waits for the request from `ns` that announces `sender` for `target`.
fn request(t: &Tracer, ns: &Netns, sender: &str, target: &str) -> Value {
    let evs = t.wait_for(
        |v| is_request(v) && from_ns(v, ns) && v["sender_ip"] == sender && v["target_ip"] == target,
        EVENT_TIMEOUT,
    );
    evs[0].clone()
}

fn reason(v: &Value) -> &str {
    s(v, "reason")
}

fn announce(v: &Value) -> (u64, Option<u64>, u64) {
    let a = &v["arp_announce"];
    (
        a["all"]
            .as_u64()
            .unwrap_or_else(|| panic!("no arp_announce: {v}")),
        a["dev"].as_u64(),
        a["effective"].as_u64().unwrap(),
    )
}

fn has_ns_addr(v: &Value, ifname: &str, addr: &str, prefix: u64) -> bool {
    v["ns_addrs"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x["ifname"] == ifname && x["addr"] == addr && x["prefix_len"] == prefix)
    })
}

fn stop_ok(t: Tracer) -> String {
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
    stdout
}

#[test]
fn seed_foreign_sender_is_explained_and_summarized() {
    let seed = seed(0, 0);
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    srv.flush_neigh();
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp(C3_IP));
    let ev = request(&t, srv, SRV_ETH5_IP, C3_IP);
    assert_eq!(ev["foreign_sender"], true, "{ev}");
    assert_eq!(reason(&ev), "announce0_local_source");
    let why = s(&ev, "explanation");
    for needle in [
        "eth3 announces 203.0.113.10",
        "lives on eth5 (203.0.113.0/24)",
        "not on eth3's 198.51.100.0/24",
        "came from 203.0.113.10",
        "arp_announce=0 (all=0, eth3=0)",
    ] {
        assert!(why.contains(needle), "{needle:?} not in {why:?}");
    }
    let effect = s(&ev, "consequence");
    assert!(
        effect.contains("attempt to overwrite entry for 203.0.113.10"),
        "{effect}"
    );
    // srv is not the tracer's namespace: the command says where to run it.
    assert_eq!(
        s(&ev["remedy"], "command"),
        format!(
            "ip netns exec {} sysctl -w net.ipv4.conf.eth3.arp_announce=1",
            srv.name()
        )
    );
    assert!(
        s(&ev["remedy"], "persistent").contains(&format!("namespace {}", srv.name())),
        "{ev}"
    );
    assert!(!s(&ev["remedy"], "tradeoff").is_empty());
    assert_eq!(announce(&ev), (0, Some(0), 0));
    assert_eq!(ev["addrs"], serde_json::json!(["198.51.100.10/24"]));
    assert!(has_ns_addr(&ev, "eth5", SRV_ETH5_IP, 24), "{ev}");
    assert!(has_ns_addr(&ev, "lo", "127.0.0.1", 8), "{ev}");

    // An unbound socket: eth3's own address, copied because it is local; nothing to fix.
    srv.flush_neigh();
    srv.send_udp(None, udp(C3_IP));
    let ok = request(&t, srv, SRV_ETH3_IP, C3_IP);
    assert_eq!(ok["foreign_sender"], false, "{ok}");
    assert_eq!(reason(&ok), "announce0_local_source");
    assert!(
        ok["consequence"].is_null() && ok["remedy"].is_null(),
        "{ok}"
    );

    let stdout = stop_ok(t);
    // Replies never carry a verdict.
    let replies = jq_over(r#"select(.op=="reply") | has("reason")"#, &stdout);
    assert!(replies.lines().all(|l| l == "false"), "{replies}");
    let summary = jq_over(r#"select(.type=="summary")"#, &stdout);
    assert_eq!(summary.lines().count(), 1, "one final summary: {stdout}");
    assert_eq!(
        stdout
            .lines()
            .last()
            .map(|l| l.contains(r#""type":"summary""#)),
        Some(true),
        "the summary comes last: {stdout}"
    );
    let rows = jq_over(
        r#"select(.type=="summary") | .final, (.rows[] | [.ifname, .sender_ip, .reason, .foreign_sender, .requests, .distinct_targets, .top_processes[0].count, .remedy.command])"#,
        &stdout,
    );
    let rows: Vec<&str> = rows.lines().collect();
    let foreign_row = format!(
        r#"["eth3","203.0.113.10","announce0_local_source",true,1,1,1,"ip netns exec {} sysctl -w net.ipv4.conf.eth3.arp_announce=1"]"#,
        srv.name()
    );
    assert_eq!(
        rows,
        [
            "true",
            foreign_row.as_str(),
            r#"["eth3","198.51.100.10","announce0_local_source",false,1,1,1,null]"#,
        ],
        "{stdout}"
    );
}

#[test]
fn level1_onlink_and_offlink_sources_with_an_address_added_mid_trace() {
    let seed = seed(1, 0);
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp(C3_IP));
    let ev = request(&t, srv, SRV_ETH3_IP, C3_IP);
    assert_eq!(reason(&ev), "select_offlink_source", "{ev}");
    assert_eq!(ev["foreign_sender"], false);
    assert_eq!(announce(&ev), (1, Some(0), 1));
    assert!(s(&ev, "explanation").contains("rather than the packet's source"));

    // A secondary added while tracing: the tracer learns it from its netlink subscription.
    srv.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth3"]);
    srv.flush_neigh();
    srv.send_udp(Some(ipv4("198.51.100.11")), udp(C3_IP));
    let ev = request(&t, srv, "198.51.100.11", C3_IP);
    assert_eq!(reason(&ev), "announce1_onlink_source", "{ev}");
    assert_eq!(ev["foreign_sender"], false);
    assert_eq!(
        ev["addrs"],
        serde_json::json!(["198.51.100.10/24", "198.51.100.11/24"])
    );
    let secondary = ev["ns_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["addr"] == "198.51.100.11")
        .unwrap();
    assert_eq!(secondary["secondary"], true, "{ev}");
    stop_ok(t);
}

#[test]
fn level2_and_all_overriding_dev() {
    let seed = seed(0, 2);
    let srv = &seed.srv;
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp(C3_IP));
    let ev = request(&t, srv, SRV_ETH3_IP, C3_IP);
    assert_eq!(reason(&ev), "select_announce2", "{ev}");
    assert_eq!(ev["foreign_sender"], false);
    assert_eq!(announce(&ev), (0, Some(2), 2));
    assert!(s(&ev, "explanation").contains("ignoring the packet's source 203.0.113.10"));

    // `all` wins when it is the larger: eth3=0 but all=2.
    srv.set_announce("eth3", 0);
    srv.set_announce("all", 2);
    srv.flush_neigh();
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp("198.51.100.21"));
    let ev = request(&t, srv, SRV_ETH3_IP, "198.51.100.21");
    assert_eq!(reason(&ev), "select_announce2", "{ev}");
    assert_eq!(announce(&ev), (2, Some(0), 2));
    assert!(s(&ev, "explanation").contains("arp_announce=2 (all=2, eth3=0)"));
    stop_ok(t);
}

#[test]
fn sysctl_changed_while_tracing_changes_the_verdict_and_the_remedy_works() {
    let seed = seed(0, 0);
    let srv = &seed.srv;
    let t = Tracer::start(&[
        "--json",
        "-4",
        "--summary-interval",
        "1",
        "--netns",
        srv.name(),
    ]);
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp(C3_IP));
    let before = request(&t, srv, SRV_ETH5_IP, C3_IP);
    assert_eq!(reason(&before), "announce0_local_source");
    assert_eq!(before["foreign_sender"], true);

    // Apply the remedy exactly as printed, with the real sysctl(8): it names srv itself.
    let command = s(&before["remedy"], "command").to_string();
    assert!(
        command.starts_with(&format!(
            "ip netns exec {} sysctl -w net.ipv4.conf.eth3.",
            srv.name()
        )),
        "{command}"
    );
    // Run as argv, not through sh: the VM guest's busybox sh would pick its own `ip` applet.
    let argv: Vec<&str> = command.split_whitespace().collect();
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(out.status.success(), "{command}: {out:?}");

    srv.flush_neigh();
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp(C3_IP));
    let after = request(&t, srv, SRV_ETH3_IP, C3_IP);
    assert_eq!(reason(&after), "select_offlink_source", "{after}");
    assert_eq!(after["foreign_sender"], false);
    assert_eq!(announce(&after), (0, Some(1), 1));
    assert!(after["remedy"].is_null());

    // A periodic summary arrives before the end, counting both requests.
    let periodic = t.wait_for(
        |v| v["type"] == "summary" && v["final"] == false && v["requests"] == 2,
        EVENT_TIMEOUT,
    );
    assert_eq!(periodic[0]["foreign_requests"], 1, "{}", periodic[0]);
    let stdout = stop_ok(t);
    let last = jq_over(
        r#"select(.type=="summary" and .final) | .rows | length"#,
        &stdout,
    );
    assert_eq!(last.trim(), "2", "{stdout}");
}

#[test]
fn stale_reprobe_has_no_trigger() {
    let seed = seed(0, 0);
    let (srv, c3) = (&seed.srv, &seed.c3);
    srv.sysctl("net/ipv4/neigh/eth3/delay_first_probe_time", "1");
    let mac = c3.mac("eth0");
    srv.ip(&[
        "neigh", "replace", C3_IP, "lladdr", &mac, "dev", "eth3", "nud", "stale",
    ]);
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    // The packet goes out at once to the stale address; the kernel re-confirms it a second
    // later with a unicast probe that has no queued packet behind it.
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp(C3_IP));
    let ev = request(&t, srv, SRV_ETH3_IP, C3_IP);
    assert_eq!(ev["unicast"], true, "{ev}");
    assert!(ev["trigger"].is_null(), "{ev}");
    assert_eq!(reason(&ev), "select_no_trigger", "{ev}");
    assert_eq!(ev["foreign_sender"], false);
    assert!(s(&ev, "explanation").contains("No queued packet"));
    stop_ok(t);
}

#[test]
fn forwarded_packet_has_a_nonlocal_source() {
    let seed = seed(0, 0);
    let (srv, c5) = (&seed.srv, &seed.c5);
    srv.sysctl("net/ipv4/conf/all/forwarding", "1");
    c5.ip(&["route", "add", "198.51.100.0/24", "via", SRV_ETH5_IP]);
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    c5.send_udp(None, udp(C3_IP));
    let ev = request(&t, srv, SRV_ETH3_IP, C3_IP);
    assert_eq!(ev["trigger"]["origin"], "forwarded", "{ev}");
    assert_eq!(ev["trigger"]["src"], C5_IP, "{ev}");
    assert_eq!(reason(&ev), "select_nonlocal_source", "{ev}");
    assert_eq!(ev["foreign_sender"], false);
    assert!(s(&ev, "explanation").contains("203.0.113.20"));
    stop_ok(t);
}

#[test]
fn interface_without_ipv4_address() {
    let seed = seed(0, 0);
    let srv = &seed.srv;
    srv.ip(&[
        "link", "add", "eth4", "type", "veth", "peer", "name", "eth4p",
    ]);
    srv.ip(&["link", "set", "eth4", "up"]);
    srv.ip(&["link", "set", "eth4p", "up"]);
    srv.wait_link_up("eth4");
    srv.ip(&["route", "add", "192.0.2.0/24", "dev", "eth4"]);
    srv.set_announce("eth4", 2);
    let t = Tracer::start(&["--json", "--netns", srv.name()]);

    // Level 2 on eth4, which has nothing to pick: the kernel borrows eth3's address.
    srv.send_udp(None, udp("192.0.2.20"));
    let ev = request(&t, srv, SRV_ETH3_IP, "192.0.2.20");
    assert_eq!(s(&ev, "ifname"), "eth4");
    assert_eq!(reason(&ev), "select_no_address_on_dev", "{ev}");
    assert_eq!(ev["foreign_sender"], true);
    assert_eq!(ev["addrs"], serde_json::json!([]));
    assert_eq!(announce(&ev), (0, Some(2), 2));
    assert!(s(&ev, "explanation").contains("eth4 has no IPv4 address"));
    assert!(
        s(&ev["remedy"], "command")
            .starts_with(&format!("ip netns exec {} ip address add", srv.name())),
        "{ev}"
    );
    assert!(s(&ev["remedy"], "tradeoff").contains("arp_announce cannot help"));

    // Level 0: the packet's (borrowed, local) source is copied; still only an address helps.
    srv.set_announce("eth4", 0);
    srv.flush_neigh();
    srv.send_udp(None, udp("192.0.2.21"));
    let ev = request(&t, srv, SRV_ETH3_IP, "192.0.2.21");
    assert_eq!(reason(&ev), "announce0_local_source", "{ev}");
    assert_eq!(ev["foreign_sender"], true);
    // Placeholders `ip` refuses as they are; what they stand for is a comment.
    assert!(
        s(&ev["remedy"], "command").contains(
            "ip address add ADDRESS/PREFIX dev eth4  # ADDRESS/PREFIX: an unused address in \
             192.0.2.21's subnet"
        ),
        "{ev}"
    );
    stop_ok(t);
}

/// Kills the process holding a namespace when the test ends, even on failure.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn namespace_held_only_by_a_process() {
    let ns = lone("h");
    ns.set_announce("all", 0);
    ns.set_announce("eth3", 0);
    let holder = Holder(
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let proc_path = std::path::PathBuf::from(format!("/proc/{}/ns/net", holder.0.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&proc_path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .ok()
        != Some(ns.inode())
    {
        assert!(
            Instant::now() < deadline,
            "holder never entered {}",
            ns.name()
        );
        sleep(Duration::from_millis(20));
    }
    let ino = ns.inode();
    // Drop the name: only the process keeps the namespace now.
    ip(&["netns", "del", ns.name()]);
    let t = Tracer::start(&["--json", "--netns", &ino.to_string()]);
    send_udp_in(&proc_path, None, &[udp("198.51.100.77")]);
    let evs = t.wait_for(
        |v| is_request(v) && v["target_ip"] == "198.51.100.77",
        EVENT_TIMEOUT,
    );
    let ev = &evs[0];
    assert!(ev["netns_name"].is_null(), "{ev}");
    assert_eq!(ev["addrs"], serde_json::json!(["198.51.100.10/24"]), "{ev}");
    assert_eq!(reason(ev), "announce0_local_source", "{ev}");
    assert_eq!(ev["foreign_sender"], false);
    stop_ok(t);
    drop(holder);
    // `ns` is already deleted; its guard only warns.
    std::mem::forget(ns);
}

#[test]
fn tracer_does_not_keep_a_deleted_namespace_alive() {
    let Seed { srv, c3, c5 } = seed(0, 0);
    let t = Tracer::start(&["--json", "--netns", srv.name()]);
    srv.send_udp(None, udp(C3_IP));
    request(&t, &srv, SRV_ETH3_IP, C3_IP);
    srv.flush_neigh();
    drop(srv);
    // srv's end of the veth pair dies with srv, taking c3's eth0 with it, unless something
    // (such as a tracer's netlink socket) still holds srv.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["-n", c3.name(), "link", "show", "dev", "eth0"])
            .output()
            .unwrap();
        if !out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "srv still alive 10 s after deletion while the tracer runs"
        );
        sleep(Duration::from_millis(100));
    }
    stop_ok(t);
    drop((c3, c5));
}

#[test]
fn text_output_marks_foreign_senders_and_foreign_only_hides_the_rest() {
    let seed = seed(0, 0);
    let srv = &seed.srv;
    let t = Tracer::start(&["--foreign-only", "--netns", srv.name()]);
    srv.send_udp(None, udp(C3_IP));
    srv.flush_neigh();
    srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp("198.51.100.21"));
    t.wait_for_line(
        |l| l.contains("tell 203.0.113.10") && l.ends_with("  ! foreign sender"),
        EVENT_TIMEOUT,
    );
    sleep(Duration::from_millis(500));
    let stdout = stop_ok(t);
    let lines: Vec<&str> = stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("tell 203.0.113.10"))
        .unwrap();
    // Piped, so no colour: the marker alone says it.
    assert!(!lines[i].contains('\x1b'), "{stdout}");
    assert!(
        lines[i + 1].starts_with("    why (announce0_local_source): eth3 announces 203.0.113.10"),
        "{stdout}"
    );
    let fix = format!(
        "    fix: ip netns exec {} sysctl -w net.ipv4.conf.eth3.arp_announce=1",
        srv.name()
    );
    assert!(lines.contains(&fix.as_str()), "{stdout}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("who-has") && l.contains("tell 198.51.100.10")),
        "--foreign-only showed a request with a local sender: {stdout}"
    );
    let summary = lines
        .iter()
        .position(|l| l.starts_with("Summary: "))
        .unwrap();
    assert!(
        lines[summary + 1].starts_with("! ") && lines[summary + 1].contains("tell 203.0.113.10"),
        "{stdout}"
    );
}
