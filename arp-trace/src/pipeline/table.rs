//! The receive side's records on their way through the pipeline: the conflicts a received
//! frame shows, and the neighbour-table changes. An `ip_moved` conflict waits (briefly) for
//! the change its frame makes to the kernel's entry, to say whether the entry was overwritten.

use std::borrow::Cow;

use arp_trace_model::{ArpEvent, Conflict, ConflictKind, Direction, Held, NeighChange, Record};

use super::Pipeline;

impl Pipeline {
    /// The conflicts a frame shows (received) or the MAC it teaches (sent), when conflicts
    /// are looked for; a received frame's namespace facts are read first, so what that read
    /// noticed comes out before the frame.
    pub(super) fn conflicts_in(&mut self, ev: &ArpEvent<'_>) -> Vec<Conflict<'static>> {
        let Some(d) = self.conflicts.as_mut() else {
            return Vec::new();
        };
        if !ev.received() {
            d.learn(ev);
            return Vec::new();
        }
        if !self
            .filter
            .netns_matches(ev.netns, ev.netns_name.as_deref())
        {
            return Vec::new();
        }
        let facts = self
            .facts
            .as_mut()
            .and_then(|f| f.facts(ev.netns, &ev.ifname).ok());
        let found = d.received(ev, facts.as_deref());
        self.counters.conflicts_dropped = d.dropped;
        self.drain_changes_before(Some(ev.time));
        found
    }

    /// A conflict, found now or read back: `-i` and `--netns` select it by where it was
    /// seen; `--foreign-only` keeps it (it is what that option looks for).
    pub(super) fn push_conflict(&mut self, mut c: Held<'_, Conflict<'_>>) {
        let Some(name) = self.received_side(&c.ifname, c.netns, c.netns_name.as_deref()) else {
            return;
        };
        if name.is_some() {
            c.to_mut().netns_name = name;
        }
        self.counters.conflicts += 1;
        self.last_time = self.last_time.max(c.time);
        let rec = Record::Conflict(Held::Borrowed(&c));
        self.each(|s| s.record(&rec));
    }

    /// Conflicts just found: an `ip_moved` waits for its frame's table change.
    pub(super) fn found(&mut self, conflicts: Vec<Conflict<'static>>) {
        for c in conflicts {
            match self.conflicts.as_mut() {
                Some(d) if c.kind == ConflictKind::IpMoved => d.hold(c),
                _ => self.push_conflict(Held::Owned(c)),
            }
        }
    }

    /// A neighbour entry the kernel changed: `-i` and `--netns` select it by its device and
    /// namespace; it is what received frames do, so `--direction out` leaves it out. The
    /// conflict it settles comes out first.
    pub(super) fn push_neigh_change(&mut self, mut c: Held<'_, NeighChange<'_>>) {
        let settled = self.conflicts.as_mut().and_then(|d| d.settle(&c));
        if let Some(s) = settled {
            self.push_conflict(Held::Owned(s));
        }
        let Some(name) = self.received_side(&c.ifname, c.netns, c.netns_name.as_deref()) else {
            return;
        };
        if name.is_some() {
            c.to_mut().netns_name = name;
        }
        self.counters.neigh_changes += 1;
        self.last_time = self.last_time.max(c.time);
        let rec = Record::NeighChange(Held::Borrowed(&c));
        self.each(|s| s.record(&rec));
    }

    /// The filters a receive-side record (a conflict, a table change) passes: `-i` and
    /// `--netns` by where it was seen, `--direction` as received; `None` when filtered (and
    /// counted), else the namespace name the record lacks, if there is one.
    fn received_side(
        &mut self,
        ifname: &str,
        netns: u32,
        name: Option<&str>,
    ) -> Option<Option<Cow<'static, str>>> {
        if !self.filter.matches(Some(ifname), netns, name)
            || !self.filter.direction_matches(Direction::In)
        {
            self.counters.filtered += 1;
            return None;
        }
        Some(self.missing_name(netns, name))
    }

    /// Whether conflicts are waiting for their table change.
    pub fn holds(&self) -> bool {
        self.conflicts.as_ref().is_some_and(|d| d.holds())
    }

    /// Hands on the held conflicts whose wait is over (`all`: every one, at the end).
    pub fn release_held(&mut self, all: bool) {
        let due = match self.conflicts.as_mut() {
            Some(d) => d.due(all),
            None => return,
        };
        for c in due {
            self.push_conflict(Held::Owned(c));
        }
    }
}
