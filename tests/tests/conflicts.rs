//! End-to-end: address conflicts in what the namespaces' devices receive, on bridges with real
//! traffic: the seed as its dual-homed peer sees it (joined to the server's own explained
//! request), one address answered from two MACs on one link, a failover's gratuitous ARP, and
//! another host claiming a traced namespace's own address.

use arp_trace_e2e::*;

#[test]
#[ignore = "entry point of helper processes, not a test"]
fn helper_process() {
    helper_main()
}

fn conflicts(t: &Tracer, ns: &Netns, ip: &str) -> Vec<Value> {
    t.matching(|v| v["type"] == "conflict" && from_ns(v, ns) && v["ip"] == ip)
}

fn kinds(cs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = cs.iter().map(|c| s(c, "kind").to_string()).collect();
    k.sort();
    k.dedup();
    k
}

/// net-3 and net-5 are switches; the server and a peer are on both, c3 on net-3. The server
/// asks on net-3 with its net-5 address (arp_solicit() with arp_announce=0 takes the queued
/// packet's source, local on eth5); the peer, which knows that address on its net-5 link at
/// the server's eth5 MAC, receives it on its net-3 link at the server's eth3 MAC.
/// The seed on two switches, with a peer on both: (net-3, net-5, srv, peer, c3).
fn dual_homed() -> (Switch, Switch, Netns, Netns, Netns) {
    let (sw3, sw5) = (Switch::new(), Switch::new());
    let (srv, peer, c3) = (Netns::new("s"), Netns::new("pe"), Netns::new("c3"));
    sw3.plug(&srv, "eth3", "198.51.100.10/24");
    sw5.plug(&srv, "eth5", "203.0.113.10/24");
    sw3.plug(&peer, "eth3", "198.51.100.30/24");
    sw5.plug(&peer, "eth5", "203.0.113.30/24");
    sw3.plug(&c3, "eth0", "198.51.100.20/24");
    for (ns, dev) in [
        (&srv, "eth3"),
        (&srv, "eth5"),
        (&peer, "eth3"),
        (&peer, "eth5"),
    ] {
        ns.wait_link_up(dev);
    }
    (sw3, sw5, srv, peer, c3)
}

#[test]
fn the_dual_homed_peer_sees_the_seeds_address_on_two_links_and_foreign() {
    let (_sw3, _sw5, srv, peer, _c3) = dual_homed();
    let args = ["--netns", srv.name(), "--netns", peer.name()];
    let t = Tracer::start(&[&["--json", "-4"][..], &args].concat());
    let text = Tracer::start(&[&["-4"][..], &args].concat());
    // The peer talks to the server's net-5 address on net-5: its reply is the first sighting.
    peer.send_udp(None, udp(SRV_ETH5_IP));
    t.wait_for(
        |v| is_received(v) && from_ns(v, &peer) && v["sender_ip"] == SRV_ETH5_IP,
        EVENT_TIMEOUT,
    );
    // The seed: a socket bound to the net-5 address sends to c3 on net-3.
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let sent = t.wait_for(
        |v| is_request(v) && from_ns(v, &srv) && v["sender_ip"] == SRV_ETH5_IP,
        EVENT_TIMEOUT,
    );
    assert_eq!(sent[0]["reason"], "announce0_local_source", "{}", sent[0]);
    t.wait_for_n(
        |v| v["type"] == "conflict" && from_ns(v, &peer) && v["ifname"] == "eth3",
        2,
        EVENT_TIMEOUT,
    );
    let cs = conflicts(&t, &peer, SRV_ETH5_IP);
    assert_eq!(
        kinds(&cs),
        ["foreign_sender_received", "ip_on_two_links"],
        "{cs:#?}"
    );
    for c in &cs {
        assert_fields(
            c,
            &[
                ("ifname", json!("eth3")),
                ("mac", json!(srv.mac("eth3"))),
                ("gratuitous", json!(false)),
                ("probe", json!(false)),
            ],
        );
        // Joined to the server's own request and its explanation.
        let cause = &c["cause"];
        assert_eq!(cause["netns_name"], srv.name(), "{c}");
        assert_eq!(cause["ifname"], "eth3", "{c}");
        assert_eq!(cause["target_ip"], C3_IP, "{c}");
        assert_eq!(cause["reason"], "announce0_local_source", "{c}");
        assert_eq!(cause["foreign_sender"], true, "{c}");
        assert_eq!(cause["explanation"], sent[0]["explanation"], "{c}");
    }
    let two = cs.iter().find(|c| c["kind"] == "ip_on_two_links").unwrap();
    assert_eq!(two["other_mac"], json!(srv.mac("eth5")), "{two}");
    assert_eq!(two["other_ifname"], "eth5", "{two}");
    let foreign = cs
        .iter()
        .find(|c| c["kind"] == "foreign_sender_received")
        .unwrap();
    assert_eq!(
        foreign["other_ifname"], "eth5",
        "its subnet's interface: {foreign}"
    );
    // The server itself sees nothing wrong: its own frames are its own.
    assert!(
        t.matching(|v| v["type"] == "conflict" && from_ns(v, &srv))
            .is_empty(),
        "{:?}",
        t.json()
    );
    text.wait_for_line(
        |l| l.contains("CONFLICT ip_on_two_links 203.0.113.10"),
        EVENT_TIMEOUT,
    );
    let (st, stdout, stderr) = text.stop();
    assert!(st.success(), "{stderr}");
    let line = stdout
        .lines()
        .position(|l| l.contains("CONFLICT ip_on_two_links"))
        .unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[line].ends_with("! conflict"), "{stdout}");
    assert!(
        lines[line + 1].contains(&format!(
            "sent by {}/eth3: ARP who-has {C3_IP} tell {SRV_ETH5_IP}",
            srv.name()
        )),
        "{stdout}"
    );
    assert!(stderr.contains("address conflicts"), "{stderr}");
    let (st, _, stderr) = t.stop();
    assert!(st.success(), "{stderr}");
}

/// A switch with an observer and two hosts: the kernel's own requests from two MACs for one
/// address (ip_moved), a failover's gratuitous ARP (ip_moved, gratuitous, not a duplicate),
/// and a host using the observer's own address (duplicate_address).
#[test]
fn one_address_from_two_macs_moves_and_the_observers_own_address_is_a_duplicate() {
    let sw = Switch::new();
    let (obs, h1, h2) = (Netns::new("ob"), Netns::new("h1"), Netns::new("h2"));
    sw.plug(&obs, "eth0", "198.51.100.40/24");
    sw.plug(&h1, "eth0", "198.51.100.50/24");
    sw.plug(&h2, "eth0", "198.51.100.51/24");
    for h in [&obs, &h1, &h2] {
        h.wait_link_up("eth0");
    }
    let t = Tracer::start(&["--json", "-4", "--netns", obs.name()]);
    let (m1, m2) = (h1.mac("eth0"), h2.mac("eth0"));

    // Both hosts hold 198.51.100.77 and talk to the observer from it.
    let both = "198.51.100.77";
    for h in [&h1, &h2] {
        h.ip(&["addr", "add", &format!("{both}/24"), "dev", "eth0"]);
    }
    h1.send_udp(Some(both.parse().unwrap()), udp("198.51.100.40"));
    t.wait_for(
        |v| is_received(v) && v["sender_ip"] == both && v["sender_mac"] == m1.as_str(),
        EVENT_TIMEOUT,
    );
    h2.send_udp(Some(both.parse().unwrap()), udp("198.51.100.40"));
    let moved = t.wait_for(
        |v| v["type"] == "conflict" && v["ip"] == both && v["kind"] == "ip_moved",
        EVENT_TIMEOUT,
    );
    assert_fields(
        &moved[0],
        &[
            ("mac", json!(m2)),
            ("other_mac", json!(m1)),
            ("ifname", json!("eth0")),
            ("gratuitous", json!(false)),
            ("cause", json!(null)),
            // A request to the observer's own address: neigh_event_ns() overrides the entry
            // neigh_event_ns() made for h1's request moments before.
            ("overwritten", json!(true)),
        ],
    );
    let over = t.wait_for(|v| is_change_to(v, both, &m2), EVENT_TIMEOUT);
    assert_fields(
        &over[0],
        &[
            ("old_mac", json!(m1)),
            ("new_state", json!("stale")),
            ("cause", json!("received_arp")),
        ],
    );

    // A failover: h1 then h2 announce a virtual address, as keepalived does.
    let vip = "198.51.100.88";
    let mut a1 = Helper::spawn(&h1, "vrrp-h1");
    let mut a2 = Helper::spawn(&h2, "vrrp-h2");
    a1.arp_from("eth0", vip, vip, &m1);
    t.wait_for(|v| is_received(v) && v["sender_ip"] == vip, EVENT_TIMEOUT);
    a2.arp_from("eth0", vip, vip, &m2);
    let failover = t.wait_for(|v| v["type"] == "conflict" && v["ip"] == vip, EVENT_TIMEOUT);
    assert_eq!(failover[0]["kind"], "ip_moved", "{}", failover[0]);
    assert_eq!(failover[0]["gratuitous"], true, "{}", failover[0]);
    // The observer never had an entry for it (arp_accept=0 creates none from gratuitous ARP):
    // nothing was overwritten, whatever the wire says.
    assert_eq!(failover[0]["overwritten"], false, "{}", failover[0]);

    // h1 takes the observer's address and asks for h2 with it.
    h1.ip(&["addr", "add", "198.51.100.40/32", "dev", "eth0"]);
    h1.send_udp(Some("198.51.100.40".parse().unwrap()), udp("198.51.100.51"));
    let dup = t.wait_for(
        |v| v["type"] == "conflict" && v["kind"] == "duplicate_address",
        EVENT_TIMEOUT,
    );
    assert_fields(
        &dup[0],
        &[
            ("ip", json!("198.51.100.40")),
            ("mac", json!(m1)),
            ("other_ifname", json!("eth0")),
            ("probe", json!(false)),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, stdout, stderr) = t.stop();
    assert!(st.success(), "{stderr}");
    // The failover is a move, never a duplicate: the address is not the observer's.
    let all = parse_json_lines(&stdout);
    let about = |ip: &str| -> Vec<Value> {
        all.iter()
            .filter(|v| v["type"] == "conflict" && v["ip"] == ip)
            .cloned()
            .collect()
    };
    assert_eq!(kinds(&about(vip)), ["ip_moved"], "{stdout}");
    assert_eq!(kinds(&about(both)), ["ip_moved"], "{stdout}");
    // The observer's own requests and replies are never conflicts of its own.
    assert!(
        all.iter()
            .filter(|v| v["type"] == "conflict")
            .all(|v| v["mac"] != obs.mac("eth0").as_str()),
        "{stdout}"
    );
}

/// One trace of the seed before the fix, one after `arp_announce=1` on the server's eth3:
/// the peer's conflicts are gone, and `diff` says so; the trace replays them as recorded.
#[test]
fn after_the_fix_the_peer_sees_none_and_diff_says_so() {
    let (_sw3, _sw5, srv, peer, _c3) = dual_homed();
    let d = Scratch::new("conflicts-diff");
    let (before, after) = (d.file("before.jsonl"), d.file("after.jsonl"));
    let run = |file: &str| -> String {
        let t = Tracer::start(&[
            "--json",
            "-4",
            "--netns",
            srv.name(),
            "--netns",
            peer.name(),
            "-w",
            file,
        ]);
        srv.flush_neigh();
        srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
        t.wait_for(
            |v| is_received(v) && from_ns(v, &peer) && v["target_ip"] == C3_IP,
            EVENT_TIMEOUT,
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (st, out, e) = t.stop();
        assert!(st.success(), "{e}");
        out
    };
    let live = run(&before);
    let found: Vec<Value> = parse_json_lines(&live)
        .into_iter()
        .filter(|v| v["type"] == "conflict")
        .collect();
    assert_eq!(kinds(&found), ["foreign_sender_received"], "{live}");
    // The fix: arp_announce=1 makes arp_solicit() skip a source outside eth3's subnets.
    srv.set_announce("eth3", 1);
    let live_after = run(&after);
    assert!(!live_after.contains(r#""type":"conflict""#), "{live_after}");

    // Replay prints the conflicts as recorded, byte for byte.
    let r = arp_trace(&["-r", &before, "--json"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(r.stdout, live);
    // The summary's conflicts table and diff's verdict.
    let r = arp_trace(&["-r", &before]);
    assert!(
        r.stdout
            .contains("Conflicts: 1 row (by interface, kind and address)")
            && r.stdout.contains(&format!(
                "! {}/eth3 foreign_sender_received {SRV_ETH5_IP}: 1 report",
                peer.name()
            )),
        "{}",
        r.stdout
    );
    let r = arp_trace(&["diff", &before, &after]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stdout.contains("conflicts seen: 1 -> 0"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "vanished  {}/eth3 {SRV_ETH5_IP} foreign_sender_received: 1 -> 0",
            peer.name()
        )),
        "{}",
        r.stdout
    );
    let r = arp_trace(&["diff", "--json", &before, &after]);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let c = &v["conflicts"][0];
    assert_eq!(c["kind"], "foreign_sender_received", "{v}");
    assert_eq!(
        (c["before"].as_u64(), c["after"].as_u64()),
        (Some(1), Some(0)),
        "{v}"
    );
}
