//! One case per kernel rule the explanations once got wrong (issue 13), each in facts where
//! the old helpers and the kernel disagree. The expected sender and reason come from the kernel
//! functions named in each test (Debian 6.1.192: net/ipv4/arp.c, devinet.c, fib_frontend.c),
//! not from arp-trace's output.

use std::net::Ipv4Addr;

use arp_trace_model::{
    IfAddr, Lender, Link, NsFacts, Origin, Reason, Task, RT_SCOPE_HOST, RT_SCOPE_LINK,
};

use super::tests::{addr, request, trigger};
use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn scoped(ifname: &str, a: &str, prefix_len: u8, scope: u8) -> IfAddr<'static> {
    IfAddr {
        scope: Some(scope),
        secondary: Some(false),
        ..addr(ifname, a, prefix_len)
    }
}

fn lender(ifname: &str, a: &str) -> Lender {
    Lender {
        ifname: ifname.to_string(),
        addr: ip(a),
    }
}

fn link(ifname: &str, master: Option<&str>, vrf_table: Option<u32>) -> Link {
    Link {
        ifname: ifname.to_string(),
        ifindex: None,
        master: master.map(str::to_string),
        vrf_table,
    }
}

/// eth3 has no address: inet_select_addr() goes to `no_in_dev` and borrows.
fn borrowing(addrs: Vec<IfAddr<'static>>, lenders: Option<Vec<Lender>>) -> NsFacts<'static> {
    NsFacts {
        announce_all: 2,
        addrs,
        lenders,
        ..Default::default()
    }
}

#[test]
fn a_link_scope_address_is_never_borrowed() {
    // in_dev_select_addr(): `ifa_scope != RT_SCOPE_LINK && ifa_scope <= scope`. eth4's first
    // primary is link scope, so the kernel lends its second one.
    let addrs = vec![
        scoped("lo", "127.0.0.1", 8, RT_SCOPE_HOST),
        scoped("eth4", "192.0.2.5", 24, RT_SCOPE_LINK),
        scoped("eth4", "203.0.113.10", 24, 0),
    ];
    let f = borrowing(addrs, None);
    let req = request("eth3", "203.0.113.10", "198.51.100.20", None);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::SelectNoAddressOnDev, "{}", v.explanation);
    assert!(v.explanation.contains("from eth4"), "{}", v.explanation);
    assert_eq!(
        kernel_senders(&req, &f),
        vec![(ip("203.0.113.10"), Reason::SelectNoAddressOnDev)]
    );
    let link_scope = request("eth3", "192.0.2.5", "198.51.100.20", None);
    assert_eq!(explain(&link_scope, &f).reason, Reason::Unexplained);
}

#[test]
fn the_borrow_follows_the_kernels_device_order_and_names_one_device() {
    // for_each_netdev_rcu() walks the list, not ifindex order: eth7 came back into the
    // namespace after eth5, so it is later in ifindex terms but the BPF program read it first.
    let addrs = vec![
        scoped("eth5", "203.0.113.10", 24, 0),
        scoped("eth7", "192.0.2.7", 24, 0),
    ];
    let order = Some(vec![
        lender("eth7", "192.0.2.7"),
        lender("eth5", "203.0.113.10"),
    ]);
    let f = borrowing(addrs.clone(), order);
    let req = request("eth3", "192.0.2.7", "198.51.100.20", None);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::SelectNoAddressOnDev);
    assert!(
        v.explanation.contains("from eth7") && v.explanation.contains("first that has one"),
        "{}",
        v.explanation
    );
    assert_eq!(
        kernel_senders(&req, &f),
        vec![(ip("192.0.2.7"), Reason::SelectNoAddressOnDev)]
    );
    let other = request("eth3", "203.0.113.10", "198.51.100.20", None);
    assert_eq!(explain(&other, &f).reason, Reason::Unexplained);
    // Without the kernel's order (an older trace), both remain possible and the words say so.
    let f = borrowing(addrs, None);
    assert_eq!(kernel_senders(&req, &f).len(), 2);
    assert!(explain(&req, &f)
        .explanation
        .contains("do not record that order"));
}

fn vrf_facts() -> NsFacts<'static> {
    NsFacts {
        addrs: vec![
            scoped("lo", "127.0.0.1", 8, RT_SCOPE_HOST),
            scoped("eth5", "203.0.113.10", 24, 0),
            scoped("eth3", "198.51.100.10", 24, 0),
            scoped("eth4", "192.0.2.4", 24, 0),
        ],
        links: vec![
            link("blue", None, Some(10)),
            link("eth3", Some("blue"), None),
            link("eth4", Some("blue"), None),
            link("eth5", None, None),
        ],
        ..Default::default()
    }
}

#[test]
fn local_means_local_in_the_egress_devices_vrf_table() {
    // inet_addr_type_dev_table() looks the source up in l3mdev_fib_table(eth3) = table 10,
    // where fib_add_ifaddr() put the local routes of blue's members only.
    let f = vrf_facts();
    let main = request(
        "eth3",
        "198.51.100.10",
        "198.51.100.20",
        Some(trigger("203.0.113.10", Origin::Local)),
    );
    let v = explain(&main, &f);
    assert_eq!(v.reason, Reason::SelectNonlocalSource, "{}", v.explanation);
    assert!(v.explanation.contains("VRF blue"), "{}", v.explanation);
    let copied = request(
        "eth3",
        "203.0.113.10",
        "198.51.100.20",
        Some(trigger("203.0.113.10", Origin::Local)),
    );
    assert_eq!(explain(&copied, &f).reason, Reason::Unexplained);
    // A member's address is local in the VRF's table: copied under arp_announce=0.
    let member = request(
        "eth3",
        "192.0.2.4",
        "198.51.100.20",
        Some(trigger("192.0.2.4", Origin::Local)),
    );
    let v = explain(&member, &f);
    assert_eq!(v.reason, Reason::Announce0LocalSource, "{}", v.explanation);
    assert!(v.foreign_sender);
    assert!(
        v.explanation.contains("local in VRF blue (table 10"),
        "{}",
        v.explanation
    );
}

#[test]
fn a_vrf_member_borrows_from_its_vrf_device_first_then_only_within_the_vrf() {
    let mut f = vrf_facts();
    f.addrs.retain(|a| a.ifname != "eth3");
    // eth5 comes first in the kernel's list but is in the main domain.
    f.lenders = Some(vec![
        lender("eth5", "203.0.113.10"),
        lender("eth4", "192.0.2.4"),
    ]);
    let req = request("eth3", "192.0.2.4", "198.51.100.20", None);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::SelectNoAddressOnDev, "{}", v.explanation);
    assert!(v.explanation.contains("VRF blue"), "{}", v.explanation);
    let main = request("eth3", "203.0.113.10", "198.51.100.20", None);
    assert_eq!(explain(&main, &f).reason, Reason::Unexplained);
    // The VRF device's own address wins over every member's.
    f.addrs.push(scoped("blue", "192.0.2.1", 32, 0));
    f.lenders = Some(vec![
        lender("eth5", "203.0.113.10"),
        lender("blue", "192.0.2.1"),
        lender("eth4", "192.0.2.4"),
    ]);
    let req = request("eth3", "192.0.2.1", "198.51.100.20", None);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::SelectNoAddressOnDev, "{}", v.explanation);
    assert!(v.explanation.contains("VRF device"), "{}", v.explanation);
}

#[test]
fn a_peer_address_matches_on_its_peer() {
    // inet_select_addr() takes the first primary for which inet_ifa_match(dst, ifa) holds,
    // and inet_ifa_match() tests ifa_address (the peer 198.51.100.1/32), not ifa_local.
    let f = NsFacts {
        announce_all: 2,
        addrs: vec![
            IfAddr {
                peer: Some(ip("198.51.100.1")),
                ..scoped("eth3", "198.51.100.10", 32, 0)
            },
            scoped("eth3", "198.51.100.20", 24, 0),
        ],
        ..Default::default()
    };
    let req = request("eth3", "198.51.100.10", "198.51.100.1", None);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::SelectAnnounce2, "{}", v.explanation);
    assert!(!v.foreign_sender, "the peer address is the device's own");
    assert!(
        v.explanation.contains("198.51.100.1/32"),
        "{}",
        v.explanation
    );
    let naive = request("eth3", "198.51.100.20", "198.51.100.1", None);
    assert_eq!(explain(&naive, &f).reason, Reason::Unexplained);
}

#[test]
fn route_localnet_lets_a_host_scope_address_be_chosen() {
    // inet_select_addr(): min(ifa_scope, localnet_scope) > scope skips; route_localnet makes
    // localnet_scope RT_SCOPE_LINK, so 127.0.0.5 (host scope) passes.
    let mut f = NsFacts {
        announce_all: 2,
        addrs: vec![
            scoped("lo", "127.0.0.1", 8, RT_SCOPE_HOST),
            scoped("eth3", "127.0.0.5", 8, RT_SCOPE_HOST),
            scoped("eth5", "203.0.113.10", 24, 0),
        ],
        ..Default::default()
    };
    let req = request("eth3", "127.0.0.5", "198.51.100.20", None);
    assert_eq!(explain(&req, &f).reason, Reason::Unexplained);
    f.localnet_dev.insert("eth3".to_string(), true);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::SelectAnnounce2, "{}", v.explanation);
    assert!(
        v.explanation.contains("route_localnet"),
        "{}",
        v.explanation
    );
    f.localnet_dev.clear();
    f.localnet_all = true;
    assert_eq!(explain(&req, &f).reason, Reason::SelectAnnounce2);
    // Borrowing never takes host scope, route_localnet or not.
    let borrowed = request("eth3", "203.0.113.10", "198.51.100.20", None);
    assert_eq!(explain(&borrowed, &f).reason, Reason::Unexplained);
}

#[test]
fn a_gratuitous_announcement_is_the_kernels_and_no_arp_announce_applies() {
    let mut f = super::tests::seed_facts();
    f.announce_all = 2;
    let mut req = request("eth3", "198.51.100.10", "198.51.100.10", None);
    req.task = Some(Task {
        pid: 812,
        comm: "ip".into(),
    });
    f.arp_notify = Some(true);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::KernelAnnounce, "{}", v.explanation);
    assert!(!v.foreign_sender && v.remedy.is_none());
    for words in [
        "arp_notify is set",
        "NETDEV_UP",
        "ip[812]",
        "no arp_announce",
    ] {
        assert!(v.explanation.contains(words), "{words}: {}", v.explanation);
    }
    f.arp_notify = Some(false);
    req.task = Some(Task {
        pid: 0,
        comm: "kworker/0:1".into(),
    });
    let v = explain(&req, &f);
    assert!(
        v.explanation.contains("NETDEV_NOTIFY_PEERS did")
            && v.explanation.contains("kernel thread"),
        "{}",
        v.explanation
    );
    // Only one rule may claim it: never a solicit path.
    assert_eq!(
        RULES
            .iter()
            .filter(|r| (r.matches)(&ctx::Ctx::new(RULES, &req, &f)))
            .count(),
        2, // kernel_announce and the catch-all
    );
}

#[test]
fn a_packet_socket_frame_names_its_process_and_keeps_its_red() {
    let f = super::tests::seed_facts();
    let mut t = trigger("192.0.2.77", Origin::PacketSocket);
    t.proto = "arp".into();
    t.comm = Some("arping".into());
    t.pid = Some(4711);
    let req = request("eth3", "192.0.2.77", "198.51.100.20", Some(t));
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::Userspace, "{}", v.explanation);
    assert!(
        v.foreign_sender,
        "a foreign sender stays red whoever wrote it"
    );
    assert!(v.consequence.is_some() && v.remedy.is_none());
    for words in [
        "arping[4711]",
        "packet socket",
        "no arp_announce setting applies",
    ] {
        assert!(v.explanation.contains(words), "{words}: {}", v.explanation);
    }
    // A packet socket's own announcement is the process's too, not the kernel's.
    let mut t = trigger("198.51.100.10", Origin::PacketSocket);
    t.comm = Some("arping".into());
    let gratuitous = request("eth3", "198.51.100.10", "198.51.100.10", Some(t));
    assert_eq!(explain(&gratuitous, &f).reason, Reason::Userspace);
}
