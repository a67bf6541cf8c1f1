//! End-to-end: the neighbour table's changes (`neigh_change`), each with its cause, on a
//! bridge with real frames: a reply resolving an entry, a frame the kernel refuses to let
//! overwrite a fresh entry (`locktime`) and the same frame once that time is over, an
//! `ip neigh replace` (an administrative change, not a conflict), a probed entry its
//! timer fails, and an entry `ip neigh del` fails while it resolves.
//!
//! The expected values come from `net/ipv4/arp.c` and `net/core/neighbour.c`: `arp_process()`
//! updates the sender's existing entry with `NEIGH_UPDATE_F_OVERRIDE` only when the entry was
//! last updated more than `locktime` ago (or the frame is gratuitous); without it,
//! `__neigh_update()` leaves a valid entry's address alone. A received reply to this host
//! makes the entry REACHABLE, a request STALE. `neigh_add()` passes the netlink sender's port
//! to `__neigh_update()`, and a netlink socket's port is its process id unless it bound one.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use arp_trace_e2e::*;

#[test]
#[ignore = "entry point of helper processes, not a test"]
fn helper_process() {
    helper_main()
}

fn changes(t: &Tracer, ns: &Netns, ip: &str) -> Vec<Value> {
    t.matching(|v| v["type"] == "neigh_change" && from_ns(v, ns) && v["ip"] == ip)
}

/// An observer and two hosts on one switch; the observer's entry for an address h1 holds.
#[test]
fn an_entry_is_overwritten_only_after_locktime() {
    let sw = Switch::new();
    let (obs, h1, h2) = (Netns::new("ob"), Netns::new("h1"), Netns::new("h2"));
    sw.plug(&obs, "eth0", "198.51.100.40/24");
    sw.plug(&h1, "eth0", "198.51.100.30/24");
    sw.plug(&h2, "eth0", "198.51.100.31/24");
    for h in [&obs, &h1, &h2] {
        h.wait_link_up("eth0");
    }
    // 3 s (USER_HZ) rather than 1: the test's own steps must fit inside it under emulation.
    obs.sysctl("net/ipv4/neigh/eth0/locktime", "300");
    let t = Tracer::start(&["--json", "-4", "--netns", obs.name()]);
    let (m1, m2) = (h1.mac("eth0"), h2.mac("eth0"));
    let addr = "198.51.100.30";

    // The observer asks, h1 answers: INCOMPLETE -> REACHABLE at h1's MAC, by that reply.
    obs.send_udp(None, udp(addr));
    let learnt = t.wait_for(|v| is_change_to(v, addr, &m1), EVENT_TIMEOUT);
    assert_fields(
        &learnt[0],
        &[
            ("ifname", json!("eth0")),
            ("netns", json!(obs.inode())),
            ("old_mac", json!(null)),
            ("old_state", json!("incomplete")),
            ("new_state", json!("reachable")),
            ("cause", json!("received_arp")),
            ("nlmsg_pid", json!(null)),
            ("task", json!(null)),
        ],
    );
    assert_fields(
        &learnt[0]["frame"],
        &[
            ("op", json!("reply")),
            ("sender_ip", json!(addr)),
            ("sender_mac", json!(m1)),
            ("target_ip", json!("198.51.100.40")),
            ("gratuitous", json!(false)),
        ],
    );

    // Within locktime h2 claims the address in a request to someone else: the address moved
    // on the wire, but the kernel keeps its entry (no override, a valid entry's address
    // stays).
    let mut a2 = Helper::spawn(&h2, "claim-h2");
    a2.arp_from("eth0", addr, "198.51.100.99", &m2);
    let moved = t.wait_for(
        |v| v["type"] == "conflict" && v["ip"] == addr && v["kind"] == "ip_moved",
        EVENT_TIMEOUT,
    );
    assert_fields(
        &moved[0],
        &[
            ("mac", json!(m2)),
            ("other_mac", json!(m1)),
            ("overwritten", json!(false)),
        ],
    );
    assert_eq!(changes(&t, &obs, addr).len(), 1, "{:?}", t.lines());

    // Past locktime the same frame overrides: STALE at h2's MAC (a request), by that frame.
    std::thread::sleep(Duration::from_millis(3500));
    a2.arp_from("eth0", addr, "198.51.100.99", &m2);
    let over = t.wait_for(|v| is_change_to(v, addr, &m2), EVENT_TIMEOUT);
    assert_fields(
        &over[0],
        &[
            ("old_mac", json!(m1)),
            ("new_state", json!("stale")),
            ("cause", json!("received_arp")),
        ],
    );
    assert_fields(
        &over[0]["frame"],
        &[
            ("op", json!("request")),
            ("sender_mac", json!(m2)),
            ("target_ip", json!("198.51.100.99")),
        ],
    );
    let (st, _, stderr) = t.stop();
    assert!(st.success(), "{stderr}");
    assert!(stderr.contains("; 2 neighbour entries changed"), "{stderr}");
}

/// `ip neigh replace` with another MAC: a change by netlink, named by the `ip` that made it,
/// and no conflict (nothing was received).
#[test]
fn ip_neigh_replace_is_an_administrative_change_not_a_conflict() {
    let sw = Switch::new();
    let (obs, h1) = (Netns::new("ob"), Netns::new("h1"));
    sw.plug(&obs, "eth0", "198.51.100.40/24");
    sw.plug(&h1, "eth0", "198.51.100.30/24");
    for h in [&obs, &h1] {
        h.wait_link_up("eth0");
    }
    let d = Scratch::new("table-replace");
    let trace = d.file("t.jsonl");
    let t = Tracer::start(&["--json", "-4", "--netns", obs.name(), "-w", &trace]);
    let addr = "198.51.100.30";
    obs.send_udp(None, udp(addr));
    t.wait_for(
        |v| v["type"] == "neigh_change" && v["ip"] == addr && v["cause"] == "received_arp",
        EVENT_TIMEOUT,
    );
    let fake = "02:00:5e:00:53:30";
    let ip = Command::new("ip")
        .args(["-n", obs.name(), "neigh", "replace", addr, "lladdr", fake])
        .args(["dev", "eth0", "nud", "permanent"])
        .spawn()
        .expect("ip");
    let pid = ip.id();
    let out = ip.wait_with_output().expect("ip");
    assert!(out.status.success(), "{out:?}");
    let admin = t.wait_for(
        |v| v["type"] == "neigh_change" && v["ip"] == addr && v["cause"] == "netlink",
        EVENT_TIMEOUT,
    );
    assert_fields(
        &admin[0],
        &[
            ("old_mac", json!(h1.mac("eth0"))),
            ("new_mac", json!(fake)),
            ("old_state", json!("reachable")),
            ("new_state", json!("permanent")),
            ("nlmsg_pid", json!(pid)),
            ("task", json!({"pid": pid, "comm": "ip"})),
            ("frame", json!(null)),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (st, stdout, stderr) = t.stop();
    assert!(st.success(), "{stderr}");
    let all = parse_json_lines(&stdout);
    assert!(
        all.iter().all(|v| v["type"] != "conflict"),
        "an administrative change is no conflict: {stdout}"
    );
    // Replay shows the same changes, in words too.
    let replay = arp_trace(&["-r", &trace, "--json"]);
    assert!(replay.status.success(), "{replay:?}");
    let replayed: Vec<Value> = parse_json_lines(&replay.stdout)
        .into_iter()
        .filter(|v| v["type"] == "neigh_change")
        .collect();
    let live: Vec<Value> = all
        .into_iter()
        .filter(|v| v["type"] == "neigh_change")
        .collect();
    assert_eq!(replayed, live);
    let text = arp_trace(&["-r", &trace]);
    assert!(
        text.stdout.contains(&format!(
            "NEIGH {addr} {} (reachable) -> {fake} (permanent), by ip[{pid}] over netlink",
            h1.mac("eth0")
        )),
        "{}",
        text.stdout
    );
}

/// A reachable entry whose host stops answering: its reachable time runs out while it was
/// used within `delay_first_probe_time`, so DELAY, then PROBE, whose unicast probes go to the
/// entry's MAC; after `ucast_solicit` (3) unanswered probes `neigh_timer_handler()` makes it
/// FAILED. Valid to not valid, by its timer.
#[test]
fn a_probed_entry_that_fails_is_a_change_by_its_timer() {
    let sw = Switch::new();
    let (obs, h1) = (Netns::new("ob"), Netns::new("h1"));
    sw.plug(&obs, "eth0", "198.51.100.40/24");
    sw.plug(&h1, "eth0", "198.51.100.30/24");
    for h in [&obs, &h1] {
        h.wait_link_up("eth0");
    }
    // Short timers, so DELAY and PROBE come in seconds; 3 s of DELAY for h1 to stop answering.
    for (key, value) in [
        ("base_reachable_time_ms", "500"),
        ("delay_first_probe_time", "3"),
        ("retrans_time_ms", "300"),
    ] {
        obs.sysctl(&format!("net/ipv4/neigh/eth0/{key}"), value);
    }
    let t = Tracer::start(&["--json", "-4", "--netns", obs.name()]);
    let (addr, m1) = ("198.51.100.30", h1.mac("eth0"));
    obs.send_udp(None, udp(addr));
    t.wait_for(|v| is_change_to(v, addr, &m1), EVENT_TIMEOUT);
    h1.ip(&["addr", "del", "198.51.100.30/24", "dev", "eth0"]);
    let lost = t.wait_for(
        |v| v["type"] == "neigh_change" && v["ip"] == addr && v["cause"] == "timer",
        EVENT_TIMEOUT,
    );
    assert_fields(
        &lost[0],
        &[
            ("old_mac", json!(m1)),
            ("new_mac", json!(null)),
            ("old_state", json!("probe")),
            ("new_state", json!("failed")),
            ("frame", json!(null)),
            ("task", json!(null)),
        ],
    );
    let probes = t.matching(|v| {
        is_request(v)
            && v["target_ip"] == addr
            && v["unicast"] == true
            && v["eth_dst"] == m1.as_str()
    });
    assert_eq!(probes.len(), 3, "{:?}", t.lines());
    let (st, _, stderr) = t.stop();
    assert!(st.success(), "{stderr}");
}

/// Pins the calling thread (or, before exec, the child) to CPU 0.
fn on_cpu0() -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `ip neigh del` of an entry still resolving: `neigh_delete()` calls `__neigh_update()` to
/// NUD_FAILED, and for an INCOMPLETE entry that is `neigh_invalidate()`, which drops the queued
/// packet through `arp_error_report()` (SKB_DROP_REASON_NEIGH_FAILED) as the timer would, but
/// no timer runs. So the entry's resolution failed, by that `ip` process (its netlink port is
/// its pid), after the one request sent at once (`retrans_time` is 10 s). The next resolution
/// on the same CPU is a first request and nothing else: it cannot fail for 30 s.
#[test]
fn an_entry_ip_neigh_del_fails_while_it_resolves_is_a_failure_by_that_process() {
    let ns = lone_ipv4_only("nd");
    ns.sysctl("net/ipv4/neigh/eth3/retrans_time_ms", "10000");
    let d = Scratch::new("table-del");
    let trace = d.file("t.jsonl");
    let t = Tracer::start(&["--json", "-4", "--netns", ns.name(), "-w", &trace]);
    let (gone, next) = ("198.51.100.77", "198.51.100.78");
    let send = |to: &str| {
        let to = udp(to);
        ns.run_in(move || {
            on_cpu0().expect("sched_setaffinity");
            let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.send_to(b"arp-trace-e2e", to).expect("send_to");
        })
    };
    send(gone);
    t.wait_for(|v| is_request(v) && v["target_ip"] == gone, EVENT_TIMEOUT);
    let mut del = Command::new("ip");
    del.args(["-n", ns.name(), "neigh", "del", gone, "dev", "eth3"]);
    // SAFETY: sched_setaffinity only, between fork and exec.
    unsafe { del.pre_exec(on_cpu0) };
    let ip = del.spawn().expect("ip");
    let pid = ip.id();
    let out = ip.wait_with_output().expect("ip");
    assert!(out.status.success(), "{out:?}");
    let failed = t.wait_for(
        |v| v["type"] == "neigh_failed" && v["target_ip"] == gone,
        EVENT_TIMEOUT,
    );
    assert_fields(
        &failed[0],
        &[
            ("ifname", json!("eth3")),
            ("attempts", json!(1)),
            ("cause", json!("netlink")),
            ("nlmsg_pid", json!(pid)),
            ("task", json!({"pid": pid, "comm": "ip"})),
            ("dropped_omitted", json!(0)),
        ],
    );
    let dropped = failed[0]["dropped"].as_array().expect("dropped");
    assert_eq!(dropped.len(), 1, "{}", failed[0]);
    assert_fields(
        &dropped[0],
        &[
            ("src", json!("198.51.100.10")),
            ("dst", json!(gone)),
            ("proto", json!("udp")),
            ("dport", json!(9)),
            ("drop_reason", json!("neigh_failed")),
        ],
    );

    // Its drops were this CPU's last: the next entry solicited here only starts resolving.
    send(next);
    let first = t.wait_for(|v| is_request(v) && v["target_ip"] == next, EVENT_TIMEOUT);
    assert_fields(
        &first[0],
        &[("neigh_state", json!("incomplete")), ("attempt", json!(1))],
    );
    std::thread::sleep(scaled(Duration::from_secs(1)));
    let (st, stdout, stderr) = t.stop();
    assert!(st.success(), "{stderr}");
    let failures: Vec<Value> = parse_json_lines(&stdout)
        .into_iter()
        .filter(|v| v["type"] == "neigh_failed")
        .collect();
    assert_eq!(failures.len(), 1, "only the deleted entry failed: {stdout}");
    let text = arp_trace(&["-r", &trace]);
    assert!(
        text.stdout.contains(&format!(
            "ARP {gone} failed after 1 request, by ip[{pid}] over netlink; dropped 1 packet"
        )),
        "{}",
        text.stdout
    );
}
