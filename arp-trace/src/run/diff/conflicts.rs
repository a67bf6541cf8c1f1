//! Conflicts in `diff`: counted per (namespace, interface, address, kind) on each side, so
//! "after the fix the peer saw none" is a row that vanished and a verdict.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use arp_trace_model::ConflictKind;

/// What conflicts are counted by: where they were seen (the namespace by name where it has
/// one), the address and the kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ConflictKey {
    pub netns: String,
    pub ifname: String,
    pub ip: std::net::Ipv4Addr,
    pub kind: ConflictKind,
}

#[derive(Serialize)]
pub struct ConflictDiffRow {
    #[serde(flatten)]
    pub key: ConflictKey,
    /// Conflict records in each trace.
    pub before: u64,
    pub after: u64,
    /// `appeared`, `vanished`, `changed` or `same`.
    pub change: &'static str,
}

/// Conflict records per key on each side, changed ones first.
pub(super) fn compare_conflicts(
    before: &BTreeMap<ConflictKey, u64>,
    after: &BTreeMap<ConflictKey, u64>,
) -> Vec<ConflictDiffRow> {
    let keys: BTreeSet<&ConflictKey> = before.keys().chain(after.keys()).collect();
    let mut rows: Vec<ConflictDiffRow> = keys
        .into_iter()
        .map(|k| {
            let b = before.get(k).copied().unwrap_or(0);
            let a = after.get(k).copied().unwrap_or(0);
            ConflictDiffRow {
                key: k.clone(),
                before: b,
                after: a,
                change: match (b, a) {
                    (0, _) => "appeared",
                    (_, 0) => "vanished",
                    (b, a) if b != a => "changed",
                    _ => "same",
                },
            }
        })
        .collect();
    rows.sort_by_key(|r| (r.change == "same", r.key.clone()));
    rows
}
