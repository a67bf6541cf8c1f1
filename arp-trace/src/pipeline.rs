//! The one pipeline live and offline work share: events are enriched (namespace names),
//! filtered, counted and handed to every sink. Sources (the kernel, later trace files) feed it.

use std::collections::HashSet;
use std::io::{self, Write};

use crate::attribution::NeighFailed;
use crate::brief::{ArpView, BriefArp};
use crate::event::{ArpEvent, ArpOp, EventFacts, Skip, Time};
use crate::explain;
use crate::facts::{FactsChange, FactsSource};
use crate::netns::NetnsNames;

/// What the user asked to see.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Interface names (`-i`); empty means all.
    pub interfaces: HashSet<String>,
    /// Namespace inodes (`--netns`); empty means all.
    pub netns: HashSet<u32>,
}

impl Filter {
    pub fn matches(&self, ifname: &str, netns: u32) -> bool {
        (self.interfaces.is_empty() || self.interfaces.contains(ifname))
            && (self.netns.is_empty() || self.netns.contains(&netns))
    }
}

/// Counts reported on exit; nothing the pipeline drops goes uncounted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub replies: u64,
    /// Events the filters excluded.
    pub filtered: u64,
    /// ARP frames that were not Ethernet/IPv4 request/reply.
    pub undecodable: u64,
    /// Records the kernel could not deliver (ring buffer full).
    pub lost: u64,
    /// Neighbour entries that failed to resolve.
    pub failures: u64,
    /// Requests whose sender IP is in none of the egress interface's subnets.
    pub foreign: u64,
    /// Address or sysctl changes lost because the event loop fell behind.
    pub changes_dropped: u64,
    /// Program runs the kernel skipped because the program was already running on that CPU
    /// (`recursion_misses`): events that may be missing.
    pub missed: u64,
}

/// A consumer of events: the terminal, JSON Lines, later trace files, pcapng and summaries.
pub trait Sink {
    fn arp(&mut self, ev: &ArpEvent, names: &mut NetnsNames) -> io::Result<()>;
    fn neigh_failed(&mut self, _ev: &NeighFailed, _names: &mut NetnsNames) -> io::Result<()> {
        Ok(())
    }
    /// An address or sysctl change in a watched namespace.
    fn facts_change(&mut self, _ch: &FactsChange, _names: &mut NetnsNames) -> io::Result<()> {
        Ok(())
    }
    /// Whether this sink reads only what [`ArpView`] holds. When every sink does, a replay
    /// parses brief events and hands them to `arp_brief` instead of `arp`.
    fn reads_brief(&self) -> bool {
        false
    }
    fn arp_brief(&mut self, _ev: &ArpView<'_>, _names: &mut NetnsNames) -> io::Result<()> {
        debug_assert!(false, "arp_brief on a sink that needs full events");
        Ok(())
    }
    /// Called after each batch so output reaches pipes promptly.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Called every `--summary-interval` seconds.
    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Called once at the end with the final counts.
    fn finish(&mut self, _counters: &Counters) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the source should keep going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `-c` reached, or the output went away (closed pipe).
    Stop,
}

pub struct Pipeline {
    pub filter: Filter,
    /// Stop after this many requests (`-c`).
    pub count: Option<u64>,
    pub names: NetnsNames,
    pub sinks: Vec<Box<dyn Sink>>,
    pub counters: Counters,
    /// Where requests' namespace facts come from; without it, only events that carry their
    /// facts (read back from a trace) get a verdict.
    pub facts: Option<Box<dyn FactsSource>>,
    /// `--foreign-only`: pass on only requests with a foreign sender.
    pub foreign_only: bool,
    /// Time of the last record handed to the sinks, to keep change records in time order.
    last_time: Time,
}

impl Pipeline {
    pub fn new(filter: Filter, count: Option<u64>, names: NetnsNames) -> Self {
        Pipeline {
            filter,
            count,
            names,
            sinks: Vec::new(),
            counters: Counters::default(),
            facts: None,
            foreign_only: false,
            last_time: Time(i128::MIN),
        }
    }

    pub fn skipped(&mut self, _why: Skip) {
        self.counters.undecodable += 1;
    }

    pub fn push(&mut self, mut ev: ArpEvent) -> io::Result<Flow> {
        if self.at_limit() {
            return Ok(Flow::Stop);
        }
        if !self.filter.matches(&ev.ifname, ev.netns) {
            self.counters.filtered += 1;
            return Ok(Flow::Continue);
        }
        if ev.netns_name.is_none() {
            ev.netns_name = self.names.name(ev.netns).map(str::to_owned);
        }
        if ev.op == ArpOp::Request && ev.verdict.is_none() {
            self.explain(&mut ev);
            // What the facts query noticed comes out before the request it explains.
            self.drain_changes_before(Some(ev.time))?;
            if Some(ev.netns) != self.names.own() {
                if let Some(r) = ev.verdict.as_mut().and_then(|v| v.remedy.as_mut()) {
                    // A name says where to run it; only unnamed namespaces need a path
                    // (a /proc scan, so not for every request of a named one).
                    let path = match ev.netns_name {
                        Some(_) => None,
                        None => crate::netns::find_path(ev.netns),
                    };
                    r.run_in_namespace(ev.netns, ev.netns_name.as_deref(), path.as_deref());
                }
            }
        }
        let foreign = ev.verdict.as_ref().is_some_and(|v| v.foreign_sender);
        if !self.admit(ev.op, ev.time, foreign) {
            return Ok(Flow::Continue);
        }
        for sink in &mut self.sinks {
            sink.arp(&ev, &mut self.names)?;
        }
        Ok(self.flow())
    }

    /// Whether every sink reads brief events, so a replay may parse only those fields.
    pub fn reads_brief(&self) -> bool {
        self.sinks.iter().all(|s| s.reads_brief())
    }

    /// `push` for an event read in brief: it carries its verdict, so nothing is looked up.
    pub fn push_brief(&mut self, ev: &BriefArp) -> io::Result<Flow> {
        if self.at_limit() {
            return Ok(Flow::Stop);
        }
        if !self.filter.matches(ev.ifname.as_str(), ev.netns) {
            self.counters.filtered += 1;
            return Ok(Flow::Continue);
        }
        let foreign = ev.verdict.is_some_and(|v| v.0);
        if !self.admit(ev.op, ev.time, foreign) {
            return Ok(Flow::Continue);
        }
        let name = match ev.netns_name {
            Some(_) => None,
            None => self.names.name(ev.netns).map(str::to_owned),
        };
        let view = ev.view(name.as_deref());
        for sink in &mut self.sinks {
            sink.arp_brief(&view, &mut self.names)?;
        }
        Ok(self.flow())
    }

    fn at_limit(&self) -> bool {
        self.count
            .is_some_and(|limit| self.counters.requests >= limit)
    }

    fn flow(&self) -> Flow {
        if self.at_limit() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Applies `--foreign-only` and counts what passes; false when the event is filtered.
    fn admit(&mut self, op: ArpOp, time: Time, foreign: bool) -> bool {
        if self.foreign_only && !foreign {
            self.counters.filtered += 1;
            return false;
        }
        self.counters.foreign += foreign as u64;
        self.last_time = self.last_time.max(time);
        match op {
            ArpOp::Request => self.counters.requests += 1,
            ArpOp::Reply => self.counters.replies += 1,
        }
        true
    }

    /// Attaches the verdict, and the facts it rests on, to a request. Facts the event already
    /// carries (a trace read back) win over the namespace's current ones.
    fn explain(&mut self, ev: &mut ArpEvent) {
        if ev.verdict.is_some() {
            return;
        }
        let facts = match (&ev.facts, &mut self.facts) {
            (Some(f), _) => Ok(f.to_ns(&ev.ifname)),
            (None, Some(src)) => {
                let mut r = src.facts(ev.netns, &ev.ifname);
                // A cached answer the kernel's own view contradicts is stale: ask again, which
                // also reports the change before this request.
                if let (Ok(f), Some(k)) = (&r, &ev.egress) {
                    if k.contradicts(f, &ev.ifname) {
                        r = src.facts_fresh(ev.netns, &ev.ifname);
                    }
                }
                r.map(|mut f| {
                    if let Some(k) = &ev.egress {
                        k.apply(&mut f, &ev.ifname);
                    }
                    f
                })
            }
            (None, None) => return,
        };
        match facts {
            Ok(f) => {
                ev.verdict = Some(explain::explain(ev, &f));
                if ev.facts.is_none() {
                    ev.facts = Some(EventFacts::from_ns(&f, &ev.ifname));
                }
            }
            Err(e) => ev.facts_error = Some(e),
        }
    }

    /// Lets sinks that report periodically (the summary) do so.
    pub fn tick(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.tick()?;
        }
        Ok(())
    }

    /// Passes on the changes the facts source noticed (live); called per request and on the
    /// event loop's one-second tick.
    pub fn drain_changes(&mut self) -> io::Result<()> {
        self.drain_changes_before(None)
    }

    /// A change's time is when a thread noticed it, which can be a little after the request
    /// it was read for, or before records already shown: it is moved into
    /// [last record, `before`] so the stream stays in time order.
    fn drain_changes_before(&mut self, before: Option<Time>) -> io::Result<()> {
        let changes = match self.facts.as_mut() {
            Some(f) => f.changes(),
            None => return Ok(()),
        };
        self.counters.changes_dropped =
            crate::facts::CHANGES_DROPPED.load(std::sync::atomic::Ordering::Relaxed);
        for mut c in changes {
            let mut t = c.time.max(self.last_time);
            if let Some(b) = before {
                t = t.min(b).max(self.last_time);
            }
            c.time = t;
            self.push_change(c)?;
        }
        Ok(())
    }

    /// A change record, live or read back. Only `--netns` applies: `-i` and `--foreign-only`
    /// select requests, while a request's explanation can rest on any interface's addresses.
    pub fn push_change(&mut self, mut ch: FactsChange) -> io::Result<()> {
        if !self.filter.netns.is_empty() && !self.filter.netns.contains(&ch.netns) {
            return Ok(());
        }
        if ch.netns_name.is_none() {
            ch.netns_name = self.names.name(ch.netns).map(str::to_owned);
        }
        self.last_time = self.last_time.max(ch.time);
        for sink in &mut self.sinks {
            sink.facts_change(&ch, &mut self.names)?;
        }
        Ok(())
    }

    pub fn push_failed(&mut self, mut ev: NeighFailed) -> io::Result<()> {
        let matches = (self.filter.interfaces.is_empty()
            || self.filter.interfaces.contains(&ev.ifname))
            && (self.filter.netns.is_empty() || self.filter.netns.contains(&ev.netns));
        if !matches {
            self.counters.filtered += 1;
            return Ok(());
        }
        self.counters.failures += 1;
        self.last_time = self.last_time.max(ev.time);
        if ev.netns_name.is_none() {
            ev.netns_name = self.names.name(ev.netns).map(str::to_owned);
        }
        for sink in &mut self.sinks {
            sink.neigh_failed(&ev, &mut self.names)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        Ok(())
    }

    pub fn finish(&mut self) -> io::Result<()> {
        self.drain_changes()?;
        for sink in &mut self.sinks {
            sink.flush()?;
            sink.finish(&self.counters)?;
        }
        Ok(())
    }
}

/// Whether an I/O error means "the reader went away" (`arp-trace | head`), which ends the
/// run quietly like tcpdump does rather than as a failure.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    // serde_json wraps the writer's error when a full buffer is written mid-object.
    e.kind() == io::ErrorKind::BrokenPipe
        || e.get_ref()
            .and_then(|i| i.downcast_ref::<serde_json::Error>())
            .and_then(serde_json::Error::io_error_kind)
            == Some(io::ErrorKind::BrokenPipe)
}

/// A writer that tolerates being shared by sinks through the pipeline's lifetime.
pub struct Output {
    inner: io::BufWriter<Box<dyn Write>>,
}

impl Output {
    pub fn stdout() -> Self {
        Output {
            inner: io::BufWriter::with_capacity(64 * 1024, Box::new(io::stdout())),
        }
    }
    pub fn new(w: Box<dyn Write>) -> Self {
        Output {
            inner: io::BufWriter::new(w),
        }
    }
    pub fn writer(&mut self) -> &mut impl Write {
        &mut self.inner
    }
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{frame, raw};
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Collect(Rc<RefCell<Vec<ArpEvent>>>);
    impl Sink for Collect {
        fn arp(&mut self, ev: &ArpEvent, _: &mut NetnsNames) -> io::Result<()> {
            self.0.borrow_mut().push(ev.clone());
            Ok(())
        }
    }

    fn ev(op: u16, ifname: &str, netns: u32) -> ArpEvent {
        let f = frame(
            op,
            [0xff; 6],
            [2, 0, 0, 0, 0, 1],
            [198, 51, 100, 10],
            [0; 6],
            [198, 51, 100, 20],
        );
        let mut e = ArpEvent::decode(&raw(&f, 14), 0).unwrap();
        e.ifname = ifname.into();
        e.netns = netns;
        e
    }

    fn pipeline(filter: Filter, count: Option<u64>) -> (Pipeline, Rc<RefCell<Vec<ArpEvent>>>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut p = Pipeline::new(filter, count, NetnsNames::with_dir("/nonexistent"));
        p.sinks.push(Box::new(Collect(seen.clone())));
        (p, seen)
    }

    #[test]
    fn filters_by_interface_and_namespace() {
        let filter = Filter {
            interfaces: ["eth3".to_string()].into(),
            netns: [10].into(),
        };
        let (mut p, seen) = pipeline(filter, None);
        for (i, n) in [("eth3", 10), ("eth5", 10), ("eth3", 11), ("eth3", 10)] {
            assert_eq!(p.push(ev(1, i, n)).unwrap(), Flow::Continue);
        }
        assert_eq!(seen.borrow().len(), 2);
        assert_eq!(p.counters.filtered, 2);
        assert_eq!(p.counters.requests, 2);
    }

    struct Fixed(Result<explain::NsFacts, String>);
    impl FactsSource for Fixed {
        fn facts(&mut self, _: u32, _: &str) -> Result<explain::NsFacts, String> {
            self.0.clone()
        }
    }

    use crate::explain::tests::seed_facts;

    #[test]
    fn requests_get_verdicts_and_foreign_only_keeps_foreign_ones() {
        let (mut p, seen) = pipeline(Filter::default(), None);
        p.facts = Some(Box::new(Fixed(Ok(seed_facts()))));
        p.foreign_only = true;
        let ok = ev(1, "eth3", 1);
        let mut foreign = ev(1, "eth3", 1);
        foreign.sender_ip = "203.0.113.10".parse().unwrap();
        foreign.trigger = Some(crate::explain::tests::trigger(
            "203.0.113.10",
            crate::attribution::Origin::Local,
        ));
        for e in [ok, foreign, ev(2, "eth3", 1)] {
            p.push(e).unwrap();
        }
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let v = seen[0].verdict.as_ref().unwrap();
        assert!(v.foreign_sender);
        assert_eq!(v.reason, explain::Reason::Announce0LocalSource);
        let f = seen[0].facts.as_ref().unwrap();
        assert_eq!(f.addrs, ["198.51.100.10/24"]);
        assert_eq!((p.counters.foreign, p.counters.filtered), (1, 2));
    }

    #[test]
    fn replies_get_no_verdict_and_missing_facts_are_said() {
        let (mut p, seen) = pipeline(Filter::default(), None);
        p.facts = Some(Box::new(Fixed(Err("namespace 1 is gone".into()))));
        p.push(ev(1, "eth3", 1)).unwrap();
        p.push(ev(2, "eth3", 1)).unwrap();
        let seen = seen.borrow();
        assert!(seen[0].verdict.is_none());
        assert_eq!(seen[0].facts_error.as_deref(), Some("namespace 1 is gone"));
        assert!(seen[1].verdict.is_none() && seen[1].facts_error.is_none());
        // An event carrying its facts is explained from them, with no facts source at all.
        let (mut p, seen) = pipeline(Filter::default(), None);
        let mut e = ev(1, "eth3", 1);
        e.facts = Some(EventFacts::from_ns(&seed_facts(), "eth3"));
        p.push(e).unwrap();
        let v = seen.borrow()[0].verdict.clone().unwrap();
        assert_eq!(v.reason, explain::Reason::SelectNoTrigger);
    }

    struct Changing(Vec<FactsChange>);
    impl FactsSource for Changing {
        fn facts(&mut self, _: u32, _: &str) -> Result<explain::NsFacts, String> {
            Ok(seed_facts())
        }
        fn changes(&mut self) -> Vec<FactsChange> {
            std::mem::take(&mut self.0)
        }
    }

    struct Order(Rc<RefCell<Vec<(String, Time)>>>);
    impl Sink for Order {
        fn arp(&mut self, ev: &ArpEvent, _: &mut NetnsNames) -> io::Result<()> {
            self.0.borrow_mut().push(("arp".into(), ev.time));
            Ok(())
        }
        fn facts_change(&mut self, c: &FactsChange, _: &mut NetnsNames) -> io::Result<()> {
            self.0
                .borrow_mut()
                .push((format!("{:?}", c.change), c.time));
            Ok(())
        }
    }

    #[test]
    fn changes_come_before_their_request_and_in_time_order() {
        use crate::facts::ChangeKind;
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut p = Pipeline::new(
            Filter::default(),
            None,
            NetnsNames::with_dir("/nonexistent"),
        );
        p.sinks.push(Box::new(Order(seen.clone())));
        // Noticed 5 ns after the request it was read for.
        let mut w = FactsChange::new(1, ChangeKind::Watched);
        w.time = Time(105);
        p.facts = Some(Box::new(Changing(vec![w])));
        let mut e = ev(1, "eth3", 1);
        e.time = Time(100);
        p.push(e).unwrap();
        // Noticed before a record already shown, drained by the tick.
        let mut a = FactsChange::new(1, ChangeKind::ArpAnnounce);
        a.time = Time(50);
        p.facts = Some(Box::new(Changing(vec![a])));
        p.drain_changes().unwrap();
        // Another namespace under --netns 1 is not shown.
        p.filter.netns = [1].into();
        p.push_change(FactsChange::new(2, ChangeKind::AddrAdded))
            .unwrap();
        assert_eq!(
            *seen.borrow(),
            [
                ("Watched".to_string(), Time(100)),
                ("arp".to_string(), Time(100)),
                ("ArpAnnounce".to_string(), Time(100))
            ]
        );
    }

    #[test]
    fn count_stops_after_n_requests_and_ignores_replies() {
        let (mut p, seen) = pipeline(Filter::default(), Some(2));
        assert_eq!(p.push(ev(1, "a", 1)).unwrap(), Flow::Continue);
        assert_eq!(p.push(ev(2, "a", 1)).unwrap(), Flow::Continue);
        assert_eq!(p.push(ev(1, "a", 1)).unwrap(), Flow::Stop);
        assert_eq!(p.push(ev(1, "a", 1)).unwrap(), Flow::Stop);
        assert_eq!(seen.borrow().len(), 3);
        assert_eq!((p.counters.requests, p.counters.replies), (2, 1));
    }
}
