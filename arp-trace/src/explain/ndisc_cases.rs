//! The ND rule table against cases whose expected source is written from net/ipv6/ndisc.c
//! and addrconf.c, not from arp-trace's output: in each, a naive "the packet's source if it
//! is local" model (ARP's arp_announce=0 rule) gives a different answer.

use std::net::Ipv6Addr;

use arp_trace_model::{
    Flags6, Hex, If6Addr, NdiscEvent, NdiscOp, NeighFailed, Origin, Reason, Scope6, Time, Trigger,
};

use super::*;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn addr(a: &str, scope: Scope6, flags: u32) -> If6Addr {
    If6Addr {
        addr: ip(a),
        prefix_len: 64,
        scope,
        flags: Flags6(flags),
    }
}

const PERMANENT: u32 = 0x80;

fn trig(src: &str) -> Trigger<'static> {
    Trigger {
        src: ip(src).into(),
        dst: ip("2001:db8:3::44").into(),
        proto: "icmpv6".into(),
        sport: None,
        dport: None,
        icmp_type: Some(128),
        len: 104,
        mark: 0,
        origin: Origin::Local,
        pid: Some(42),
        comm: Some("ping".into()),
        in_ifindex: None,
        in_ifname: None,
        drop_reason: None,
    }
}

fn ns(sender: &str, trigger: Option<Trigger<'static>>, addrs: Vec<If6Addr>) -> NdiscEvent<'static> {
    NdiscEvent {
        op: NdiscOp::Solicit,
        direction: arp_trace_model::Direction::Out,
        time: Time(0),
        netns: 1,
        netns_name: None,
        ifindex: 3,
        ifname: "eth3".into(),
        sender_ip: ip(sender),
        sender_mac: None,
        target_ip: ip("2001:db8:3::44"),
        dst_ip: ip("ff02::1:ff00:44"),
        unicast: false,
        eth_dst: None,
        advert: None,
        nonce: false,
        frame: Hex::encode(&[]),
        trigger,
        neigh_state: None,
        attempt: None,
        queued: None,
        verdict: None,
        dev_addrs: Some(addrs),
        dev_addrs_cut: false,
        user_socket: false,
    }
}

/// eth3's list as the kernel keeps it: global first, link-local last.
fn eth3() -> Vec<If6Addr> {
    vec![
        addr("2001:db8:3::1", Scope6::Global, PERMANENT),
        addr("fe80::3", Scope6::Link, PERMANENT),
    ]
}

#[test]
fn another_interfaces_address_is_not_kept_the_link_local_is_used() {
    // ARP at arp_announce=0 would send 2001:db8:5::1 (local on eth5); ndisc_solicit() checks
    // the outgoing device only, so ndisc_send_ns() falls back to fe80::3.
    let ev = ns("fe80::3", Some(trig("2001:db8:5::1")), eth3());
    let v = explain_ndisc(&ev);
    assert_eq!(v.reason, Reason::NdiscLinkLocal);
    assert!(
        v.explanation.contains("not an address of eth3"),
        "{}",
        v.explanation
    );
    assert!(!v.foreign_sender && v.remedy.is_none());
    // The packet's own source as the sender would be unexplained: no path writes it.
    let wrong = ns("2001:db8:5::1", Some(trig("2001:db8:5::1")), eth3());
    assert_eq!(explain_ndisc(&wrong).reason, Reason::Unexplained);
}

#[test]
fn the_egress_devices_own_usable_address_is_kept() {
    let ev = ns("2001:db8:3::1", Some(trig("2001:db8:3::1")), eth3());
    let v = explain_ndisc(&ev);
    assert_eq!(v.reason, Reason::NdiscPacketSource);
    // Word for word: the sentence is built by pushes, not format!.
    assert_eq!(
        v.explanation,
        "2001:db8:3::1 is the source of the packet queued for 2001:db8:3::44 (icmpv6 \
         2001:db8:3::1 > 2001:db8:3::44 type 128 ping[42]) and an address of eth3 that is \
         neither tentative nor optimistic, so ndisc_solicit() kept it as the solicitation's \
         source."
    );
}

#[test]
fn tentative_and_optimistic_sources_are_banned_even_on_the_device() {
    for (flags, words) in [(0x40, "still tentative"), (0x40 | 0x04, "optimistic")] {
        let mut addrs = eth3();
        addrs.insert(0, addr("2001:db8:3::9", Scope6::Global, flags));
        let ev = ns("fe80::3", Some(trig("2001:db8:3::9")), addrs.clone());
        let v = explain_ndisc(&ev);
        assert_eq!(v.reason, Reason::NdiscLinkLocal, "{flags:#x}");
        assert!(v.explanation.contains(words), "{}", v.explanation);
        let kept = ns("2001:db8:3::9", Some(trig("2001:db8:3::9")), addrs);
        assert_eq!(explain_ndisc(&kept).reason, Reason::Unexplained);
    }
}

#[test]
fn the_oldest_usable_link_local_is_chosen_and_tentative_ones_are_skipped() {
    // Newest first within a scope: fe80::b (newest, tentative), fe80::a, then fe80::3 (oldest).
    let addrs = vec![
        addr("2001:db8:3::1", Scope6::Global, PERMANENT),
        addr("fe80::b", Scope6::Link, 0x40),
        addr("fe80::a", Scope6::Link, PERMANENT),
        addr("fe80::3", Scope6::Link, 0x40),
    ];
    assert_eq!(get_lladdr(&addrs).unwrap().addr, ip("fe80::a"));
    let ev = ns("fe80::a", None, addrs.clone());
    assert_eq!(explain_ndisc(&ev).reason, Reason::NdiscNoTrigger);
    let wrong = ns("fe80::b", None, addrs);
    assert_eq!(explain_ndisc(&wrong).reason, Reason::Unexplained);
}

#[test]
fn a_forwarded_packets_source_is_never_kept() {
    let mut t = trig("2001:db8:5::99");
    t.origin = Origin::Forwarded;
    t.in_ifname = Some("eth5".into());
    let v = explain_ndisc(&ns("fe80::3", Some(t), eth3()));
    assert_eq!(v.reason, Reason::NdiscLinkLocal);
    assert!(v.explanation.contains("forwarded"), "{}", v.explanation);
}

#[test]
fn dad_is_from_the_unspecified_address() {
    let mut ev = ns("::", None, eth3());
    ev.target_ip = ip("2001:db8:3::9");
    assert_eq!(explain_ndisc(&ev).reason, Reason::NdiscDad);
}

#[test]
fn unreadable_or_cut_address_lists_are_not_guessed() {
    let mut ev = ns("fe80::3", None, eth3());
    ev.dev_addrs_cut = true;
    assert_eq!(explain_ndisc(&ev).reason, Reason::Unexplained);
    ev.dev_addrs = None;
    assert_eq!(explain_ndisc(&ev).reason, Reason::Unexplained);
}

#[test]
fn a_silent_failure_without_link_local_gets_the_addr_gen_mode_remedy() {
    let mut f = NeighFailed {
        time: Time(0),
        netns: 1,
        netns_name: None,
        ifindex: 3,
        ifname: "eth3".into(),
        target_ip: ip("2001:db8:3::44").into(),
        attempts: 3,
        dropped: vec![trig("2001:db8:5::1")],
        dropped_omitted: 0,
        cause: None,
        nlmsg_pid: None,
        task: None,
        reason: Some(Reason::NdiscNoLinkLocal),
        explanation: None,
        remedy: None,
        link_locals: Some(0),
    };
    explain_silent_failure(&mut f);
    let r = f.remedy.as_ref().unwrap();
    assert_eq!(r.command, "sysctl -w net.ipv6.conf.eth3.addr_gen_mode=0");
    assert!(
        shell::vet(r, 1).is_none(),
        "arp-trace's own remedy passes its vetting"
    );
    assert!(f.explanation.unwrap().contains("has no link-local address"));
}

#[test]
fn the_table_has_every_ipv6_reason_once_and_ends_in_unexplained() {
    for r in Reason::ALL {
        let n = NDISC_RULES.iter().filter(|rule| rule.reason == r).count();
        // ndisc_no_link_local explains failures, where no frame exists to match.
        let want =
            (r.applies_to(arp_trace_model::Family::Ipv6) && r != Reason::NdiscNoLinkLocal) as usize;
        assert_eq!(n, want, "{r}");
    }
    assert_eq!(NDISC_RULES.last().unwrap().reason, Reason::Unexplained);
    for rule in &NDISC_RULES[..NDISC_RULES.len() - 1] {
        assert!(rule.kernel_fn.contains("()"), "{}", rule.kernel_fn);
    }
}
