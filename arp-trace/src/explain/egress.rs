//! What the BPF program read from the egress device as the frame left ([`EgressFacts`]:
//! `arp_announce`, `route_localnet` and `arp_notify` of `all` and the device, the device's
//! IPv4 addresses, the devices it could borrow from) laid over facts read for the namespace a
//! moment later, and the test for when those later facts are stale.

use std::sync::Arc;

use arp_trace_model::{EgressFacts, IfAddr, Lender, NsFacts};

use super::ctx::lendable;
use super::SharedFacts;

/// Puts what the kernel held at transmit time over facts read later for the namespace: the
/// sysctls, the egress device's own addresses, and the devices that can lend an address in
/// the kernel's order (named by the namespace's links, what each lends by its addresses; a
/// device the links do not know is left out and the list marked cut).
pub fn apply(k: &EgressFacts, ns: &mut NsFacts<'_>, ifname: &str) {
    if let Some(all) = k.announce_all {
        ns.announce_all = all;
    }
    // Every request comes here: the device's key is nearly always there already, and a new
    // String for it per request was a measurable share of a storm's CPU.
    if let Some(dev) = k.announce_dev {
        set(&mut ns.announce_dev, ifname, dev);
    }
    if let Some(all) = k.localnet_all {
        ns.localnet_all = all;
    }
    if let Some(dev) = k.localnet_dev {
        set(&mut ns.localnet_dev, ifname, dev);
    }
    ns.arp_notify = notify(k);
    if let Some(walk) = &k.walk {
        let mut cut = k.walk_cut;
        let mut lenders = Vec::new();
        for ifindex in walk {
            let Some(name) = ns.ifname_of(*ifindex) else {
                cut = true;
                continue;
            };
            if let Some(a) = lendable(ns, name) {
                lenders.push(Lender {
                    ifname: name.to_string(),
                    addr: a.addr,
                });
            }
        }
        ns.lenders = Some(lenders);
        ns.lenders_cut = cut;
    }
    if k.truncated || k.announce_dev.is_none() {
        // A cut list, or no IPv4 config read from the device: the namespace's list is better
        // than nothing.
        return;
    }
    if holds_exactly(&ns.addrs, &k.addrs, ifname) {
        // What the splice below would give back: the usual case, left as it is.
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

/// The results of [`apply_shared`] for the last few (facts, kernel's view, device) it was
/// given: in a storm every request of a namespace has the same three, and copying the facts
/// for each cost more than explaining the request. Several, because requests from several
/// namespaces interleave: with one entry, a storm from four namespaces missed nearly always.
#[derive(Default)]
pub struct Applied(Vec<(SharedFacts, EgressFacts, String, SharedFacts)>);

/// Entries [`Applied`] keeps; the oldest goes first.
const APPLIED: usize = 32;

impl Applied {
    /// What `apply_shared(k, ns, ifname)` gives.
    pub fn apply(&mut self, k: &EgressFacts, ns: SharedFacts, ifname: &str) -> SharedFacts {
        // The facts are the same when they are the same allocation: `Applied` holds it, so
        // its address cannot be reused for others meanwhile.
        if let Some((_, _, _, out)) = self
            .0
            .iter()
            .rev()
            .find(|(src, kernel, dev, _)| Arc::ptr_eq(src, &ns) && dev == ifname && kernel == k)
        {
            return Arc::clone(out);
        }
        let mut out = Arc::clone(&ns);
        apply_shared(k, &mut out, ifname);
        if self.0.len() == APPLIED {
            self.0.remove(0);
        }
        self.0
            .push((ns, k.clone(), ifname.to_string(), Arc::clone(&out)));
        out
    }
}

/// [`apply`] to facts shared with a cache, copied only when the kernel's view changes them:
/// the usual request finds them agreeing.
pub fn apply_shared(k: &EgressFacts, ns: &mut SharedFacts, ifname: &str) {
    if changes(k, ns, ifname) {
        apply(k, Arc::make_mut(ns), ifname);
    }
}

/// Whether [`apply`] would change `ns`: false only when it certainly would not.
fn changes(k: &EgressFacts, ns: &NsFacts<'_>, ifname: &str) -> bool {
    k.announce_all.is_some_and(|a| ns.announce_all != a)
        || k.announce_dev
            .is_some_and(|d| ns.announce_dev.get(ifname) != Some(&d))
        || k.localnet_all.is_some_and(|a| ns.localnet_all != a)
        || k.localnet_dev
            .is_some_and(|d| ns.localnet_dev.get(ifname) != Some(&d))
        || ns.arp_notify != notify(k)
        || k.walk.is_some()
        || !(k.truncated || k.announce_dev.is_none() || holds_exactly(&ns.addrs, &k.addrs, ifname))
}

/// `arp_notify` as the device sees it: IN_DEV_ARP_NOTIFY() is `all || dev`.
fn notify(k: &EgressFacts) -> Option<bool> {
    match (k.notify_all, k.notify_dev) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

fn set<V>(map: &mut std::collections::BTreeMap<String, V>, key: &str, v: V) {
    match map.get_mut(key) {
        Some(old) => *old = v,
        None => {
            map.insert(key.to_string(), v);
        }
    }
}

/// Whether `ifname`'s addresses in `addrs` are one run equal to `kernel`'s (whose names are
/// not compared: they become `ifname`).
fn holds_exactly(addrs: &[IfAddr<'_>], kernel: &[IfAddr<'_>], ifname: &str) -> bool {
    let at = addrs
        .iter()
        .position(|a| a.ifname == ifname)
        .unwrap_or(addrs.len());
    let Some(run) = addrs.get(at..at + kernel.len()) else {
        return false;
    };
    let same = |a: &IfAddr<'_>, b: &IfAddr<'_>| {
        // Every field by name: one added to IfAddr must be added here.
        let IfAddr {
            ifname: _,
            addr,
            prefix_len,
            scope,
            secondary,
            peer,
        } = b;
        a.ifname == ifname
            && (a.addr, a.prefix_len, a.scope, a.secondary, a.peer)
                == (*addr, *prefix_len, *scope, *secondary, *peer)
    };
    run.iter().zip(kernel).all(|(a, b)| same(a, b))
        && !addrs[at + kernel.len()..]
            .iter()
            .any(|a| a.ifname == ifname)
}

/// Whether facts read for the namespace disagree with what the kernel held: a sysctl or an
/// egress address changed since they were read.
pub fn contradicts(k: &EgressFacts, ns: &NsFacts<'_>, ifname: &str) -> bool {
    if k.announce_all.is_some_and(|a| ns.announce_all != a) {
        return true;
    }
    let Some(dev) = k.announce_dev else {
        return false; // nothing read from the device to compare with
    };
    if ns.announce_dev.get(ifname) != Some(&dev) {
        return true;
    }
    if k.walk
        .iter()
        .flatten()
        .any(|ifindex| ns.ifname_of(*ifindex).is_none())
    {
        return true; // a device the facts do not know yet
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
            announce_dev: [("eth3".to_string(), 0)].into_iter().collect(),
            addrs: vec![
                a("lo", "127.0.0.1", 8),
                a("eth3", "198.51.100.10", 24),
                a("eth3", "198.51.100.11", 24),
                a("eth5", "203.0.113.10", 24),
            ],
            ..Default::default()
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
            localnet_all: Some(false),
            localnet_dev: Some(true),
            notify_all: Some(false),
            notify_dev: Some(false),
            walk: None,
            walk_cut: false,
        };
        apply(&kernel, &mut ns, "eth3");
        assert_eq!((ns.announce_all, ns.announce_dev["eth3"]), (1, 2));
        assert!(ns.localnet("eth3") && !ns.localnet("eth5"));
        assert_eq!(ns.arp_notify, Some(false));
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

    /// Leaving the list alone when it already holds the kernel's is the same as replacing it,
    /// whatever the layout: runs in or out of order, split by another device, or different.
    #[test]
    fn kept_addresses_are_the_ones_a_splice_gives() {
        let a = |ifname: &str, ip: &str, p: u8| if_addr(ifname, ip.parse().unwrap(), p);
        let (e1, e2) = (
            a("eth3", "198.51.100.10", 24),
            a("eth3", "198.51.100.11", 24),
        );
        let (lo, e5) = (a("lo", "127.0.0.1", 8), a("eth5", "203.0.113.10", 24));
        let sec = IfAddr {
            secondary: Some(true),
            ..e2.clone()
        };
        let peer = IfAddr {
            peer: Some("198.51.100.1".parse().unwrap()),
            ..e1.clone()
        };
        let layouts = [
            vec![lo.clone(), e1.clone(), e2.clone(), e5.clone()],
            vec![e1.clone(), lo.clone(), e2.clone()],
            vec![lo.clone(), e2.clone(), e1.clone()],
            vec![lo.clone(), e5.clone()],
            vec![e1.clone()],
            vec![],
        ];
        let kernels = [
            vec![],
            vec![e1.clone()],
            vec![e1.clone(), e2.clone()],
            vec![e2.clone(), e1.clone()],
            vec![e1.clone(), sec],
            vec![peer],
            vec![IfAddr {
                ifname: "".into(),
                ..e1.clone()
            }],
        ];
        for addrs in &layouts {
            for k in &kernels {
                let kernel = EgressFacts {
                    announce_all: None,
                    announce_dev: Some(0),
                    addrs: k.clone(),
                    truncated: false,
                    localnet_all: None,
                    localnet_dev: None,
                    notify_all: None,
                    notify_dev: None,
                    walk: None,
                    walk_cut: false,
                };
                let mut ns = NsFacts {
                    addrs: addrs.clone(),
                    ..Default::default()
                };
                apply(&kernel, &mut ns, "eth3");
                let mut want = addrs.clone();
                let at = want.iter().position(|a| a.ifname == "eth3");
                want.retain(|a| a.ifname != "eth3");
                let at = at.unwrap_or(want.len()).min(want.len());
                let mine = k.iter().map(|a| IfAddr {
                    ifname: "eth3".into(),
                    ..a.clone()
                });
                want.splice(at..at, mine);
                assert_eq!(ns.addrs, want, "{addrs:?} with {k:?}");
            }
        }
    }

    /// Shared facts are copied only when the kernel's view changes them, and end up as
    /// `apply` leaves an unshared copy, over random mixes of what agrees and what does not.
    #[test]
    fn shared_facts_end_up_as_applied_ones() {
        let a = |ifname: &str, ip: &str, p: u8| if_addr(ifname, ip.parse().unwrap(), p);
        let (e1, e2) = (
            a("eth3", "198.51.100.10", 24),
            a("eth3", "198.51.100.11", 24),
        );
        let lo = a("lo", "127.0.0.1", 8);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut pick = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut kept, mut copied) = (0, 0);
        for _ in 0..20_000 {
            let opt_i = |v: u64| [None, Some(0), Some(2)][v as usize];
            let opt_b = |v: u64| [None, Some(false), Some(true)][v as usize];
            let addrs = |v: u64| match v {
                0 => vec![],
                1 => vec![e1.clone()],
                _ => vec![e1.clone(), e2.clone()],
            };
            let kernel = EgressFacts {
                announce_all: opt_i(pick(3)),
                announce_dev: opt_i(pick(3)),
                addrs: addrs(pick(3)),
                truncated: pick(4) == 0,
                localnet_all: opt_b(pick(3)),
                localnet_dev: opt_b(pick(3)),
                notify_all: opt_b(pick(3)),
                notify_dev: opt_b(pick(3)),
                walk: (pick(4) == 0).then(Vec::new),
                walk_cut: false,
            };
            let mut ns_addrs = vec![lo.clone()];
            ns_addrs.extend(addrs(pick(3)));
            let ns = NsFacts {
                announce_all: [0, 2][pick(2) as usize],
                announce_dev: opt_i(pick(3))
                    .map(|d| ("eth3".to_string(), d))
                    .into_iter()
                    .collect(),
                addrs: ns_addrs,
                localnet_all: pick(2) == 0,
                localnet_dev: opt_b(pick(3))
                    .map(|d| ("eth3".to_string(), d))
                    .into_iter()
                    .collect(),
                arp_notify: opt_b(pick(3)),
                ..Default::default()
            };
            let mut want = ns.clone();
            apply(&kernel, &mut want, "eth3");
            let cache = std::sync::Arc::new(ns);
            let mut got = std::sync::Arc::clone(&cache);
            apply_shared(&kernel, &mut got, "eth3");
            assert_eq!(*got, want, "{kernel:?}");
            if std::sync::Arc::ptr_eq(&got, &cache) {
                kept += 1;
            } else {
                copied += 1;
            }
        }
        // Both ways were taken.
        assert!(kept > 100 && copied > 100, "{kept} {copied}");
    }

    /// The memo gives what applying afresh gives, whichever facts, kernel view and device
    /// come next, and reuses its answer when all three repeat.
    #[test]
    fn the_last_application_is_reused_only_for_the_same_inputs() {
        let a = |ifname: &str, ip: &str, p: u8| if_addr(ifname, ip.parse().unwrap(), p);
        let ns = |all: i32| {
            Arc::new(NsFacts {
                announce_all: all,
                addrs: vec![a("lo", "127.0.0.1", 8), a("eth3", "198.51.100.10", 24)],
                ..Default::default()
            })
        };
        // Two equal facts in different allocations, and a third that differs.
        let facts = [ns(0), ns(0), ns(1)];
        let kernel = |all: Option<i32>, addr: &str| EgressFacts {
            announce_all: all,
            announce_dev: Some(0),
            addrs: vec![a("eth3", addr, 24)],
            truncated: false,
            localnet_all: None,
            localnet_dev: None,
            notify_all: Some(false),
            notify_dev: None,
            walk: None,
            walk_cut: false,
        };
        let kernels = [
            kernel(None, "198.51.100.10"),
            kernel(Some(2), "198.51.100.10"),
            kernel(None, "198.51.100.99"),
        ];
        let mut memo = Applied::default();
        let mut seed = 7u64;
        // 18 combinations, fewer than the memo keeps: each is computed once, then reused.
        let mut first: std::collections::HashMap<(usize, usize, &str), SharedFacts> =
            Default::default();
        let mut reused = 0;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let (f, k) = ((seed >> 33) as usize % 3, (seed >> 40) as usize % 3);
            let dev = ["eth3", "eth4"][(seed >> 50) as usize % 2];
            let got = memo.apply(&kernels[k], Arc::clone(&facts[f]), dev);
            let mut want = (*facts[f]).clone();
            apply(&kernels[k], &mut want, dev);
            assert_eq!(*got, want);
            match first.get(&(f, k, dev)) {
                Some(out) => {
                    assert!(Arc::ptr_eq(out, &got));
                    reused += 1;
                }
                None => {
                    first.insert((f, k, dev), got);
                }
            }
        }
        assert_eq!(reused, 2000 - first.len());
    }

    #[test]
    fn lenders_are_named_by_ifindex_and_unknown_ones_cut_the_list() {
        use arp_trace_model::if_addr;
        let link = |name: &str, ifindex: u32| arp_trace_model::Link {
            ifname: name.to_string(),
            ifindex: Some(ifindex),
            master: None,
            vrf_table: None,
        };
        let mut ns = NsFacts {
            links: vec![
                link("lo", 1),
                link("eth5", 9),
                link("eth7", 4),
                link("eth8", 5),
            ],
            addrs: vec![
                if_addr("lo", "127.0.0.1".parse().unwrap(), 8),
                if_addr("eth5", "203.0.113.10".parse().unwrap(), 24),
                if_addr("eth7", "192.0.2.7".parse().unwrap(), 24),
            ],
            ..Default::default()
        };
        let kernel = EgressFacts {
            announce_all: Some(0),
            announce_dev: None,
            addrs: vec![],
            truncated: false,
            localnet_all: None,
            localnet_dev: None,
            notify_all: None,
            notify_dev: None,
            // The kernel's list order: eth5 (ifindex 9) before eth7 (ifindex 4); lo and eth8
            // have nothing to lend.
            walk: Some(vec![1, 9, 5, 4]),
            walk_cut: false,
        };
        apply(&kernel, &mut ns, "eth3");
        let names: Vec<&str> = ns.lenders.iter().flatten().map(|l| &*l.ifname).collect();
        assert_eq!(names, ["eth5", "eth7"]);
        assert!(!ns.lenders_cut);
        assert_eq!(ns.arp_notify, None);
        let mut unknown = kernel;
        unknown.walk = Some(vec![12]);
        assert!(contradicts(&unknown, &ns, "eth3") || unknown.announce_dev.is_none());
        apply(&unknown, &mut ns, "eth3");
        assert!(ns.lenders_cut && ns.lenders.as_ref().unwrap().is_empty());
    }
}
