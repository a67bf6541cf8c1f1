//! What the BPF program read from the egress device as the frame left ([`EgressFacts`]:
//! `arp_announce` of `all` and the device, the device's IPv4 addresses) laid over facts read
//! for the namespace a moment later, and the test for when those later facts are stale.

use arp_trace_model::{EgressFacts, IfAddr, NsFacts};

/// Puts what the kernel held at transmit time over facts read later for the namespace: both
/// `arp_announce` values and the egress device's own addresses.
pub fn apply(k: &EgressFacts, ns: &mut NsFacts<'_>, ifname: &str) {
    let clamp = |v: i32| v.clamp(0, u8::MAX as i32) as u8;
    if let Some(all) = k.announce_all {
        ns.announce_all = clamp(all);
    }
    if let Some(dev) = k.announce_dev {
        ns.announce_dev.insert(ifname.to_string(), clamp(dev));
    }
    if k.truncated || k.announce_dev.is_none() {
        // A cut list, or no IPv4 config read from the device: the namespace's list is better
        // than nothing.
        return;
    }
    let at = ns
        .addrs
        .iter()
        .position(|a| a.ifname == ifname)
        .unwrap_or(ns.addrs.len());
    ns.addrs.retain(|a| a.ifname != ifname);
    let mine = k.addrs.iter().map(|a| IfAddr {
        ifname: ifname.to_string().into(),
        ..a.clone()
    });
    let at = at.min(ns.addrs.len());
    ns.addrs.splice(at..at, mine);
}

/// Whether facts read for the namespace disagree with what the kernel held: a sysctl or an
/// egress address changed since they were read.
pub fn contradicts(k: &EgressFacts, ns: &NsFacts<'_>, ifname: &str) -> bool {
    if k.announce_all
        .is_some_and(|a| i32::from(ns.announce_all) != a)
    {
        return true;
    }
    let Some(dev) = k.announce_dev else {
        return false; // nothing read from the device to compare with
    };
    if ns.announce_dev.get(ifname).map(|d| i32::from(*d)) != Some(dev) {
        return true;
    }
    if k.truncated {
        return false;
    }
    let theirs = ns.addrs_of(ifname).map(|a| (a.addr, a.prefix_len));
    !theirs.eq(k.addrs.iter().map(|a| (a.addr, a.prefix_len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arp_trace_model::if_addr;

    #[test]
    fn kernel_facts_override_what_was_read_later() {
        let a = |ifname: &str, ip: &str, p: u8| if_addr(ifname, ip.parse().unwrap(), p);
        let mut ns = NsFacts {
            announce_all: 0,
            announce_dev: [("eth3".to_string(), 0u8)].into_iter().collect(),
            addrs: vec![
                a("lo", "127.0.0.1", 8),
                a("eth3", "198.51.100.10", 24),
                a("eth3", "198.51.100.11", 24),
                a("eth5", "203.0.113.10", 24),
            ],
        };
        let kernel = EgressFacts {
            announce_all: Some(1),
            announce_dev: Some(2),
            addrs: vec![IfAddr {
                scope: Some(0),
                secondary: Some(false),
                ..a("eth3", "198.51.100.10", 24)
            }],
            truncated: false,
        };
        apply(&kernel, &mut ns, "eth3");
        assert_eq!((ns.announce_all, ns.announce_dev["eth3"]), (1, 2));
        let names: Vec<String> = ns
            .addrs
            .iter()
            .map(|a| format!("{}:{}", a.ifname, a.addr))
            .collect();
        assert_eq!(
            names,
            ["lo:127.0.0.1", "eth3:198.51.100.10", "eth5:203.0.113.10"]
        );
        // After applying, they agree; a changed sysctl or address contradicts.
        assert!(!contradicts(&kernel, &ns, "eth3"));
        let mut later = kernel.clone();
        later.announce_dev = Some(0);
        assert!(contradicts(&later, &ns, "eth3"));
        let mut later = kernel.clone();
        later.addrs[0].prefix_len = 25;
        assert!(contradicts(&later, &ns, "eth3"));
        let mut unknown = kernel;
        unknown.announce_dev = None;
        unknown.addrs.clear();
        assert!(!contradicts(&unknown, &ns, "eth3"));
    }
}
