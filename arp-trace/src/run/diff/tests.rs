use super::*;
use arp_trace_model::{ConflictKind, Family, Header};
use std::net::Ipv4Addr;

fn side(snapshot: Value, groups: &[(&str, &str, [u8; 4], u64)]) -> Side {
    let mut s = Side {
        file: "t".into(),
        header: Header {
            snapshot: serde_json::from_value(snapshot).unwrap(),
            ..Header::empty(2)
        },
        groups: BTreeMap::new(),
        foreign: BTreeMap::new(),
        folded: 0,
        warnings: vec![],
        recorded: vec![],
        recorded_omitted: 0,
        conflicts: BTreeMap::new(),
    };
    for (ns, i, ip, n) in groups {
        let k = GroupKey {
            netns: ns.to_string(),
            ifname: i.to_string(),
            family: Family::Ipv4,
            sender_ip: Ipv4Addr::from(*ip).into(),
            reason: None,
        };
        let f = foreign_by_snapshot(s.header.snapshot.as_ref(), &k);
        s.foreign.insert(k.clone(), f);
        s.groups.insert(k, *n);
    }
    s
}

fn snap(announce: i64) -> Value {
    json!({"namespaces": {"srv": {"netns": 1, "all": {"arp_announce": 0},
        "interfaces": {"eth3": {"arp_announce": announce, "ipv4": ["198.51.100.10/24"]},
                       "eth5": {"arp_announce": 0, "ipv4": ["203.0.113.10/24"]}}}}})
}

#[test]
fn verdict_names_foreign_drop_and_the_sysctl() {
    let b = side(
        snap(0),
        &[
            ("srv", "eth3", [203, 0, 113, 10], 40),
            ("srv", "eth3", [198, 51, 100, 10], 5),
        ],
    );
    let a = side(snap(2), &[("srv", "eth3", [198, 51, 100, 10], 45)]);
    let c = compare(&b, &a);
    assert!(c.differ);
    assert_eq!(
        c.verdict,
        "foreign-sender requests on srv/eth3: 40 -> 0 after arp_announce 0 -> 2"
    );
    assert_eq!(c.rows[0].change, "vanished");
    assert_eq!(c.rows[0].foreign, Some(true));
    assert_eq!(c.rows[1].foreign, Some(false));
    assert_eq!(c.changes.len(), 1);
    assert_eq!(
        c.changes[0].path,
        "namespaces.srv.interfaces.eth3.arp_announce"
    );
}

#[test]
fn a_change_recorded_during_a_trace_explains_the_verdict() {
    let b = side(snap(0), &[("srv", "eth3", [203, 0, 113, 10], 4)]);
    let mut a = side(snap(0), &[("srv", "eth3", [198, 51, 100, 10], 4)]);
    let mut c = FactsChange::new(1, ChangeKind::ArpAnnounce);
    c.netns_name = Some("srv".into());
    c.conf = Some("eth3".into());
    (c.before, c.after) = (Some(0), Some(2));
    a.recorded.push(c);
    assert_eq!(
        compare(&b, &a).verdict,
        "foreign-sender requests on srv/eth3: 4 -> 0 after arp_announce 0 -> 2"
    );
    // A namespace only a `watched` record knows is compared like a header's.
    let mut w = FactsChange::new(7, ChangeKind::Watched);
    w.arp_announce = Some([("all".to_string(), 1), ("eth3".to_string(), 0)].into());
    w.addrs = Some(vec![arp_trace_model::if_addr(
        "eth3",
        "198.51.100.10".parse().unwrap(),
        24,
    )]);
    let v = serde_json::to_value(snapshot_of_watched(&w)).unwrap();
    assert_eq!(v["all"]["arp_announce"], 1);
    assert_eq!(v["interfaces"]["eth3"]["ipv4"][0], "198.51.100.10/24");
    let k = GroupKey {
        netns: "x".into(),
        ifname: "eth3".into(),
        family: Family::Ipv4,
        sender_ip: Ipv4Addr::new(203, 0, 113, 10).into(),
        reason: None,
    };
    let snap: Snapshot = serde_json::from_value(json!({"namespaces": {"x": v}})).unwrap();
    assert_eq!(foreign_by_snapshot(Some(&snap), &k), Some(true));
}

#[test]
fn same_groups_do_not_differ() {
    let b = side(snap(0), &[("srv", "eth3", [198, 51, 100, 10], 3)]);
    let a = side(snap(0), &[("srv", "eth3", [198, 51, 100, 10], 3)]);
    let c = compare(&b, &a);
    assert!(!c.differ);
    assert!(c.changes.is_empty());
    assert_eq!(c.verdict, "no difference in ARP requests per group");
    let a = side(snap(0), &[("srv", "eth3", [198, 51, 100, 10], 4)]);
    let c = compare(&b, &a);
    assert!(c.differ);
    assert!(
        c.verdict.starts_with("requests differ in 1 groups"),
        "{}",
        c.verdict
    );
}

#[test]
fn a_namespace_that_went_is_one_change() {
    let mut after = snap(0);
    after["namespaces"]["gone"] = json!(null);
    after["namespaces"].as_object_mut().unwrap().remove("gone");
    after["namespaces"]["new"] = json!({"netns": 9, "all": {"arp_announce": 1}});
    let c = snapshot_changes(&snap(0), &after);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].path, "namespaces.new");
    assert_eq!(short(&c[0].before), "none");
    assert_eq!(short(&c[0].after), "present");
}

#[test]
fn hostile_names_are_escaped_in_the_text() {
    let mut b = side(snap(0), &[("n\x07s", "e\x1b[2J", [203, 0, 113, 10], 1)]);
    b.header.hostname = "h\x1b]2;x\x07".into();
    b.warnings.push("w\x1b[2J".into());
    let a = side(snap(0), &[]);
    let c = compare(&b, &a);
    let mut out = Vec::new();
    write_text(&mut out, &b, &a, &c).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        !text.chars().any(|c| c != '\n' && c.is_control()),
        "{text:?}"
    );
    assert!(text.contains("(h\\x1b]2;x\\a, "), "{text}");
    assert!(
        text.contains(" n\\as/e\\x1b[2J tell 203.0.113.10"),
        "{text}"
    );
}

/// Comparing the typed snapshots finds what the generic comparison of their JSON finds.
#[test]
fn snapshots_compare_as_their_json_does() {
    let mut after = snap(2);
    after["namespaces"]["srv"]["netns"] = json!(5);
    after["namespaces"]["new"] = json!({"netns": 9, "interfaces": {"eth0": {"ipv4": []}}});
    for (b, a) in [
        (snap(0), after.clone()),
        (after, snap(0)),
        (snap(1), snap(1)),
    ] {
        let typed = |v: &Value| serde_json::from_value::<Snapshot>(v.clone()).unwrap();
        assert_eq!(
            snapshot_diff(Some(&typed(&b)), Some(&typed(&a))),
            snapshot_changes(&b, &a)
        );
    }
    assert_eq!(snapshot_diff(None, None), vec![]);
}

/// ARP and neighbour discovery never share a group, and an IPv6 group reads as one.
#[test]
fn groups_are_keyed_by_family() {
    let v6 = |n: u64| {
        let mut s = side(snap(0), &[("srv", "eth3", [198, 51, 100, 10], 5)]);
        let k = GroupKey {
            netns: "srv".into(),
            ifname: "eth3".into(),
            family: Family::Ipv6,
            sender_ip: "fe80::3".parse().unwrap(),
            reason: Some("ndisc_link_local".into()),
        };
        // Not judged from the snapshot, whose subnets are IPv4's.
        assert_eq!(foreign_by_snapshot(s.header.snapshot.as_ref(), &k), None);
        s.foreign.insert(k.clone(), Some(false));
        if n > 0 {
            s.groups.insert(k, n);
        }
        s
    };
    let (b, a) = (v6(0), v6(3));
    let c = compare(&b, &a);
    assert!(c.differ);
    let v6: Vec<_> = c
        .rows
        .iter()
        .filter(|r| r.key.family == Family::Ipv6)
        .collect();
    assert_eq!(v6.len(), 1, "one IPv6 group");
    assert_eq!(v6[0].change, "appeared");
    assert!(c
        .rows
        .iter()
        .all(|r| r.key.family == Family::Ipv6 || r.change != "appeared"));
    let mut out = Vec::new();
    write_text(&mut out, &b, &a, &c).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("srv/eth3 ND from fe80::3 reason ndisc_link_local: 0 -> 3"),
        "{text}"
    );
    let j = serde_json::to_value(&v6[0].key).unwrap();
    assert_eq!(j["family"], "ipv6");
}

#[test]
fn conflicts_count_per_place_address_and_kind_and_their_end_is_a_verdict() {
    let key = |kind| ConflictKey {
        netns: "peer".into(),
        ifname: "eth3".into(),
        ip: Ipv4Addr::new(203, 0, 113, 10),
        kind,
    };
    let mut b = side(json!({"namespaces": {}}), &[]);
    let mut a = side(json!({"namespaces": {}}), &[]);
    b.conflicts.insert(key(ConflictKind::IpOnTwoLinks), 3);
    b.conflicts
        .insert(key(ConflictKind::ForeignSenderReceived), 2);
    a.conflicts
        .insert(key(ConflictKind::ForeignSenderReceived), 2);
    let c = compare(&b, &a);
    assert!(c.differ);
    assert_eq!(c.conflicts[0].change, "vanished", "changed rows first");
    assert_eq!(c.conflicts[0].key.kind, ConflictKind::IpOnTwoLinks);
    assert_eq!(c.conflicts[1].change, "same");
    assert!(
        c.verdict.ends_with("; conflicts seen: 5 -> 2"),
        "{}",
        c.verdict
    );
    assert!(
        c.verdict.starts_with("no difference in ARP requests"),
        "{}",
        c.verdict
    );
    // The same on both sides is no difference at all.
    let c = compare(&a, &a);
    assert!(
        !c.differ && !c.verdict.contains("conflicts"),
        "{}",
        c.verdict
    );
}
