//! `arp-trace diff BEFORE AFTER`: ARP requests per (namespace, interface, sender IP, reason)
//! in two traces, what changed between their snapshots, the changes each trace recorded while
//! it ran (`facts_change`), and a one-line verdict. A namespace missing from a header's
//! snapshot (first seen during the trace) is taken from its `watched` record.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::event::ArpOp;
use crate::facts::{ChangeKind, FactsChange};
use crate::tracefile::{Header, Record, TraceReader};

/// Changes recorded during one trace that are kept for the report.
const MAX_RECORDED: usize = 10_000;

/// What a group is counted by. `reason` is absent in traces made before explanations.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    pub netns: String,
    pub ifname: String,
    pub sender_ip: Ipv4Addr,
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct Fields {
    op: ArpOp,
    netns: u32,
    netns_name: Option<String>,
    ifname: String,
    sender_ip: Ipv4Addr,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    foreign_sender: Option<bool>,
}

/// One trace, counted.
pub struct Side {
    pub file: String,
    pub header: Header,
    pub groups: BTreeMap<GroupKey, u64>,
    /// Per group: whether its sender is foreign to the interface (from the events, else from
    /// the snapshot's addresses); `None` when neither tells.
    pub foreign: BTreeMap<GroupKey, Option<bool>>,
    pub warnings: Vec<String>,
    /// Address and sysctl changes recorded while the trace ran (not `watched` states).
    pub recorded: Vec<FactsChange>,
}

/// The snapshot's shape for a `watched` record: `{"netns", "all": {"arp_announce"},
/// "interfaces": {ifname: {"arp_announce", "ipv4": [cidr...]}}}`.
fn snapshot_of_watched(c: &FactsChange) -> Value {
    let mut interfaces = serde_json::Map::new();
    let mut all = serde_json::Map::new();
    for (conf, v) in c.arp_announce.iter().flatten() {
        if conf == "all" {
            all.insert("arp_announce".into(), json!(v));
        } else {
            interfaces.insert(conf.clone(), json!({"arp_announce": v, "ipv4": []}));
        }
    }
    for a in c.addrs.iter().flatten() {
        let i = interfaces
            .entry(a.ifname.clone())
            .or_insert_with(|| json!({"ipv4": []}));
        if let Some(v) = i["ipv4"].as_array_mut() {
            v.push(json!(format!("{}/{}", a.addr, a.prefix_len)));
        }
    }
    json!({"netns": c.netns, "all": all, "interfaces": interfaces})
}

fn in_subnet(ip: Ipv4Addr, cidr: &str) -> Option<bool> {
    let (a, p) = cidr.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let p: u32 = p.parse().ok()?;
    let mask = if p == 0 {
        0
    } else {
        u32::MAX << (32 - p.min(32))
    };
    Some(u32::from(ip) & mask == u32::from(a) & mask)
}

/// Foreign by the snapshot: the sender IP is in none of the interface's subnets.
fn foreign_by_snapshot(snapshot: &Value, key: &GroupKey) -> Option<bool> {
    let addrs = snapshot
        .get("namespaces")?
        .get(&key.netns)?
        .get("interfaces")?
        .get(&key.ifname)?
        .get("ipv4")?
        .as_array()?;
    Some(
        !addrs
            .iter()
            .filter_map(Value::as_str)
            .any(|c| in_subnet(key.sender_ip, c) == Some(true)),
    )
}

pub fn count(path: &Path) -> Result<Side> {
    let mut r = TraceReader::open(path)?;
    let mut groups = BTreeMap::new();
    let mut foreign = BTreeMap::new();
    let mut recorded = Vec::new();
    while let Some(rec) = r.read_record()? {
        if let Record::Change(c) = rec {
            let key = c.netns_name.clone().unwrap_or_else(|| c.netns.to_string());
            if c.change == ChangeKind::Watched {
                if let Some(Value::Object(ns)) = r.header.snapshot.get_mut("namespaces") {
                    ns.entry(key).or_insert_with(|| snapshot_of_watched(&c));
                } else if r.header.snapshot.is_null() {
                    r.header.snapshot = json!({"namespaces": {key: snapshot_of_watched(&c)}});
                }
            } else if recorded.len() < MAX_RECORDED {
                recorded.push(*c);
            }
            continue;
        }
        if !matches!(&rec, Record::Arp(ev) if ev.op == ArpOp::Request) {
            continue;
        }
        // Read the fields the explanation branch adds straight from the line, so the
        // grouping works on traces with and without them.
        let f: Fields = serde_json::from_slice(r.last_line())
            .map_err(|e| anyhow::anyhow!("{} line {}: corrupt ARP record: {e}", r.file, r.line))?;
        debug_assert_eq!(f.op, ArpOp::Request);
        let key = GroupKey {
            netns: f.netns_name.unwrap_or_else(|| f.netns.to_string()),
            ifname: f.ifname,
            sender_ip: f.sender_ip,
            reason: f.reason,
        };
        if !foreign.contains_key(&key) {
            let fr = f
                .foreign_sender
                .or_else(|| foreign_by_snapshot(&r.header.snapshot, &key));
            foreign.insert(key.clone(), fr);
        }
        *groups.entry(key).or_insert(0u64) += 1;
    }
    Ok(Side {
        file: r.file.clone(),
        header: r.header.clone(),
        groups,
        foreign,
        warnings: std::mem::take(&mut r.warnings),
        recorded,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub before: Value,
    pub after: Value,
}

/// Generic snapshot diff: objects are compared key by key; anything else, and an object
/// present on one side only (a namespace or interface that came or went), is one change.
pub fn snapshot_changes(before: &Value, after: &Value) -> Vec<Change> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Change>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k), out);
                }
            }
            (a, b) if a != b => out.push(Change {
                path: path.to_string(),
                before: a.cloned().unwrap_or(Value::Null),
                after: b.cloned().unwrap_or(Value::Null),
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    // A namespace's inode changes whenever it is recreated; that is not news. A sysctl known on
    // one side only (a `watched` record lists arp_announce alone) was not recorded, not changed.
    out.retain(|c| {
        let scalar = |v: &Value| v.is_number() || v.is_boolean();
        let one_sided =
            (c.before.is_null() && scalar(&c.after)) || (c.after.is_null() && scalar(&c.before));
        !c.path.ends_with(".netns") && !one_sided
    });
    out
}

fn short(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        Value::Object(_) => "present".into(),
        other => other.to_string(),
    }
}

/// `eth3 arp_announce 0 -> 2` for the changes that can explain a group in (ns, ifname).
fn related_changes(changes: &[Change], ns: &str, ifname: &str) -> Vec<String> {
    let dev = format!("namespaces.{ns}.interfaces.{ifname}.");
    let all = format!("namespaces.{ns}.all.");
    changes
        .iter()
        .filter_map(|c| {
            let (scope, leaf) = if let Some(l) = c.path.strip_prefix(&dev) {
                (ifname, l)
            } else if let Some(l) = c.path.strip_prefix(&all) {
                ("all", l)
            } else {
                return None;
            };
            let name = if scope == ifname {
                leaf.to_string()
            } else {
                format!("{scope}.{leaf}")
            };
            Some(format!(
                "{name} {} -> {}",
                short(&c.before),
                short(&c.after)
            ))
        })
        .collect()
}

#[derive(Serialize)]
pub struct GroupRow {
    #[serde(flatten)]
    pub key: GroupKey,
    pub foreign: Option<bool>,
    pub before: u64,
    pub after: u64,
    /// `appeared`, `vanished`, `changed` or `same`.
    pub change: &'static str,
}

pub struct Comparison {
    pub rows: Vec<GroupRow>,
    pub changes: Vec<Change>,
    pub verdict: String,
    pub differ: bool,
}

pub fn compare(before: &Side, after: &Side) -> Comparison {
    let mut keys: Vec<&GroupKey> = before.groups.keys().chain(after.groups.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<GroupRow> = keys
        .into_iter()
        .map(|k| {
            let (b, a) = (
                before.groups.get(k).copied().unwrap_or(0),
                after.groups.get(k).copied().unwrap_or(0),
            );
            let foreign = before.foreign.get(k).copied().flatten().or(after
                .foreign
                .get(k)
                .copied()
                .flatten());
            let change = match (b, a) {
                (0, _) => "appeared",
                (_, 0) => "vanished",
                (b, a) if b != a => "changed",
                _ => "same",
            };
            GroupRow {
                key: k.clone(),
                foreign,
                before: b,
                after: a,
                change,
            }
        })
        .collect();
    let rank = |c: &str| match c {
        "appeared" => 0,
        "vanished" => 1,
        "changed" => 2,
        _ => 3,
    };
    rows.sort_by(|x, y| {
        (x.foreign != Some(true), rank(x.change), &x.key).cmp(&(
            y.foreign != Some(true),
            rank(y.change),
            &y.key,
        ))
    });
    let changes = snapshot_changes(&before.header.snapshot, &after.header.snapshot);
    let differ = rows.iter().any(|r| r.change != "same");

    // Foreign-sender requests per interface, before and after.
    let mut per_if: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.foreign == Some(true)) {
        let e = per_if
            .entry((r.key.netns.clone(), r.key.ifname.clone()))
            .or_default();
        e.0 += r.before;
        e.1 += r.after;
    }
    let biggest = per_if
        .iter()
        .filter(|(_, (b, a))| b != a)
        .max_by_key(|(_, (b, a))| b.abs_diff(*a));
    let verdict = if let Some(((ns, ifname), (b, a))) = biggest {
        let mut rel = related_changes(&changes, ns, ifname);
        if rel.is_empty() {
            // The change happened while a trace ran: its records say what it was.
            for c in before.recorded.iter().chain(&after.recorded) {
                let name = c.netns_name.clone().unwrap_or_else(|| c.netns.to_string());
                let here = c.subject() == Some(ifname.as_str())
                    || (c.change == ChangeKind::ArpAnnounce && c.subject() == Some("all"));
                if name == *ns && here {
                    let d = match c.subject() {
                        Some("all") => format!("all.{}", c.describe()),
                        _ => c.describe(),
                    };
                    if !rel.contains(&d) {
                        rel.push(d);
                    }
                }
            }
        }
        let after = if rel.is_empty() {
            String::new()
        } else {
            format!(" after {}", rel.join(", "))
        };
        format!("foreign-sender requests on {ns}/{ifname}: {b} -> {a}{after}")
    } else if differ {
        let n = |c: &str| rows.iter().filter(|r| r.change == c).count();
        format!(
            "requests differ in {} groups ({} appeared, {} vanished, {} changed); foreign-sender \
             requests unchanged",
            rows.iter().filter(|r| r.change != "same").count(),
            n("appeared"),
            n("vanished"),
            n("changed")
        )
    } else {
        "no difference in ARP requests per group".to_string()
    };
    Comparison {
        rows,
        changes,
        verdict,
        differ,
    }
}

fn side_json(s: &Side) -> Value {
    json!({
        "file": s.file,
        "hostname": s.header.hostname,
        "start_time": s.header.start_time,
        "requests": s.groups.values().sum::<u64>(),
        "warnings": s.warnings,
    })
}

/// Runs the comparison and prints it; `Ok(true)` when the groups are the same.
pub fn main(before: &Path, after: &Path, json_out: bool) -> Result<bool> {
    let b = count(before)?;
    let a = count(after)?;
    for w in b.warnings.iter().chain(&a.warnings) {
        eprintln!("arp-trace: warning: {w}");
    }
    let c = compare(&b, &a);
    let mut out = std::io::stdout().lock();
    let r = if json_out {
        let v = json!({
            "type": "diff",
            "before": side_json(&b),
            "after": side_json(&a),
            "groups": c.rows,
            "snapshot_changes": c.changes,
            "recorded_changes": {"before": b.recorded, "after": a.recorded},
            "verdict": c.verdict,
            "differ": c.differ,
        });
        writeln!(out, "{v}")
    } else {
        write_text(&mut out, &b, &a, &c)
    };
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(anyhow::Error::new(e).context("writing output")),
    }
    Ok(!c.differ)
}

fn write_text(w: &mut impl Write, b: &Side, a: &Side, c: &Comparison) -> std::io::Result<()> {
    for (label, s) in [("before", b), ("after", a)] {
        writeln!(
            w,
            "{label}: {} ({}, {}): {} ARP requests",
            s.file,
            s.header.hostname,
            crate::timefmt::rfc3339_nanos(s.header.start_time.0),
            s.groups.values().sum::<u64>()
        )?;
    }
    writeln!(w, "requests per namespace/interface, sender IP, reason:")?;
    for r in &c.rows {
        writeln!(
            w,
            "  {:<9} {}/{} tell {} reason {}{}: {} -> {}",
            r.change,
            r.key.netns,
            r.key.ifname,
            r.key.sender_ip,
            r.key.reason.as_deref().unwrap_or("unknown"),
            match r.foreign {
                Some(true) => " [foreign sender]",
                _ => "",
            },
            r.before,
            r.after
        )?;
    }
    if c.changes.is_empty() {
        writeln!(w, "no sysctl or address changes between the snapshots")?;
    } else {
        writeln!(w, "sysctl and address changes between the snapshots:")?;
        for ch in &c.changes {
            let p = ch.path.strip_prefix("namespaces.").unwrap_or(&ch.path);
            writeln!(w, "  {p}: {} -> {}", short(&ch.before), short(&ch.after))?;
        }
    }
    for (label, s) in [("before", b), ("after", a)] {
        if s.recorded.is_empty() {
            continue;
        }
        writeln!(w, "changes recorded during {label}:")?;
        for ch in &s.recorded {
            writeln!(
                w,
                "  {} {}",
                crate::timefmt::rfc3339_nanos(ch.time.0),
                crate::output::describe_change(ch, s.header.own_netns)
            )?;
        }
    }
    writeln!(w, "verdict: {}", c.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(snapshot: Value, groups: &[(&str, &str, [u8; 4], u64)]) -> Side {
        let mut s = Side {
            file: "t".into(),
            header: Header::new(String::new(), None, snapshot),
            groups: BTreeMap::new(),
            foreign: BTreeMap::new(),
            warnings: vec![],
            recorded: vec![],
        };
        for (ns, i, ip, n) in groups {
            let k = GroupKey {
                netns: ns.to_string(),
                ifname: i.to_string(),
                sender_ip: Ipv4Addr::from(*ip),
                reason: None,
            };
            let f = foreign_by_snapshot(&s.header.snapshot, &k);
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
        w.addrs = Some(vec![crate::explain::tests::addr(
            "eth3",
            "198.51.100.10",
            24,
        )]);
        let v = snapshot_of_watched(&w);
        assert_eq!(v["all"]["arp_announce"], 1);
        assert_eq!(v["interfaces"]["eth3"]["ipv4"][0], "198.51.100.10/24");
        let k = GroupKey {
            netns: "x".into(),
            ifname: "eth3".into(),
            sender_ip: Ipv4Addr::new(203, 0, 113, 10),
            reason: None,
        };
        assert_eq!(
            foreign_by_snapshot(&json!({"namespaces": {"x": v}}), &k),
            Some(true)
        );
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
    fn subnets() {
        let ip = Ipv4Addr::new(198, 51, 100, 7);
        assert_eq!(in_subnet(ip, "198.51.100.10/24"), Some(true));
        assert_eq!(in_subnet(ip, "203.0.113.10/24"), Some(false));
        assert_eq!(in_subnet(ip, "0.0.0.0/0"), Some(true));
        assert_eq!(in_subnet(ip, "junk"), None);
    }
}
