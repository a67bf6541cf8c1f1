//! What `diff` compares and finds: each trace counted (`Side`), the groups and conflicts
//! side by side, the snapshot changes and the verdict (`Comparison`). Apart so that the
//! comparison and its text output share the types without depending on each other.

use std::collections::BTreeMap;
use std::net::IpAddr;

use arp_trace_model::{FactsChange, Family, Header};
use serde::Serialize;
use serde_json::Value;

use super::conflicts::{ConflictDiffRow, ConflictKey};

/// What a group is counted by: the summary's row key, with the namespace by name where it has
/// one (inodes change when a namespace is recreated). `reason` is absent in traces made before
/// explanations. ARP requests and neighbour solicitations never share a group (`family`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    pub netns: String,
    pub ifname: String,
    pub family: Family,
    pub sender_ip: IpAddr,
    pub reason: Option<String>,
}

/// One trace, counted.
pub struct Side {
    pub file: String,
    pub header: Header,
    pub groups: BTreeMap<GroupKey, u64>,
    /// Per group: whether its sender is foreign to the interface (from the events, else from
    /// the snapshot's addresses); `None` when neither tells.
    pub foreign: BTreeMap<GroupKey, Option<bool>>,
    /// Requests the summary's table folded (beyond its row cap): not compared.
    pub folded: u64,
    pub warnings: Vec<String>,
    /// Address and sysctl changes recorded while the trace ran (not `watched` states).
    pub recorded: Vec<FactsChange<'static>>,
    /// Changes beyond what `recorded` keeps.
    pub recorded_omitted: u64,
    /// Conflict records per (namespace, interface, address, kind).
    pub conflicts: BTreeMap<ConflictKey, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub before: Value,
    pub after: Value,
}

pub(super) fn short(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        Value::Object(_) => "present".into(),
        other => other.to_string(),
    }
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
    pub conflicts: Vec<ConflictDiffRow>,
    pub changes: Vec<Change>,
    pub verdict: String,
    pub differ: bool,
}
