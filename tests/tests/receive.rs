//! End-to-end: ARP frames the host's devices receive (`"direction":"in"`), caught by the
//! receive hook in every namespace: the peer's side of the seed, a bridge's port and bridge,
//! `--direction`, and the pcapng direction flag Wireshark reads.

use std::process::Command;

use arp_trace_e2e::*;

/// The seed's request as the client on net-3 receives it: the server's net-5 address at the
/// server's net-3 MAC, the frame the server sent, byte for byte.
#[test]
fn the_peer_receives_the_seeds_foreign_sender() {
    let seed = Seed::new();
    let (srv, c3) = (&seed.srv, &seed.c3);
    let d = Scratch::new("receive-seed");
    let pcap = d.file("seed.pcapng");
    let t = Tracer::start(&[
        "--json",
        "--netns",
        srv.name(),
        "--netns",
        c3.name(),
        "--pcap",
        &pcap,
    ]);
    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let sent = t.wait_for(
        |v| is_request(v) && from_ns(v, srv) && v["sender_ip"] == SRV_ETH5_IP,
        EVENT_TIMEOUT,
    );
    let got = t.wait_for(
        |v| is_received(v) && from_ns(v, c3) && v["op"] == "request",
        EVENT_TIMEOUT,
    );
    let (sent, got) = (&sent[0], &got[0]);
    assert_fields(
        got,
        &[
            ("type", json!("arp")),
            ("direction", json!("in")),
            ("ifname", json!("eth0")),
            ("netns", json!(c3.inode())),
            ("sender_ip", json!(SRV_ETH5_IP)),
            ("sender_mac", json!(srv.mac("eth3"))),
            ("target_ip", json!(C3_IP)),
            ("eth_dst", json!("ff:ff:ff:ff:ff:ff")),
            // Nothing this host decided: no trigger, no verdict.
            ("trigger", json!(null)),
            ("reason", json!(null)),
            ("foreign_sender", json!(null)),
        ],
    );
    assert_eq!(got["ifindex"], json!(c3.ifindex("eth0")));
    assert_eq!(sent["direction"], "out");
    assert_eq!(sent["foreign_sender"], true, "{sent}");
    // A veth hands the frame over as it was queued: the same bytes.
    assert_eq!(got["frame"], sent["frame"]);
    assert_frame_consistent(got);
    // c3's reply arrives on srv's eth3.
    t.wait_for(
        |v| is_received(v) && from_ns(v, srv) && v["op"] == "reply" && v["sender_ip"] == C3_IP,
        EVENT_TIMEOUT,
    );
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
    assert!(stderr.contains("ARP frames received"), "{stderr}");
    // Received requests are not this host's requests: no summary row for them.
    let summary = parse_json_lines(&stdout)
        .into_iter()
        .find(|v| v["type"] == "summary")
        .unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["netns_name"] != c3.name() || r["family"] != "ipv4"),
        "{summary}"
    );

    // Wireshark reads the direction from each packet's flags: 1 inbound, 2 outbound.
    let out = Command::new("tshark")
        .args([
            "-r",
            &pcap,
            "-Y",
            "arp",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args([
            "-e",
            "frame.interface_name",
            "-e",
            "frame.packet_flags_direction",
        ])
        .args(["-e", "arp.opcode", "-e", "arp.src.proto_ipv4"])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let has = |line: &str| text.lines().any(|l| l == line);
    let (s, c) = (srv.name(), c3.name());
    assert!(
        has(&format!("{s}/eth3|0x00000002|1|{SRV_ETH5_IP}")),
        "{text}"
    );
    assert!(
        has(&format!("{c}/eth0|0x00000001|1|{SRV_ETH5_IP}")),
        "{text}"
    );
    assert!(has(&format!("{c}/eth0|0x00000002|2|{C3_IP}")), "{text}");
    assert!(has(&format!("{s}/eth3|0x00000001|2|{C3_IP}")), "{text}");
    // The received request's comment names the conflict it showed and the entry it made in
    // c3's table (neigh_event_ns(): a request for c3's own address, from a new sender).
    let out = Command::new("tshark")
        .args(["-r", &pcap, "-T", "fields", "-e", "frame.comment"])
        .args([
            "-Y",
            &format!("arp.opcode == 1 && frame.interface_name == \"{c}/eth0\""),
        ])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let m = srv.mac("eth3");
    assert!(
        text.contains(&format!(
            "CONFLICT foreign_sender_received {SRV_ETH5_IP} at {m} (in none of eth0's subnets)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the kernel's table: NEIGH {SRV_ETH5_IP} none -> {m} (stale), by received request \
             from {SRV_ETH5_IP} is-at {m}"
        )),
        "{text}"
    );
}

/// A broadcast request through a bridge is received on the port, received again on the
/// bridge (it is passed up), and leaves by the other port as a bridged frame.
#[test]
fn a_bridge_shows_the_port_the_bridge_and_the_way_out() {
    let sw = Switch::new();
    let h1 = Netns::new("h1");
    let h2 = Netns::new("h2");
    sw.plug(&h1, "eth0", "192.0.2.11/24");
    sw.plug(&h2, "eth0", "192.0.2.12/24");
    let t = Tracer::start(&["--json", "-4", "--netns", sw.br.name()]);
    h1.send_udp(None, udp("192.0.2.12"));
    let is_ours = |v: &Value| v["op"] == "request" && v["target_ip"] == "192.0.2.12";
    let on = |dev: &'static str, dir: &'static str| {
        move |v: &Value| is_ours(v) && v["ifname"] == dev && v["direction"] == dir
    };
    t.wait_for(on("p1", "in"), EVENT_TIMEOUT);
    t.wait_for(on("br0", "in"), EVENT_TIMEOUT);
    let out = t.wait_for(on("p2", "out"), EVENT_TIMEOUT);
    // Forwarded by the bridge, not built here: no trigger and no verdict.
    assert_eq!(out[0]["trigger"], json!(null), "{}", out[0]);
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}

/// `--direction out` leaves the receive hook off entirely; `--direction in` shows only
/// received frames and counts no request of the host's.
#[test]
fn direction_selects_and_out_does_not_attach_the_receive_hook() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let out_only = Tracer::start(&["--json", "-4", "--direction", "out", "--netns", srv.name()]);
    let in_only = Tracer::start(&["--json", "-4", "--direction", "in", "--netns", srv.name()]);
    srv.send_udp(None, udp(C3_IP));
    out_only.wait_for(request_to(C3_IP), EVENT_TIMEOUT);
    in_only.wait_for(|v| is_received(v) && v["sender_ip"] == C3_IP, EVENT_TIMEOUT);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, o_out, o_err) = out_only.stop();
    assert!(st.success(), "{o_err}");
    let (st, i_out, i_err) = in_only.stop();
    assert!(st.success(), "{i_err}");
    assert!(!o_err.contains("receive="), "{o_err}");
    assert!(
        i_err.contains("receive=tp_btf/netif_receive_skb"),
        "{i_err}"
    );
    let arp = |s: &str| -> Vec<Value> {
        parse_json_lines(s)
            .into_iter()
            .filter(|v| v["type"] == "arp")
            .collect()
    };
    let (o, i) = (arp(&o_out), arp(&i_out));
    assert!(
        !o.is_empty() && o.iter().all(|v| v["direction"] == "out"),
        "{o:?}"
    );
    assert!(
        !i.is_empty() && i.iter().all(|v| v["direction"] == "in"),
        "{i:?}"
    );
    assert_eq!(parse_counts(&i_err).requests, 0, "{i_err}");
}

fn request_to(target: &'static str) -> impl Fn(&Value) -> bool {
    move |v| is_request(v) && v["target_ip"] == target
}
