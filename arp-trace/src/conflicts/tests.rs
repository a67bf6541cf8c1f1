use std::borrow::Cow;
use std::net::Ipv4Addr;

use arp_trace_model::{ArpEvent, ConflictKind, Direction, IfAddr, Mac, NsFacts, Time};

use super::*;
use crate::kernel::ring::tests::request_event;

const SRV_ETH3: Mac = Mac([2, 0, 0, 0, 0, 0x13]);
const SRV_ETH5: Mac = Mac([2, 0, 0, 0, 0, 0x15]);
const OTHER: Mac = Mac([2, 0, 0, 0, 0, 0x99]);

fn addr(ifname: &str, a: &str, len: u8) -> IfAddr<'static> {
    IfAddr {
        ifname: Cow::Owned(ifname.into()),
        addr: a.parse().unwrap(),
        prefix_len: len,
        scope: Some(0),
        secondary: Some(false),
        peer: None,
    }
}

/// The dual-homed peer: eth3 on net-3, eth5 on net-5.
fn peer() -> NsFacts<'static> {
    NsFacts {
        addrs: vec![
            addr("eth3", "198.51.100.30", 24),
            addr("eth5", "203.0.113.30", 24),
        ],
        ..Default::default()
    }
}

/// A frame received on `ifname` (ifindex from its name's digit) at second `at`.
fn rx(ifname: &str, sender: &str, mac: Mac, target: &str, at: i128) -> ArpEvent<'static> {
    let mut e = request_event(ifname, sender, target);
    e.direction = Direction::In;
    e.sender_mac = mac;
    e.ifindex = ifname.bytes().last().unwrap() as u32;
    e.time = Time(at * 1_000_000_000);
    e
}

fn kinds(c: &[arp_trace_model::Conflict<'_>]) -> Vec<ConflictKind> {
    c.iter().map(|c| c.kind).collect()
}

#[test]
fn the_seeds_peer_sees_a_foreign_sender_and_one_address_on_two_links() {
    let mut d = Detector::default();
    let f = peer();
    // srv answers on net-5 from eth5: nothing wrong there.
    let c = d.received(
        &rx("eth5", "203.0.113.10", SRV_ETH5, "203.0.113.30", 1),
        Some(&f),
    );
    assert!(c.is_empty(), "{c:?}");
    // srv asks on net-3 with its net-5 address, from eth3's MAC.
    let c = d.received(
        &rx("eth3", "203.0.113.10", SRV_ETH3, "198.51.100.30", 2),
        Some(&f),
    );
    assert_eq!(
        kinds(&c),
        [
            ConflictKind::ForeignSenderReceived,
            ConflictKind::IpOnTwoLinks
        ]
    );
    assert_eq!(
        c[0].other_ifname.as_deref(),
        Some("eth5"),
        "its subnet's interface"
    );
    assert_eq!(
        (c[1].other_mac, c[1].other_ifname.as_deref()),
        (Some(SRV_ETH5), Some("eth5"))
    );
    assert_eq!(
        (c[1].mac, c[1].ip),
        (SRV_ETH3, "203.0.113.10".parse().unwrap())
    );
    // A naive model would call it ip_moved: the MAC changed, but on another link.
    assert!(!kinds(&c).contains(&ConflictKind::IpMoved));
}

#[test]
fn a_new_mac_on_the_same_link_is_a_move_within_the_window_only() {
    let mut d = Detector::default();
    let f = peer();
    let vip = "198.51.100.100";
    assert!(d
        .received(&rx("eth3", vip, SRV_ETH3, vip, 0), Some(&f))
        .is_empty());
    let c = d.received(&rx("eth3", vip, OTHER, vip, 5), Some(&f));
    assert_eq!(kinds(&c), [ConflictKind::IpMoved]);
    assert!(c[0].gratuitous && c[0].other_mac == Some(SRV_ETH3));
    // Back after the window: churn, not a conflict.
    let later = WINDOW.0 / 1_000_000_000 + 10;
    assert!(d
        .received(&rx("eth3", vip, SRV_ETH3, vip, later), Some(&f))
        .is_empty());
}

#[test]
fn our_own_address_from_another_mac_is_a_duplicate_and_so_is_a_probe_for_it() {
    let mut d = Detector::default();
    let f = peer();
    let mut sent = rx("eth3", "198.51.100.30", SRV_ETH3, "198.51.100.1", 0);
    sent.direction = Direction::Out;
    d.learn(&sent);
    // Our own frame coming back (a veth pair inside the namespace): not a duplicate.
    assert!(d
        .received(
            &rx("eth3", "198.51.100.30", SRV_ETH3, "198.51.100.1", 1),
            Some(&f)
        )
        .is_empty());
    let c = d.received(
        &rx("eth3", "198.51.100.30", OTHER, "198.51.100.1", 2),
        Some(&f),
    );
    assert_eq!(kinds(&c), [ConflictKind::DuplicateAddress]);
    assert_eq!(c[0].other_ifname.as_deref(), Some("eth3"));
    assert!(!c[0].probe);
    // RFC 5227 probe: sender 0.0.0.0, target our address on the other interface.
    let c = d.received(&rx("eth5", "0.0.0.0", OTHER, "203.0.113.30", 3), Some(&f));
    assert_eq!(kinds(&c), [ConflictKind::DuplicateAddress]);
    assert!(c[0].probe && c[0].ip == Ipv4Addr::new(203, 0, 113, 30));
}

#[test]
fn a_conflict_that_goes_on_is_reported_again_only_after_the_repeat_interval() {
    let mut d = Detector::default();
    let f = peer();
    let frame = |at| rx("eth3", "203.0.113.10", SRV_ETH3, "198.51.100.30", at);
    assert_eq!(d.received(&frame(0), Some(&f)).len(), 1);
    assert!(d.received(&frame(1), Some(&f)).is_empty());
    assert!(d.received(&frame(2), Some(&f)).is_empty());
    let repeat = REPEAT.0 / 1_000_000_000;
    let c = d.received(&frame(repeat), Some(&f));
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].frames, c[0].first_time, c[0].last_time),
        (4, Time(0), frame(repeat).time)
    );
}

#[test]
fn the_cause_is_this_hosts_own_request_with_its_verdict() {
    let mut d = Detector::default();
    let f = peer();
    let mut req = request_event("eth3", "203.0.113.10", "198.51.100.30");
    req.sender_mac = SRV_ETH3;
    req.netns = 11;
    req.time = Time(1_000_000_000);
    req.verdict = Some(arp_trace_model::Verdict {
        foreign_sender: true,
        reason: arp_trace_model::Reason::Announce0LocalSource,
        explanation: "eth3 announces 203.0.113.10".into(),
        consequence: None,
        remedy: None,
    });
    d.learn(&req);
    d.cause(&req);
    let c = d.received(
        &rx("eth3", "203.0.113.10", SRV_ETH3, "198.51.100.30", 1),
        Some(&f),
    );
    let cause = c[0].cause.as_ref().expect("joined to srv's request");
    assert_eq!((cause.netns, cause.foreign_sender), (11, Some(true)));
    assert_eq!(
        cause.explanation.as_deref(),
        Some("eth3 announces 203.0.113.10")
    );
}

#[test]
fn a_full_table_of_recent_sightings_drops_and_counts() {
    let mut d = Detector::default();
    for i in 0..MAX_SIGHTINGS as u32 + 5 {
        let ip = Ipv4Addr::from(0xc633_6400u32 + 1 + i % 250 + (i / 250) * 256);
        let mut e = rx("eth3", "198.51.100.1", OTHER, "198.51.100.30", 1);
        e.sender_ip = ip;
        d.received(&e, None);
    }
    assert_eq!(d.dropped, 5);
}

/// A table change from one valid MAC to another.
fn change(
    c: &arp_trace_model::Conflict<'_>,
    old: Option<Mac>,
) -> arp_trace_model::NeighChange<'static> {
    use arp_trace_model::{ChangeCause, NeighChange, NudState};
    NeighChange {
        time: c.time,
        netns: c.netns,
        netns_name: None,
        ifindex: c.ifindex,
        ifname: "eth3".into(),
        ip: c.ip,
        old_mac: old,
        new_mac: Some(c.mac),
        old_state: NudState::Reachable,
        new_state: NudState::Stale,
        cause: ChangeCause::ReceivedArp,
        frame: None,
        nlmsg_pid: None,
        task: None,
    }
}

#[test]
fn a_held_move_is_settled_by_its_table_change_or_by_time() {
    let mut d = Detector::default();
    let f = peer();
    let vip = "198.51.100.100";
    d.received(&rx("eth3", vip, SRV_ETH3, vip, 0), Some(&f));
    let mut c = d.received(&rx("eth3", vip, OTHER, vip, 5), Some(&f));
    assert_eq!(c[0].overwritten, None, "unknown until the table says");
    let moved = c.remove(0);
    d.hold(moved.clone());
    assert!(d.holds());
    // A change on another device, or to another MAC, settles nothing.
    let mut elsewhere = change(&moved, Some(SRV_ETH3));
    elsewhere.ifindex += 1;
    assert!(d.settle(&elsewhere).is_none());
    let mut other_mac = change(&moved, Some(SRV_ETH3));
    other_mac.new_mac = Some(SRV_ETH3);
    assert!(d.settle(&other_mac).is_none());
    let settled = d.settle(&change(&moved, Some(SRV_ETH3))).expect("settled");
    assert_eq!(settled.overwritten, Some(true));
    assert!(!d.holds());
    // An entry that was not valid before got its first MAC: nothing was overwritten.
    d.hold(moved.clone());
    assert_eq!(
        d.settle(&change(&moved, None)).unwrap().overwritten,
        Some(false)
    );
    // No change in time: not overwritten.
    d.hold(moved.clone());
    assert!(d.due(false).is_empty(), "still within HOLD");
    let due = d.due(true);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].overwritten, Some(false));
}
