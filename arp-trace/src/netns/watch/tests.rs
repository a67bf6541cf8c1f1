use super::*;

#[test]
fn address_changes_are_what_differs_between_dumps() {
    use arp_trace_model::if_addr;
    let addr = |i: &str, a: &str, p: u8| if_addr(i, a.parse().unwrap(), p);
    let old = vec![
        addr("eth3", "198.51.100.10", 24),
        addr("eth3", "198.51.100.11", 24),
    ];
    let new = vec![
        addr("eth3", "198.51.100.10", 24),
        addr("eth5", "203.0.113.10", 24),
        addr("eth3", "198.51.100.11", 25),
    ];
    let got: Vec<String> = addr_changes(9, &old, &new)
        .iter()
        .map(|c| {
            let sign = if c.change == ChangeKind::AddrAdded {
                '+'
            } else {
                '-'
            };
            let (a, p) = (c.addr.unwrap(), c.prefix_len.unwrap());
            format!("{} {sign}{a}/{p}", c.subject().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        [
            "eth3 -198.51.100.11/24",
            "eth5 +203.0.113.10/24",
            "eth3 +198.51.100.11/25"
        ]
    );
    assert!(addr_changes(9, &new, &new).is_empty());
}

/// The queue holds MAX_PENDING_CHANGES; past that changes are dropped and counted, in
/// order, and draining it makes room again.
#[test]
fn changes_past_the_cap_are_dropped_and_counted() {
    let mut w = Watchers::new();
    let r = Reporter {
        ino: 7,
        changes: w.changes_tx.clone(),
        gen: Arc::new(AtomicU64::new(0)),
    };
    let change = |n: usize| FactsChange {
        conf: Some(format!("eth{n}")),
        ..FactsChange::new(7, ChangeKind::ArpAnnounce)
    };
    for n in 0..MAX_PENDING_CHANGES + 3 {
        r.report(change(n));
    }
    assert_eq!(w.changes_dropped(), 3);
    let got = w.changes();
    assert_eq!(got.len(), MAX_PENDING_CHANGES);
    assert!(got
        .iter()
        .enumerate()
        .all(|(n, c)| c.conf.as_deref() == Some(format!("eth{n}").as_str())));
    assert_eq!(
        r.gen.load(Ordering::Acquire),
        MAX_PENDING_CHANGES as u64 + 3
    );
    // Drained: there is room again.
    r.report(change(0));
    assert_eq!(w.changes().len(), 1);
    assert_eq!(w.changes_dropped(), 3);
}

/// The tracer's own namespace, read through the same thread machinery (needs no root:
/// entering one's own namespace is permitted only to root, so skip otherwise).
#[test]
fn reads_own_namespace_when_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let own = super::super::find::own_inode().unwrap();
    let mut w = Watchers::new();
    let f = w.facts(own, "lo").unwrap();
    assert!(
        f.addrs
            .iter()
            .any(|a| a.ifname == "lo" && a.addr.is_loopback() && a.scope == Some(254)),
        "{f:?}"
    );
    let all: i32 = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/arp_announce")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(f.announce_all, all);
    assert!(f.announce_dev.contains_key("lo"));
}
