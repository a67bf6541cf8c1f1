//! The facts behind each request's verdict are those of the moment the frame left: the BPF
//! program reads arp_announce (`all` and the device) and the device's addresses, and they
//! reach the event's `arp_announce`, `addrs` and `ns_addrs`.

use arp_trace_e2e::*;
use serde_json::Value;

fn request_from<'a>(srv: &'a Netns, sender: &'static str) -> impl Fn(&Value) -> bool + 'a {
    move |v| is_request(v) && from_ns(v, srv) && v["sender_ip"] == sender && v["target_ip"] == C3_IP
}

#[test]
fn egress_facts_are_those_of_the_moment() {
    let seed = Seed::new();
    let srv = &seed.srv;
    srv.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth3"]);
    srv.set_announce("all", 0);
    srv.set_announce("eth3", 1);
    let t = Tracer::start(&["--json", "--netns", srv.name()]);

    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    // arp_announce=1 and 203.0.113.10 is not on-link with the target: eth3's address is used.
    let ev = t.wait_for(request_from(srv, SRV_ETH3_IP), EVENT_TIMEOUT)[0].clone();
    assert_eq!(
        ev["arp_announce"],
        serde_json::json!({"all": 0, "dev": 1, "effective": 1}),
        "{ev}"
    );
    assert_eq!(
        ev["addrs"],
        serde_json::json!(["198.51.100.10/24", "198.51.100.11/24"]),
        "{ev}"
    );
    let eth3: Vec<(String, bool)> = ev["ns_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["ifname"] == "eth3")
        .map(|a| (s(a, "addr").to_string(), a["secondary"] == true))
        .collect();
    assert_eq!(
        eth3,
        [
            (SRV_ETH3_IP.to_string(), false),
            ("198.51.100.11".to_string(), true)
        ],
        "{ev}"
    );
    assert_eq!(ev["reason"], "select_offlink_source", "{ev}");

    // Changed while tracing: the next request carries the new values, not a cached copy.
    srv.set_announce("eth3", 0);
    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let ev = t.wait_for(request_from(srv, SRV_ETH5_IP), EVENT_TIMEOUT)[0].clone();
    assert_eq!(ev["arp_announce"]["dev"], 0, "{ev}");
    assert_eq!(ev["reason"], "announce0_local_source", "{ev}");
    srv.set_announce("all", 2);
    srv.ip(&["addr", "del", "198.51.100.11/24", "dev", "eth3"]);
    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let evs = t.wait_for_n(request_from(srv, SRV_ETH3_IP), 2, EVENT_TIMEOUT);
    assert_eq!(
        evs[1]["arp_announce"],
        serde_json::json!({"all": 2, "dev": 0, "effective": 2}),
        "{}",
        evs[1]
    );
    assert_eq!(
        evs[1]["addrs"],
        serde_json::json!(["198.51.100.10/24"]),
        "{}",
        evs[1]
    );
    assert_eq!(evs[1]["reason"], "select_announce2", "{}", evs[1]);

    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}
