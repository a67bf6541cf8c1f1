//! `arp-trace diff BEFORE AFTER`: ARP requests per (namespace, interface, sender IP, reason)
//! in two traces, what changed between their snapshots, the changes each trace recorded while
//! it ran (`facts_change`), and a one-line verdict. A namespace missing from a header's
//! snapshot (first seen during the trace) is taken from its `watched` record.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;

use anyhow::Result;
use arp_trace_model::file::{ParallelReader, TraceReader};
use arp_trace_model::{
    visible, ChangeKind, FactsChange, Held, IfSnapshot, NsSnapshot, Record, Snapshot, Sysctls,
};
use serde_json::{json, Value};

use crate::explain::foreign_to;
use crate::netns::NetnsNames;
use crate::pipeline::{Filter, Pipeline, Sink};
use crate::sinks::is_closed_pipe;
use crate::sinks::summary::Table;
use crate::sinks::text::describe_change_only;

mod compared;
mod conflicts;
mod text;

use compared::short;
pub use compared::{Change, Comparison, GroupKey, GroupRow, Side};
use conflicts::compare_conflicts;
pub use conflicts::{ConflictDiffRow, ConflictKey};
use text::write_text;

/// Changes recorded during one trace that are kept for the report, and the bytes they may
/// hold (estimated); more are counted, not kept.
const MAX_RECORDED: usize = 10_000;
const MAX_RECORDED_BYTES: usize = 8 << 20;
/// Namespaces taken from `watched` records, and the bytes their snapshots may hold: the first
/// `watched` record of a namespace is all the comparison uses.
const MAX_WATCHED: usize = arp_trace_model::limits::NAMESPACES;
const MAX_WATCHED_BYTES: usize = 16 << 20;

/// The snapshot's shape for a namespace only a `watched` record knows.
fn snapshot_of_watched(c: &FactsChange<'_>) -> NsSnapshot {
    let mut interfaces: BTreeMap<String, IfSnapshot> = BTreeMap::new();
    let mut all = Sysctls::default();
    for (conf, v) in c.arp_announce.iter().flatten() {
        if conf == "all" {
            all.arp_announce = Some(i64::from(*v));
        } else {
            interfaces
                .entry(conf.clone())
                .or_default()
                .sysctls
                .arp_announce = Some(i64::from(*v));
        }
    }
    for a in c.addrs.iter().flatten() {
        interfaces
            .entry(a.ifname.to_string())
            .or_default()
            .ipv4
            .push(a.cidr());
    }
    NsSnapshot {
        all: Some(all),
        error: None,
        interfaces: Some(interfaces),
        netns: c.netns,
    }
}

/// Foreign by the snapshot: the sender IP is in none of the interface's subnets.
fn foreign_by_snapshot(snapshot: Option<&Snapshot>, key: &GroupKey) -> Option<bool> {
    let interface = snapshot?
        .namespaces
        .get(&key.netns)?
        .interfaces
        .as_ref()?
        .get(&key.ifname)?;
    // The snapshot holds IPv4 subnets only; an IPv6 group's verdict comes from its events.
    let IpAddr::V4(sender) = key.sender_ip else {
        return None;
    };
    Some(foreign_to(sender, interface.ipv4.iter().copied()))
}

/// What a replay of one side collects besides the summary's table.
#[derive(Default)]
struct Collected {
    table: Table,
    /// Namespace (by name, else inode) -> its state when first watched.
    watched: BTreeMap<String, NsSnapshot>,
    watched_bytes: usize,
    recorded: Vec<FactsChange<'static>>,
    recorded_bytes: usize,
    recorded_omitted: u64,
}

/// About what the snapshot built from a `watched` record holds on the heap: an interface per
/// arp_announce entry and per address at most, each address kept once more.
fn watched_bytes(c: &FactsChange<'_>) -> usize {
    let per_if = 2 * std::mem::size_of::<(String, IfSnapshot)>() + 32;
    let cidr = std::mem::size_of::<arp_trace_model::Cidr>();
    let announce = c.arp_announce.iter().flatten();
    let addrs = c.addrs.iter().flatten();
    256 + announce.map(|(k, _)| per_if + k.len()).sum::<usize>()
        + addrs.map(|a| per_if + a.ifname.len() + cidr).sum::<usize>()
}

/// About what a change holds, with its strings.
fn change_bytes(c: &FactsChange<'_>) -> usize {
    std::mem::size_of::<FactsChange>()
        + [&c.netns_name, &c.ifname, &c.conf]
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum::<usize>()
}

struct Collector(Rc<RefCell<Collected>>);

impl Sink for Collector {
    fn record(&mut self, rec: &Record<'_>) -> std::io::Result<()> {
        let mut c = self.0.borrow_mut();
        match rec {
            Record::Arp(_) | Record::Ndisc(_) => c.table.add(rec.solicitation()),
            Record::Conflict(x) => c.table.add_conflict(x),
            Record::FactsChange(ch) if ch.change == ChangeKind::Watched => {
                let key = ch
                    .netns_name
                    .clone()
                    .unwrap_or_else(|| ch.netns.to_string());
                // Estimated from the record, before building what may not be kept.
                let n = watched_bytes(ch) + key.len();
                if c.watched.len() < MAX_WATCHED
                    && c.watched_bytes + n <= MAX_WATCHED_BYTES
                    && !c.watched.contains_key(&key)
                {
                    c.watched_bytes += n;
                    c.watched.insert(key, snapshot_of_watched(ch));
                }
            }
            Record::FactsChange(ch) => {
                let n = change_bytes(ch);
                if c.recorded.len() < MAX_RECORDED && c.recorded_bytes + n <= MAX_RECORDED_BYTES {
                    c.recorded_bytes += n;
                    c.recorded.push((**ch).clone().into_owned());
                } else {
                    c.recorded_omitted += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A namespace as groups and conflicts are keyed: by name where it has one, since its inode
/// changes whenever it is recreated.
fn ns_key(name: Option<&str>, inode: u32) -> String {
    name.map_or_else(|| inode.to_string(), str::to_string)
}

/// Replays one trace through the pipeline into the summary's table.
pub fn count(path: &Path) -> Result<Side> {
    let reader = TraceReader::open(path)?;
    let file = reader.file.clone();
    let mut header = reader.header.clone();
    let collected = Rc::new(RefCell::new(Collected::default()));
    let mut pipeline = Pipeline::new(
        Filter::default(),
        None,
        NetnsNames::offline(header.own_netns),
    );
    pipeline.sinks.push(Box::new(Collector(collected.clone())));
    let mut reader = ParallelReader::new(reader);
    super::replay::feed(&mut reader, &mut pipeline, &mut None, |_| {})?;
    drop(pipeline);
    let c = Rc::try_unwrap(collected)
        .map_err(|_| anyhow::anyhow!("the pipeline still holds the collector"))?
        .into_inner();
    for (key, snap) in c.watched {
        header
            .snapshot
            .get_or_insert_with(Snapshot::default)
            .namespaces
            .entry(key)
            .or_insert(snap);
    }
    let summary = c.table.snapshot(true);
    let mut groups = BTreeMap::new();
    let mut foreign = BTreeMap::new();
    for r in &summary.rows {
        let key = GroupKey {
            netns: ns_key(r.netns_name.as_deref(), r.netns),
            ifname: r.ifname.to_string(),
            family: r.family,
            sender_ip: r.sender_ip,
            reason: r.reason.map(|x| x.code().to_string()),
        };
        let fr = r
            .foreign_sender
            .or_else(|| foreign_by_snapshot(header.snapshot.as_ref(), &key));
        foreign.entry(key.clone()).or_insert(fr);
        *groups.entry(key).or_insert(0u64) += r.requests;
    }
    let mut conflicts = BTreeMap::new();
    for r in &summary.conflicts {
        let key = ConflictKey {
            netns: ns_key(r.netns_name.as_deref(), r.netns),
            ifname: r.ifname.to_string(),
            ip: r.ip,
            kind: r.kind,
        };
        *conflicts.entry(key).or_insert(0u64) += r.reports;
    }
    Ok(Side {
        conflicts,
        file,
        header,
        groups,
        foreign,
        folded: summary.folded_requests,
        warnings: std::mem::take(&mut reader.warnings),
        recorded: c.recorded,
        recorded_omitted: c.recorded_omitted,
    })
}

/// Generic snapshot diff: objects are compared key by key; anything else, and an object
/// present on one side only (a namespace or interface that came or went), is one change.
pub fn snapshot_changes(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(
        String::new(),
        Some(before.clone()),
        Some(after.clone()),
        &mut out,
    );
    keep_news(&mut out);
    out
}

/// [`snapshot_changes`] of two snapshots, without turning the namespaces that are the same on
/// both sides into generic values (those cost several times the snapshot itself).
fn snapshot_diff(before: Option<&Snapshot>, after: Option<&Snapshot>) -> Vec<Change> {
    let (Some(a), Some(b)) = (before, after) else {
        let v = |s| serde_json::to_value(s).unwrap_or(Value::Null);
        return snapshot_changes(&v(before), &v(after));
    };
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = a.namespaces.keys().chain(b.namespaces.keys()).collect();
    for k in keys {
        let (x, y) = (a.namespaces.get(k), b.namespaces.get(k));
        // The inode is not compared: it changes whenever a namespace is recreated.
        let same = match (x, y) {
            (Some(x), Some(y)) => {
                (&x.all, &x.error, &x.interfaces) == (&y.all, &y.error, &y.interfaces)
            }
            _ => false,
        };
        if !same {
            let v = |n: Option<&NsSnapshot>| n.and_then(|n| serde_json::to_value(n).ok());
            walk(format!("namespaces.{k}"), v(x), v(y), &mut out);
        }
    }
    keep_news(&mut out);
    out
}

/// Appends the changes between `a` and `b` under `path`, moving values into them.
fn walk(path: String, a: Option<Value>, b: Option<Value>, out: &mut Vec<Change>) {
    match (a, b) {
        (Some(Value::Object(mut x)), Some(Value::Object(mut y))) => {
            let keys: BTreeSet<String> = x.keys().chain(y.keys()).cloned().collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(p, x.remove(&k), y.remove(&k), out);
            }
        }
        (a, b) if a != b => out.push(Change {
            path,
            before: a.unwrap_or(Value::Null),
            after: b.unwrap_or(Value::Null),
        }),
        _ => {}
    }
}

/// A namespace's inode changes whenever it is recreated; that is not news. A sysctl known on
/// one side only (a `watched` record lists arp_announce alone) was not recorded, not changed.
fn keep_news(out: &mut Vec<Change>) {
    out.retain(|c| {
        let scalar = |v: &Value| v.is_number() || v.is_boolean();
        let one_sided =
            (c.before.is_null() && scalar(&c.after)) || (c.after.is_null() && scalar(&c.before));
        !c.path.ends_with(".netns") && !one_sided
    });
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
    let changes = snapshot_diff(
        before.header.snapshot.as_ref(),
        after.header.snapshot.as_ref(),
    );
    let conflicts = compare_conflicts(&before.conflicts, &after.conflicts);
    let groups_differ = rows.iter().any(|r| r.change != "same");
    let differ = groups_differ || conflicts.iter().any(|r| r.change != "same");

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
                        Some("all") => format!("all.{}", describe_change_only(c)),
                        _ => describe_change_only(c),
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
    } else if groups_differ {
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
    // What the peers saw: conflicts before and after, the fix's verdict from the other end.
    let (cb, ca) = conflicts
        .iter()
        .fold((0, 0), |(b, a), r| (b + r.before, a + r.after));
    let verdict = if cb != ca {
        format!("{verdict}; conflicts seen: {cb} -> {ca}")
    } else {
        verdict
    };
    Comparison {
        conflicts,
        rows,
        changes,
        verdict,
        differ,
    }
}

fn side_json(s: &Side) -> Value {
    let mut v = json!({
        "file": s.file,
        "hostname": s.header.hostname,
        "start_time": s.header.start_time,
        "requests": s.groups.values().sum::<u64>(),
        "warnings": s.warnings,
    });
    if s.folded > 0 {
        v["folded_requests"] = json!(s.folded);
    }
    if s.recorded_omitted > 0 {
        v["recorded_changes_omitted"] = json!(s.recorded_omitted);
    }
    v
}

/// The changes a trace recorded, as the records they are.
fn recorded_json(s: &Side) -> Vec<Record<'_>> {
    s.recorded
        .iter()
        .map(|c| Record::FactsChange(Held::Borrowed(c)))
        .collect()
}

/// Runs the comparison and prints it; `Ok(true)` when the groups are the same.
pub fn main(before: &Path, after: &Path, json_out: bool) -> Result<bool> {
    let b = count(before)?;
    let a = count(after)?;
    for w in b.warnings.iter().chain(&a.warnings) {
        eprintln!("arp-trace: warning: {}", visible(w));
    }
    let mut c = compare(&b, &a);
    let mut out = std::io::stdout().lock();
    let r = if json_out {
        let mut v = json!({
            "type": "diff",
            "before": side_json(&b),
            "after": side_json(&a),
            "groups": c.rows,
            "conflicts": c.conflicts,
            "recorded_changes": {"before": recorded_json(&b), "after": recorded_json(&a)},
            "verdict": c.verdict,
            "differ": c.differ,
        });
        // Moved in rather than copied: the values of a namespace that came or went can be the
        // largest thing diff holds.
        let changes = std::mem::take(&mut c.changes).into_iter().map(|ch| {
            let mut m = serde_json::Map::new();
            m.insert("after".into(), ch.after);
            m.insert("before".into(), ch.before);
            m.insert("path".into(), Value::String(ch.path));
            Value::Object(m)
        });
        v["snapshot_changes"] = Value::Array(changes.collect());
        writeln!(out, "{v}")
    } else {
        write_text(&mut out, &b, &a, &c)
    };
    match r {
        Ok(()) => {}
        Err(e) if is_closed_pipe(&e) => {}
        Err(e) => return Err(anyhow::Error::new(e).context("writing output")),
    }
    Ok(!c.differ)
}

#[cfg(test)]
mod tests;
