//! The JSON Schema (`schema/arp-trace.schema.json`) against the model: every record type has
//! its `$defs` entry and no entry names a type the model lacks, the version agrees, and every
//! field the model writes, however deep, is a property the schema describes (with the ones it
//! requires present). A record type or field added later fails here until the schema has it.
//! Values are checked by a real validator in the end-to-end tests (`tests/tests/schema.rs`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::Value;

use crate::*;

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

/// The node a `$ref` (only `#/$defs/NAME` ones are used) points at, or the node itself.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r
                .strip_prefix("#/$defs/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            resolve(root, &root["$defs"][name])
        }
        None => node,
    }
}

/// The branches a value may take at `node`: itself, or each of its `anyOf`.
fn branches<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let node = resolve(root, node);
    if node.get("properties").is_some() {
        // A record's own `anyOf` lists which fields it requires, not alternative shapes.
        return vec![node];
    }
    match node.get("anyOf").and_then(Value::as_array) {
        Some(bs) => bs.iter().map(|b| resolve(root, b)).collect(),
        None => vec![node],
    }
}

/// Every object in `v` has only keys the schema describes at that place, and every key it
/// requires; `at` names the place in failures.
fn check_keys(root: &Value, node: &Value, v: &Value, at: &str) {
    match v {
        Value::Object(map) => {
            let objects: Vec<&Value> = branches(root, node)
                .into_iter()
                .filter(|b| b["type"] == "object")
                .collect();
            assert!(!objects.is_empty(), "{at}: the schema has no object here");
            let b = objects[0];
            if let Some(props) = b.get("properties").and_then(Value::as_object) {
                for (k, x) in map {
                    let p = props.get(k).unwrap_or_else(|| {
                        panic!("{at}.{k}: written by the model but not in the schema")
                    });
                    assert!(
                        p.get("description").is_some(),
                        "{at}.{k}: no description in the schema"
                    );
                    check_keys(root, p, x, &format!("{at}.{k}"));
                }
            } else if let Some(values) = b.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, x) in map {
                    check_keys(root, values, x, &format!("{at}[{k:?}]"));
                }
            }
            for r in b["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                assert!(map.contains_key(r), "{at}: the schema requires {r}: {v}");
            }
        }
        Value::Array(items) => {
            let b = branches(root, node)
                .into_iter()
                .find(|b| b["type"] == "array")
                .unwrap_or_else(|| panic!("{at}: the schema has no array here"));
            for (i, x) in items.iter().enumerate() {
                check_keys(root, &b["items"], x, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

fn trigger() -> Trigger<'static> {
    Trigger {
        src: Ipv4Addr::new(203, 0, 113, 10).into(),
        dst: Ipv4Addr::new(198, 51, 100, 20).into(),
        proto: "udp".into(),
        sport: Some(41000),
        dport: Some(9),
        icmp_type: None,
        len: 29,
        mark: 0,
        origin: Origin::Forwarded,
        pid: None,
        comm: None,
        in_ifindex: Some(4),
        in_ifname: Some("eth5".into()),
        drop_reason: Some("neigh_failed".into()),
    }
}

fn addr() -> IfAddr<'static> {
    IfAddr {
        scope: Some(0),
        secondary: Some(false),
        peer: Some(Ipv4Addr::new(198, 51, 100, 1)),
        ..if_addr("eth3", Ipv4Addr::new(198, 51, 100, 10), 24)
    }
}

fn remedy() -> Remedy<'static> {
    Remedy {
        command: "sysctl -w net.ipv4.conf.eth3.arp_announce=1".into(),
        persistent: "# ...".into(),
        tradeoff: "...".into(),
    }
}

/// One record of each type, every optional field the model may write filled in.
fn samples() -> Vec<Record<'static>> {
    let t = Time(1_795_894_262_123_456_789);
    let sysctls = Sysctls {
        arp_announce: Some(0),
        arp_filter: Some(0),
        arp_ignore: Some(0),
    };
    let ns = NsSnapshot {
        all: Some(sysctls),
        error: Some("cannot enter".into()),
        interfaces: Some(BTreeMap::from([(
            "eth3".to_string(),
            IfSnapshot {
                sysctls,
                ipv4: vec!["198.51.100.10/24".parse().unwrap()],
            },
        )])),
        netns: 7,
    };
    let header = Header {
        hooks: "transmit=tp_btf/net_dev_queue".into(),
        own_netns: Some(7),
        netns_names: BTreeMap::from([(7, "srv".to_string())]),
        snapshot: Some(Snapshot {
            namespaces: BTreeMap::from([("srv".to_string(), ns)]),
        }),
        ..Header::empty(file::FORMAT_VERSION)
    }
    .current();
    let link = Link {
        ifname: "eth3".into(),
        ifindex: Some(3),
        master: Some("blue".into()),
        vrf_table: Some(10),
    };
    let arp = ArpEvent {
        op: ArpOp::Request,
        direction: crate::Direction::Out,
        time: t,
        netns: 7,
        netns_name: Some("srv".into()),
        ifindex: 3,
        ifname: "eth3".into(),
        sender_ip: Ipv4Addr::new(203, 0, 113, 10),
        sender_mac: Mac([2, 0, 0, 0, 0, 0x10]),
        target_ip: Ipv4Addr::new(198, 51, 100, 20),
        target_mac: Mac::default(),
        unicast: false,
        eth_dst: Some(Mac::BROADCAST),
        frame: Hex::encode(&[0xff; 42]),
        trigger: Some(trigger()),
        task: Some(Task {
            pid: 1,
            comm: "ip".into(),
        }),
        neigh_state: Some("incomplete".into()),
        attempt: Some(1),
        queued: Some(1),
        egress: None,
        verdict: Some(Verdict {
            foreign_sender: true,
            reason: Reason::Announce0LocalSource,
            explanation: "why".into(),
            consequence: Some("effect".into()),
            remedy: Some(remedy()),
        }),
        facts: Some(RequestFacts {
            arp_announce: Announce {
                all: 0,
                dev: Some(0),
                effective: 0,
            },
            addrs: vec!["198.51.100.10/24".parse().unwrap()],
            ns_addrs: vec![addr()],
            route_localnet: Some(Localnet {
                all: true,
                dev: false,
            }),
            links: Some(vec![link]),
            lenders: Some(vec![Lender {
                ifname: "eth5".into(),
                addr: Ipv4Addr::new(203, 0, 113, 10),
            }]),
            lenders_cut: true,
            arp_notify: Some(true),
        }),
        facts_error: Some("cannot read".into()),
    };
    let failed = NeighFailed {
        reason: None,
        explanation: None,
        remedy: None,
        link_locals: None,
        time: t,
        netns: 7,
        netns_name: Some(Cow::Borrowed("srv")),
        ifindex: 3,
        ifname: "eth3".into(),
        target_ip: Ipv4Addr::new(198, 51, 100, 99).into(),
        attempts: 3,
        dropped: vec![trigger()],
        dropped_omitted: 0,
        cause: Some(ChangeCause::Timer),
        nlmsg_pid: None,
        task: None,
    };
    // An entry `ip neigh del` failed while it resolved.
    let deleted = NeighFailed {
        cause: Some(ChangeCause::Netlink),
        nlmsg_pid: Some(4242),
        task: Some(Task {
            pid: 4242,
            comm: "ip".into(),
        }),
        ..failed.clone()
    };
    let watched = FactsChange {
        netns_name: Some("srv".into()),
        arp_announce: Some(BTreeMap::from([("all".to_string(), 0), ("eth3".into(), 2)])),
        addrs: Some(vec![addr()]),
        ..FactsChange::new(7, ChangeKind::Watched)
    };
    let added = FactsChange::addr(7, ChangeKind::AddrAdded, &addr());
    let announce = FactsChange {
        conf: Some("eth3".into()),
        before: Some(0),
        after: Some(2),
        ..FactsChange::new(7, ChangeKind::ArpAnnounce)
    };
    let row = Row {
        family: Default::default(),
        netns: 7,
        netns_name: Some("srv".into()),
        ifname: "eth3".into(),
        sender_ip: Ipv4Addr::new(203, 0, 113, 10).into(),
        reason: Some(Reason::Announce0LocalSource),
        foreign_sender: Some(true),
        requests: 3,
        distinct_targets: 2,
        distinct_targets_capped: false,
        first_seen: t,
        last_seen: t,
        top_flows: vec![Count {
            name: "udp 203.0.113.10 > 198.51.100.20:9".into(),
            count: 3,
        }],
        other_flows: 0,
        top_processes: vec![Count {
            name: "python3[42]".into(),
            count: 3,
        }],
        other_processes: 0,
        remedy: Some(remedy()),
    };
    let summary = Summary {
        last: true,
        requests: 3,
        foreign_requests: 3,
        rows: vec![row],
        folded_requests: 0,
        conflicts: vec![ConflictRow {
            netns: 9,
            netns_name: Some("peer".into()),
            ifname: "eth3".into(),
            ip: "203.0.113.10".parse().unwrap(),
            kind: ConflictKind::IpOnTwoLinks,
            reports: 2,
            macs: vec![Mac([2, 0, 0, 0, 0, 0x13])],
            first_seen: t,
            last_seen: t,
        }],
        folded_conflicts: 1,
        counts: Some(TraceCounts {
            events: 4,
            replies: 0,
            received: 2,
            failures: 1,
            lost: 0,
            filtered: 0,
            undecodable: 0,
            missed: 1,
            discarded: 1,
            unjoined: 1,
            unmatched: 1,
            end_time: t,
        }),
    };
    let ndisc = NdiscEvent {
        op: NdiscOp::Solicit,
        direction: crate::Direction::Out,
        time: t,
        netns: 7,
        netns_name: Some(Cow::Borrowed("srv")),
        ifindex: 3,
        ifname: "eth3".into(),
        sender_ip: "fe80::3".parse().unwrap(),
        sender_mac: Some(Mac([2, 0, 0, 0, 0, 3])),
        target_ip: "2001:db8:3::44".parse().unwrap(),
        dst_ip: "ff02::1:ff00:44".parse().unwrap(),
        unicast: false,
        eth_dst: Some(Mac([0x33, 0x33, 0xff, 0, 0, 0x44])),
        advert: Some(AdvertFlags {
            router: false,
            solicited: true,
            override_: true,
        }),
        nonce: true,
        frame: Hex::encode(&[0x33, 0x33]),
        trigger: Some(Trigger {
            src: "2001:db8:5::1".parse().unwrap(),
            dst: "2001:db8:3::44".parse().unwrap(),
            proto: "icmpv6".into(),
            icmp_type: Some(128),
            ..trigger()
        }),
        neigh_state: Some("incomplete".into()),
        attempt: Some(1),
        queued: Some(1),
        verdict: Some(Verdict {
            foreign_sender: false,
            reason: Reason::NdiscLinkLocal,
            explanation: "why".into(),
            consequence: None,
            remedy: None,
        }),
        dev_addrs: Some(vec![If6Addr {
            addr: "fe80::3".parse().unwrap(),
            prefix_len: 64,
            scope: Scope6::Link,
            flags: Flags6(0x80 | 0x1000),
        }]),
        dev_addrs_cut: true,
        user_socket: true,
    };
    let silent = NeighFailed {
        target_ip: "2001:db8:3::44".parse().unwrap(),
        reason: Some(Reason::NdiscNoLinkLocal),
        explanation: Some("no link-local".into()),
        remedy: Some(Remedy {
            command: "sysctl -w net.ipv6.conf.eth3.addr_gen_mode=0".into(),
            persistent: "# x".into(),
            tradeoff: "t".into(),
        }),
        ..failed.clone()
    };
    // The seed as its dual-homed peer sees it, joined to the server's request.
    let conflict = Conflict {
        kind: ConflictKind::IpOnTwoLinks,
        time: t,
        netns: 9,
        netns_name: Some("peer".into()),
        ifindex: 2,
        ifname: "eth3".into(),
        ip: "203.0.113.10".parse().unwrap(),
        mac: Mac([2, 0, 0, 0, 0, 0x13]),
        other_mac: Some(Mac([2, 0, 0, 0, 0, 0x15])),
        other_ifname: Some("eth5".into()),
        gratuitous: false,
        probe: false,
        first_time: t,
        last_time: t,
        frames: 3,
        cause: Some(ConflictCause {
            time: t,
            netns: 7,
            netns_name: None,
            ifname: "eth3".into(),
            sender_ip: "203.0.113.10".parse().unwrap(),
            target_ip: "198.51.100.20".parse().unwrap(),
            reason: Some(Reason::Announce0LocalSource),
            foreign_sender: Some(true),
            explanation: Some("eth3 announces 203.0.113.10".into()),
        }),
        overwritten: None,
    };
    // A reply that moved an entry to a new MAC, and an `ip neigh replace`.
    let change = NeighChange {
        time: t,
        netns: 9,
        netns_name: Some("peer".into()),
        ifindex: 2,
        ifname: "br0".into(),
        ip: "198.51.100.7".parse().unwrap(),
        old_mac: Some(Mac([2, 0, 0, 0, 0, 0x07])),
        new_mac: Some(Mac([2, 0, 0, 0, 0, 0x08])),
        old_state: NudState::Reachable,
        new_state: NudState::Stale,
        cause: ChangeCause::ReceivedArp,
        frame: Some(ChangeFrame {
            time: t,
            op: ArpOp::Reply,
            sender_ip: "198.51.100.7".parse().unwrap(),
            sender_mac: Mac([2, 0, 0, 0, 0, 0x08]),
            target_ip: "198.51.100.7".parse().unwrap(),
            gratuitous: true,
        }),
        nlmsg_pid: None,
        task: None,
    };
    // What a device received: the frame and its place, nothing the host decided.
    let received = ArpEvent {
        op: ArpOp::Reply,
        direction: crate::Direction::In,
        trigger: None,
        task: None,
        neigh_state: None,
        attempt: None,
        queued: None,
        verdict: None,
        facts: None,
        facts_error: None,
        ..arp.clone()
    };
    vec![
        Record::Header(Held::Owned(header)),
        Record::Arp(Held::Owned(arp)),
        Record::Arp(Held::Owned(received)),
        Record::Ndisc(Held::Owned(ndisc)),
        Record::NeighFailed(Held::Owned(failed)),
        Record::NeighFailed(Held::Owned(silent)),
        Record::NeighFailed(Held::Owned(deleted)),
        Record::FactsChange(Held::Owned(watched)),
        Record::FactsChange(Held::Owned(added)),
        Record::FactsChange(Held::Owned(announce)),
        Record::Conflict(Held::Owned(conflict.clone())),
        Record::Conflict(Held::Owned(Conflict {
            kind: ConflictKind::DuplicateAddress,
            other_mac: None,
            other_ifname: None,
            cause: None,
            probe: true,
            ..conflict.clone()
        })),
        Record::Conflict(Held::Owned(Conflict {
            kind: ConflictKind::IpMoved,
            other_ifname: None,
            overwritten: Some(true),
            ..conflict
        })),
        Record::NeighChange(Held::Owned(change.clone())),
        Record::NeighChange(Held::Owned(NeighChange {
            old_mac: None,
            old_state: NudState::None,
            new_state: NudState::Permanent,
            cause: ChangeCause::Netlink,
            frame: None,
            nlmsg_pid: Some(4242),
            task: Some(crate::Task {
                pid: 4242,
                comm: "ip".into(),
            }),
            ..change
        })),
        Record::Summary(Held::Owned(summary)),
    ]
}

#[test]
fn every_record_type_has_its_schema_entry_and_no_other_type_has_one() {
    let s = schema();
    let types: BTreeSet<&str> = Record::types().collect();
    let listed: BTreeSet<&str> = s["properties"]["type"]["enum"]
        .as_array()
        .expect("the top-level type enum")
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(listed, types, "the schema's type enum");
    let with_type: BTreeSet<&str> = s["$defs"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(name, d)| {
            let c = d["properties"]["type"]["const"].as_str()?;
            assert_eq!(c, name, "$defs.{name} is the record type {c}");
            Some(name.as_str())
        })
        .collect();
    assert_eq!(with_type, types, "the $defs entries that are records");
    let dispatched: BTreeSet<&str> = s["allOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let t = b["if"]["properties"]["type"]["const"].as_str().unwrap();
            assert_eq!(b["then"]["$ref"], format!("#/$defs/{t}"));
            t
        })
        .collect();
    assert_eq!(
        dispatched, types,
        "the schema selects a $defs entry per type"
    );
    // The samples cover every type, and each one reads back.
    let sampled: BTreeSet<&str> = samples().iter().map(Record::type_name).collect();
    assert_eq!(sampled, types, "samples() has one record of each type");
}

#[test]
fn every_field_the_model_writes_is_in_the_schema() {
    let s = schema();
    for rec in samples() {
        let t = rec.type_name();
        let json = rec.to_json();
        if t != "header" {
            let back = Record::parse(&json, file::FORMAT_VERSION)
                .unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(back.to_json(), json, "{t} reads back as written");
        }
        let v: Value = serde_json::from_str(&json).unwrap();
        check_keys(&s, &s["$defs"][t], &v, t);
    }
}

#[test]
fn the_schema_version_is_the_one_headers_carry() {
    let s = schema();
    assert_eq!(
        s["$id"].as_str().unwrap().rsplit(':').next(),
        Some(SCHEMA_VERSION.to_string().as_str()),
        "the $id ends in the schema version"
    );
    assert_eq!(
        s["$defs"]["header"]["properties"]["schema_version"]["const"],
        SCHEMA_VERSION
    );
    let written = Record::Header(Held::Owned(Header::empty(3).current())).to_json();
    assert!(
        written.contains(&format!("\"schema_version\":{SCHEMA_VERSION}")),
        "{written}"
    );
}

#[test]
fn every_property_is_described() {
    fn walk(v: &Value, at: &str) {
        match v {
            Value::Object(m) => {
                if let Some(props) = m.get("properties").and_then(Value::as_object) {
                    for (k, p) in props {
                        assert!(
                            p.get("description").and_then(Value::as_str).is_some(),
                            "{at}.{k} has no description"
                        );
                    }
                }
                // An `if` only selects (by `type` or `change`): it describes nothing.
                for (k, x) in m.iter().filter(|(k, _)| *k != "if") {
                    walk(x, &format!("{at}/{k}"));
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, at)),
            _ => {}
        }
    }
    walk(&schema(), "#");
}
