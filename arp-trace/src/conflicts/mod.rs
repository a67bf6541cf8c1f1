//! Address conflicts, from the ARP frames the namespaces' devices receive: a small table per
//! namespace of where each sender address was last seen (interface, MAC, time), the
//! namespace's own addresses and the MACs it sends from, and the requests this host sent, so
//! that a conflict caused by one of its own namespaces names that request and its verdict.
//!
//! Rules (see `ConflictKind`): within [`WINDOW`] of the last sighting, a new MAC on the same
//! interface is `ip_moved`, a different MAC on another interface `ip_on_two_links`; a sender
//! in none of the receiving interface's subnets (an interface that has IPv4 addresses at
//! all) is `foreign_sender_received`; the namespace's own address (or a probe for it, sender
//! 0.0.0.0) from a MAC the namespace never sent from is `duplicate_address`. A conflict is
//! reported when first seen and then at most once per [`REPEAT`] while it goes on, with its
//! first and last time and the frames that showed it.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use arp_trace_model::intern;
use arp_trace_model::{
    ArpEvent, Conflict, ConflictCause, ConflictKind, Mac, NeighChange, NsFacts, Time,
};

/// How long a sighting counts: an address at another MAC after this long is churn (a
/// DHCP lease moved), not a conflict.
pub const WINDOW: Time = Time(60 * 1_000_000_000);
/// A conflict that goes on is reported again at most this often.
pub const REPEAT: Time = Time(10 * 1_000_000_000);
/// Sender addresses remembered per namespace; past it, sightings older than the window go
/// first, and a new one is dropped (and counted) while all are recent.
pub const MAX_SIGHTINGS: usize = 4096;
/// Conflicts remembered per namespace, under the same rule.
pub const MAX_REPORTS: usize = 1024;
/// Interfaces one address is remembered on.
const LINKS_PER_IP: usize = 4;
/// Requests this host sent remembered for `cause`, and MACs per namespace.
const MAX_SENT: usize = 4096;
const MACS_PER_NS: usize = 64;
/// How long an `ip_moved` waits for the update its frame makes to the kernel's entry: the
/// update's record follows the frame's on the same CPU within microseconds.
pub const HOLD: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
struct Sighting {
    ifindex: u32,
    ifname: Box<str>,
    mac: Mac,
    last: Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ReportKey {
    kind: ConflictKind,
    ifindex: u32,
    ip: Ipv4Addr,
    mac: Mac,
}

#[derive(Clone, Copy, Debug)]
struct Report {
    first: Time,
    last: Time,
    frames: u64,
    emitted: Time,
}

/// One namespace's state.
#[derive(Default, Debug)]
struct Ns {
    sightings: HashMap<Ipv4Addr, Vec<Sighting>>,
    reports: HashMap<ReportKey, Report>,
    /// MACs this namespace sent ARP from: its own, never a duplicate's.
    macs: Vec<Mac>,
}

/// The detector, one per run (live only: a trace carries the conflicts it found).
#[derive(Default, Debug)]
pub struct Detector {
    ns: HashMap<u32, Ns>,
    /// The last request this host sent with each (MAC, sender address).
    sent: HashMap<(Mac, Ipv4Addr), ConflictCause<'static>>,
    /// Sightings and conflicts not kept because a namespace's table was full of recent ones.
    pub dropped: u64,
    /// `ip_moved` conflicts waiting to learn whether the kernel's entry was overwritten.
    held: VecDeque<(Conflict<'static>, Instant)>,
}

impl Detector {
    /// An `ip_moved` waits (at most [`HOLD`]) for the table change its frame makes.
    pub fn hold(&mut self, c: Conflict<'static>) {
        self.held.push_back((c, Instant::now()));
    }

    pub fn holds(&self) -> bool {
        !self.held.is_empty()
    }

    /// The held conflict a table change settles: the receiving device's entry for the
    /// address now at the conflict's new MAC, overwritten when it was valid at another.
    pub fn settle(&mut self, ch: &NeighChange<'_>) -> Option<Conflict<'static>> {
        let i = self.held.iter().position(|(c, _)| {
            (c.netns, c.ifindex, c.ip) == (ch.netns, ch.ifindex, ch.ip) && ch.new_mac == Some(c.mac)
        })?;
        let (mut c, _) = self.held.remove(i)?;
        c.overwritten = Some(ch.old_mac.is_some_and(|m| m != c.mac));
        Some(c)
    }

    /// Held conflicts whose frame changed no entry in time (`all`: every one, at the end).
    pub fn due(&mut self, all: bool) -> Vec<Conflict<'static>> {
        let mut out = Vec::new();
        while let Some((_, since)) = self.held.front() {
            if !all && since.elapsed() < HOLD {
                break;
            }
            let (mut c, _) = self.held.pop_front().expect("just seen");
            c.overwritten = Some(false);
            out.push(c);
        }
        out
    }

    /// A frame this host sent, whatever the filters select: its MAC is its namespace's own.
    pub fn learn(&mut self, ev: &ArpEvent<'_>) {
        let ns = self.ns.entry(ev.netns).or_default();
        if !ns.macs.contains(&ev.sender_mac) {
            if ns.macs.len() >= MACS_PER_NS {
                ns.macs.remove(0);
            }
            ns.macs.push(ev.sender_mac);
        }
    }

    /// A request this host sent, once explained: the cause later conflicts elsewhere may
    /// name.
    pub fn cause(&mut self, ev: &ArpEvent<'_>) {
        if !ev.is_sent_request() {
            return;
        }
        if self.sent.len() >= MAX_SENT {
            let t = ev.time;
            self.sent.retain(|_, c| t.0 - c.time.0 < WINDOW.0);
            if self.sent.len() >= MAX_SENT {
                self.sent.clear();
            }
        }
        let v = ev.verdict.as_ref();
        self.sent.insert(
            (ev.sender_mac, ev.sender_ip),
            ConflictCause {
                time: ev.time,
                netns: ev.netns,
                netns_name: ev.netns_name.as_deref().map(intern::name),
                ifname: intern::name(&ev.ifname),
                sender_ip: ev.sender_ip,
                target_ip: ev.target_ip,
                reason: v.map(|v| v.reason),
                foreign_sender: v.map(|v| v.foreign_sender),
                explanation: v.map(|v| owned(&v.explanation)),
            },
        );
    }

    /// A frame a device received, with its namespace's facts when they could be read: the
    /// conflicts it shows that are due for a report.
    pub fn received(
        &mut self,
        ev: &ArpEvent<'_>,
        facts: Option<&NsFacts<'_>>,
    ) -> Vec<Conflict<'static>> {
        let mut found: Vec<(ConflictKind, Ipv4Addr, Option<Mac>, Option<String>)> = Vec::new();
        let ns = self.ns.entry(ev.netns).or_default();
        let own_mac = ns.macs.contains(&ev.sender_mac);
        let probe = ev.sender_ip.is_unspecified();
        let claimed = if probe { ev.target_ip } else { ev.sender_ip };
        let owner = facts.and_then(|f| f.addrs.iter().find(|a| a.addr == claimed));
        if let Some(owner) = owner {
            // rfc5227's conflict: our address (or a probe for it) from another station.
            if !own_mac {
                found.push((
                    ConflictKind::DuplicateAddress,
                    claimed,
                    None,
                    Some(owner.ifname.to_string()),
                ));
            }
        } else if !probe {
            if let Some(f) = facts {
                let mine: Vec<_> = f.addrs.iter().filter(|a| a.ifname == ev.ifname).collect();
                if !mine.is_empty() && !mine.iter().any(|a| a.covers(ev.sender_ip)) {
                    let other = f
                        .addrs
                        .iter()
                        .find(|a| a.ifname != ev.ifname && a.covers(ev.sender_ip))
                        .map(|a| a.ifname.to_string());
                    found.push((
                        ConflictKind::ForeignSenderReceived,
                        ev.sender_ip,
                        None,
                        other,
                    ));
                }
            }
            let seen = ns
                .sightings
                .get(&ev.sender_ip)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for s in seen {
                if s.mac == ev.sender_mac || ev.time.0 - s.last.0 > WINDOW.0 {
                    continue;
                }
                if s.ifindex == ev.ifindex {
                    found.push((ConflictKind::IpMoved, ev.sender_ip, Some(s.mac), None));
                } else {
                    found.push((
                        ConflictKind::IpOnTwoLinks,
                        ev.sender_ip,
                        Some(s.mac),
                        Some(s.ifname.to_string()),
                    ));
                }
            }
            if !ns.sight(ev) {
                self.dropped += 1;
            }
        }
        let mut out = Vec::new();
        for (kind, ip, other_mac, other_ifname) in found {
            let key = ReportKey {
                kind,
                ifindex: ev.ifindex,
                ip,
                mac: ev.sender_mac,
            };
            let Some(r) = ns.report(key, ev.time) else {
                self.dropped += 1;
                continue;
            };
            if r.emitted != ev.time {
                continue;
            }
            out.push(Conflict {
                kind,
                time: ev.time,
                netns: ev.netns,
                netns_name: ev.netns_name.as_deref().map(intern::name),
                ifindex: ev.ifindex,
                ifname: intern::name(&ev.ifname),
                ip,
                mac: ev.sender_mac,
                other_mac,
                other_ifname: other_ifname.map(Into::into),
                gratuitous: ev.is_gratuitous(),
                probe: probe && kind == ConflictKind::DuplicateAddress,
                first_time: r.first,
                last_time: r.last,
                frames: r.frames,
                cause: self
                    .sent
                    .get(&(ev.sender_mac, ip))
                    .filter(|c| ev.time.0 - c.time.0 <= WINDOW.0)
                    .cloned(),
                overwritten: None,
            });
        }
        out
    }
}

fn owned(s: &str) -> Cow<'static, str> {
    Cow::Owned(s.to_string())
}

impl Ns {
    /// Notes where the frame's sender was seen; false when the table is full of recent ones.
    fn sight(&mut self, ev: &ArpEvent<'_>) -> bool {
        if !self.sightings.contains_key(&ev.sender_ip) && self.sightings.len() >= MAX_SIGHTINGS {
            let t = ev.time;
            self.sightings.retain(|_, v| {
                v.retain(|s| t.0 - s.last.0 <= WINDOW.0);
                !v.is_empty()
            });
            if self.sightings.len() >= MAX_SIGHTINGS {
                return false;
            }
        }
        let links = self.sightings.entry(ev.sender_ip).or_default();
        match links.iter_mut().find(|s| s.ifindex == ev.ifindex) {
            Some(s) => {
                s.mac = ev.sender_mac;
                s.last = ev.time;
            }
            None => {
                if links.len() >= LINKS_PER_IP {
                    links.sort_by_key(|s| std::cmp::Reverse(s.last));
                    links.truncate(LINKS_PER_IP - 1);
                }
                links.push(Sighting {
                    ifindex: ev.ifindex,
                    ifname: ev.ifname.as_ref().into(),
                    mac: ev.sender_mac,
                    last: ev.time,
                });
            }
        }
        true
    }

    /// Counts a frame showing the conflict `key`; `emitted == now` when it is due for a report.
    fn report(&mut self, key: ReportKey, now: Time) -> Option<Report> {
        if !self.reports.contains_key(&key) && self.reports.len() >= MAX_REPORTS {
            self.reports.retain(|_, r| now.0 - r.last.0 <= WINDOW.0);
            if self.reports.len() >= MAX_REPORTS {
                return None;
            }
        }
        let r = self.reports.entry(key).or_insert(Report {
            first: now,
            last: now,
            frames: 0,
            emitted: Time(i128::MIN),
        });
        if now.0 - r.last.0 > WINDOW.0 {
            // Gone quiet for a window and back: a new episode.
            r.first = now;
            r.frames = 0;
            r.emitted = Time(i128::MIN);
        }
        r.frames += 1;
        r.last = now;
        if r.emitted == Time(i128::MIN) || now.0 - r.emitted.0 >= REPEAT.0 {
            r.emitted = now;
        }
        Some(*r)
    }
}

#[cfg(test)]
mod tests;
