//! `{"type":"summary", ...}`: ARP requests and neighbour solicitations folded into one row
//! per (namespace, interface, family, sender IP, reason), printed by `--json` on exit (and every `--summary-interval`), and the
//! trailer of a trace file, where the trace's counts follow the rows.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits;
use crate::solicit::Family;
use crate::time::Time;
use crate::verdict::{Reason, Remedy};

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Summary<'a> {
    /// False for the periodic summaries of `--summary-interval`, true for the one on exit.
    #[serde(rename = "final", default)]
    pub last: bool,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub foreign_requests: u64,
    #[serde(default, borrow)]
    pub rows: Vec<Row<'a>>,
    /// Requests not in any row because the row table was full.
    #[serde(default)]
    pub folded_requests: u64,
    /// Conflicts reported, one row per (namespace, interface, address, kind); absent when
    /// there were none (and before format 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictRow<'a>>,
    /// Conflict records in no row because the conflict table was full.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub folded_conflicts: u64,
    /// A trace's trailer only: what the trace holds and what the run lost.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<TraceCounts>,
}

/// The counts a trace file's trailer adds to the summary. Version 1 trailers had only these.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceCounts {
    /// Records between header and trailer.
    #[serde(default)]
    pub events: u64,
    #[serde(default)]
    pub replies: u64,
    /// ARP frames the host's devices received (format 4 on).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub received: u64,
    #[serde(default)]
    pub failures: u64,
    #[serde(default)]
    pub lost: u64,
    #[serde(default)]
    pub filtered: u64,
    #[serde(default)]
    pub undecodable: u64,
    /// Hook runs the kernel skipped (program busy on that CPU).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed: u64,
    /// Records the BPF programs discarded (a kernel read failed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub discarded: u64,
    /// Requests from `arp_solicit()` shown without their neighbour record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unjoined: u64,
    /// Trigger records that named no request.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unmatched: u64,
    #[serde(default)]
    pub end_time: Time,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The conflicts of one kind about one address seen on one interface.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConflictRow<'a> {
    pub netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub netns_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub ifname: Cow<'a, str>,
    pub ip: std::net::Ipv4Addr,
    pub kind: crate::conflict::ConflictKind,
    /// Conflict records (a first sighting, then one per 10 s while it went on).
    pub reports: u64,
    /// The MACs that claimed the address in them (at most [`MAX_ROW_MACS`]).
    #[serde(deserialize_with = "macs")]
    pub macs: Vec<crate::mac::Mac>,
    pub first_seen: Time,
    pub last_seen: Time,
}

/// MACs a conflict row lists.
pub const MAX_ROW_MACS: usize = 8;

fn macs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<crate::mac::Mac>, D::Error> {
    limits::seq(d, MAX_ROW_MACS, "macs")
}

fn conflict_rows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ConflictRow<'de>>, D::Error> {
    limits::seq(d, limits::ROWS, "conflicts")
}

impl ConflictRow<'_> {
    pub fn into_owned(self) -> ConflictRow<'static> {
        ConflictRow {
            netns: self.netns,
            netns_name: self.netns_name.map(crate::own),
            ifname: crate::own(self.ifname),
            ip: self.ip,
            kind: self.kind,
            reports: self.reports,
            macs: self.macs,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        }
    }
}

/// One summary row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Row<'a> {
    pub netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub netns_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub ifname: Cow<'a, str>,
    /// `ipv4` (ARP requests) or `ipv6` (neighbour solicitations); absent before version 3.
    #[serde(default)]
    pub family: Family,
    pub sender_ip: IpAddr,
    pub reason: Option<Reason>,
    pub foreign_sender: Option<bool>,
    pub requests: u64,
    pub distinct_targets: usize,
    /// True when more targets were seen than remembered: `distinct_targets` is a lower bound.
    pub distinct_targets_capped: bool,
    pub first_seen: Time,
    pub last_seen: Time,
    #[serde(deserialize_with = "top")]
    pub top_flows: Vec<Count>,
    /// Requests whose flow is not in `top_flows`.
    pub other_flows: u64,
    #[serde(deserialize_with = "top")]
    pub top_processes: Vec<Count>,
    pub other_processes: u64,
    #[serde(borrow)]
    pub remedy: Option<Remedy<'a>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

fn top<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Count>, D::Error> {
    limits::seq(d, limits::TOP, "top_flows/top_processes")
}

fn rows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Row<'de>>, D::Error> {
    limits::seq(d, limits::ROWS, "rows")
}

// Read through a flat mirror: serde's `flatten` (of `counts`) would first copy every field it
// does not know, however large, into a generic value.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "final", default)]
    last: bool,
    #[serde(default)]
    requests: u64,
    #[serde(default)]
    foreign_requests: u64,
    #[serde(default, borrow, deserialize_with = "rows")]
    rows: Vec<Row<'a>>,
    #[serde(default)]
    folded_requests: u64,
    #[serde(default, borrow, deserialize_with = "conflict_rows")]
    conflicts: Vec<ConflictRow<'a>>,
    #[serde(default)]
    folded_conflicts: u64,
    #[serde(default)]
    events: u64,
    #[serde(default)]
    replies: u64,
    #[serde(default)]
    received: u64,
    #[serde(default)]
    failures: u64,
    #[serde(default)]
    lost: u64,
    #[serde(default)]
    filtered: u64,
    #[serde(default)]
    undecodable: u64,
    #[serde(default)]
    missed: u64,
    #[serde(default)]
    discarded: u64,
    #[serde(default)]
    unjoined: u64,
    #[serde(default)]
    unmatched: u64,
    #[serde(default)]
    end_time: Time,
}

impl<'de: 'a, 'a> Deserialize<'de> for Summary<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Summary {
            last: w.last,
            requests: w.requests,
            foreign_requests: w.foreign_requests,
            rows: w.rows,
            folded_requests: w.folded_requests,
            conflicts: w.conflicts,
            folded_conflicts: w.folded_conflicts,
            // As `flatten` read it: every field has a default, so the counts are always there.
            counts: Some(TraceCounts {
                events: w.events,
                replies: w.replies,
                received: w.received,
                failures: w.failures,
                lost: w.lost,
                filtered: w.filtered,
                undecodable: w.undecodable,
                missed: w.missed,
                discarded: w.discarded,
                unjoined: w.unjoined,
                unmatched: w.unmatched,
                end_time: w.end_time,
            }),
        })
    }
}

impl Summary<'_> {
    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        for (i, r) in self.rows.iter().enumerate() {
            r.check(i)?;
        }
        for (i, c) in self.conflicts.iter().enumerate() {
            if let Some(n) = &c.netns_name {
                limits::netns_name(&format!("conflicts[{i}].netns_name"), n)?;
            }
            limits::ifname(&format!("conflicts[{i}].ifname"), &c.ifname)?;
        }
        Ok(())
    }

    pub fn into_owned(self) -> Summary<'static> {
        Summary {
            last: self.last,
            requests: self.requests,
            foreign_requests: self.foreign_requests,
            rows: self.rows.into_iter().map(Row::into_owned).collect(),
            folded_requests: self.folded_requests,
            conflicts: self
                .conflicts
                .into_iter()
                .map(ConflictRow::into_owned)
                .collect(),
            folded_conflicts: self.folded_conflicts,
            counts: self.counts,
        }
    }
}

impl Row<'_> {
    fn check(&self, i: usize) -> Result<(), String> {
        if let Some(n) = &self.netns_name {
            limits::netns_name(&format!("rows[{i}].netns_name"), n)?;
        }
        limits::ifname(&format!("rows[{i}].ifname"), &self.ifname)?;
        for c in self.top_flows.iter().chain(&self.top_processes) {
            limits::len(
                &format!("rows[{i}] flow or process"),
                &c.name,
                limits::LABEL,
                "a name",
            )?;
        }
        if let Some(r) = &self.remedy {
            r.check(&format!("rows[{i}].remedy"))?;
        }
        Ok(())
    }

    pub fn into_owned(self) -> Row<'static> {
        Row {
            netns: self.netns,
            netns_name: self.netns_name.map(crate::own),
            ifname: crate::own(self.ifname),
            family: self.family,
            sender_ip: self.sender_ip,
            reason: self.reason,
            foreign_sender: self.foreign_sender,
            requests: self.requests,
            distinct_targets: self.distinct_targets,
            distinct_targets_capped: self.distinct_targets_capped,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            top_flows: self.top_flows,
            other_flows: self.other_flows,
            top_processes: self.top_processes,
            other_processes: self.other_processes,
            remedy: self.remedy.map(Remedy::into_owned),
        }
    }
}
