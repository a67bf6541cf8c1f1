//! The egress device's facts travel with each ARP event as the kernel held them when the
//! frame left (`egress`): arp_announce of `all` and of the device, and its addresses.

use std::process::Command;

use arp_trace_e2e::*;
use serde_json::Value;

/// Writes a sysctl inside the test's own namespace (never the root one).
fn sysctl(ns: &Netns, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let st = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sh", "-c"])
        .arg(format!("echo {value} > {path}"))
        .status()
        .expect("ip netns exec");
    assert!(st.success(), "cannot set {key}={value} in {}", ns.name());
}

fn request_from<'a>(srv: &'a Netns, sender: &'static str) -> impl Fn(&Value) -> bool + 'a {
    move |v| is_request(v) && from_ns(v, srv) && v["sender_ip"] == sender && v["target_ip"] == C3_IP
}

#[test]
fn egress_facts_are_those_of_the_moment() {
    let seed = Seed::new();
    let srv = &seed.srv;
    srv.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth3"]);
    sysctl(srv, "net.ipv4.conf.all.arp_announce", "0");
    sysctl(srv, "net.ipv4.conf.eth3.arp_announce", "1");
    let t = Tracer::start(&["--json", "--netns", srv.name()]);

    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    // arp_announce=1 and 203.0.113.10 is not on-link with the target: eth3's address is used.
    let ev = t.wait_for(request_from(srv, SRV_ETH3_IP), EVENT_TIMEOUT)[0].clone();
    let e = &ev["egress"];
    assert_eq!(
        (e["announce_all"].as_i64(), e["announce_dev"].as_i64()),
        (Some(0), Some(1)),
        "{ev}"
    );
    let addrs: Vec<(String, u64, bool)> = e["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                s(a, "addr").to_string(),
                a["prefixlen"].as_u64().unwrap(),
                a["secondary"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        addrs,
        [
            (SRV_ETH3_IP.to_string(), 24, false),
            ("198.51.100.11".to_string(), 24, true)
        ],
        "{ev}"
    );
    assert_eq!(e["truncated"], false);

    // Changed while tracing: the next request carries the new values, not a cached copy.
    sysctl(srv, "net.ipv4.conf.eth3.arp_announce", "0");
    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let ev = t.wait_for(request_from(srv, SRV_ETH5_IP), EVENT_TIMEOUT)[0].clone();
    assert_eq!(ev["egress"]["announce_dev"].as_i64(), Some(0), "{ev}");
    sysctl(srv, "net.ipv4.conf.all.arp_announce", "2");
    srv.ip(&["addr", "del", "198.51.100.11/24", "dev", "eth3"]);
    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    let evs = t.wait_for_n(request_from(srv, SRV_ETH3_IP), 2, EVENT_TIMEOUT);
    let e = &evs[1]["egress"];
    assert_eq!(
        (e["announce_all"].as_i64(), e["announce_dev"].as_i64()),
        (Some(2), Some(0)),
        "{}",
        evs[1]
    );
    assert_eq!(e["addrs"].as_array().unwrap().len(), 1, "{}", evs[1]);

    let (status, _, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
}
