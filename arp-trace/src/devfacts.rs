//! What the kernel's sender choice depended on, as the BPF program read it from the egress
//! device while the ARP frame left: `arp_announce` (namespace `all` and device) and the
//! device's IPv4 addresses. Exact at the moment of the request, unlike anything read later.

use std::net::Ipv4Addr;

use arp_trace_common::{ArpXmitEvent, ADDR_SECONDARY};
use serde::{Deserialize, Serialize};

use crate::explain::{IfAddr, NsFacts};

/// One IPv4 address of the egress device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevAddr {
    pub addr: Ipv4Addr,
    pub prefixlen: u8,
    /// RT_SCOPE_* (0 global, 253 link, 254 host).
    pub scope: u8,
    pub secondary: bool,
}

impl DevAddr {
    /// Whether `ip` is inside this address's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefixlen == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefixlen.min(32)))
        };
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// The egress device's facts at transmit time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevFacts {
    /// `net.ipv4.conf.all.arp_announce` of the device's namespace.
    pub announce_all: Option<i32>,
    /// `net.ipv4.conf.<dev>.arp_announce`; `None` also when the device has no IPv4 config.
    pub announce_dev: Option<i32>,
    /// In the kernel's order: primary addresses first.
    pub addrs: Vec<DevAddr>,
    /// The device had more addresses than the program copies.
    pub truncated: bool,
}

impl DevFacts {
    pub fn from_raw(raw: &ArpXmitEvent) -> DevFacts {
        let known = |v: i32| (v >= 0).then_some(v);
        let n = (raw.n_addrs as usize).min(raw.addrs.len());
        DevFacts {
            announce_all: known(raw.announce_all),
            announce_dev: known(raw.announce_dev),
            addrs: raw.addrs[..n]
                .iter()
                .map(|a| DevAddr {
                    addr: Ipv4Addr::from(a.addr),
                    prefixlen: a.prefixlen,
                    scope: a.scope,
                    secondary: a.flags & ADDR_SECONDARY != 0,
                })
                .collect(),
            truncated: raw.addrs_more != 0,
        }
    }

    /// Puts what the kernel held at transmit time over facts read later for the namespace:
    /// both `arp_announce` values and the egress device's own addresses.
    pub fn apply(&self, ns: &mut NsFacts, ifname: &str) {
        let clamp = |v: i32| v.clamp(0, u8::MAX as i32) as u8;
        if let Some(all) = self.announce_all {
            ns.announce_all = clamp(all);
        }
        if let Some(dev) = self.announce_dev {
            ns.announce_dev.insert(ifname.to_string(), clamp(dev));
        }
        if self.truncated || self.announce_dev.is_none() {
            // A cut list, or no IPv4 config read from the device: the namespace's list is
            // better than nothing.
            return;
        }
        let at = ns
            .addrs
            .iter()
            .position(|a| a.ifname == ifname)
            .unwrap_or(ns.addrs.len());
        ns.addrs.retain(|a| a.ifname != ifname);
        let mine = self.addrs.iter().map(|a| IfAddr {
            ifname: ifname.to_string(),
            addr: a.addr,
            prefix_len: a.prefixlen,
            scope: Some(a.scope),
            secondary: Some(a.secondary),
        });
        let at = at.min(ns.addrs.len());
        ns.addrs.splice(at..at, mine);
    }

    /// Whether facts read for the namespace disagree with what the kernel held: a sysctl or
    /// an egress address changed since they were read.
    pub fn contradicts(&self, ns: &NsFacts, ifname: &str) -> bool {
        if self
            .announce_all
            .is_some_and(|a| i32::from(ns.announce_all) != a)
        {
            return true;
        }
        let Some(dev) = self.announce_dev else {
            return false; // nothing read from the device to compare with
        };
        if ns.announce_dev.get(ifname).map(|d| i32::from(*d)) != Some(dev) {
            return true;
        }
        if self.truncated {
            return false;
        }
        let theirs = ns
            .addrs
            .iter()
            .filter(|a| a.ifname == ifname)
            .map(|a| (a.addr, a.prefix_len));
        !theirs.eq(self.addrs.iter().map(|a| (a.addr, a.prefixlen)))
    }

    /// `IN_DEV_ARP_ANNOUNCE()`: the larger of `all` and the device's value.
    pub fn effective_announce(&self) -> Option<i32> {
        match (self.announce_all, self.announce_dev) {
            (Some(a), Some(d)) => Some(a.max(d)),
            (a, d) => a.or(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_facts_and_takes_the_larger_announce() {
        let mut raw: ArpXmitEvent = unsafe { std::mem::zeroed() };
        raw.announce_all = 2;
        raw.announce_dev = 0;
        raw.n_addrs = 2;
        raw.addrs[0].addr = [198, 51, 100, 10];
        raw.addrs[0].prefixlen = 24;
        raw.addrs[1].addr = [198, 51, 100, 11];
        raw.addrs[1].prefixlen = 24;
        raw.addrs[1].flags = ADDR_SECONDARY;
        let f = DevFacts::from_raw(&raw);
        assert_eq!(f.effective_announce(), Some(2));
        assert_eq!(f.addrs.len(), 2);
        assert!(f.addrs[1].secondary && !f.addrs[0].secondary);
        assert!(f.addrs[0].contains("198.51.100.20".parse().unwrap()));
        assert!(!f.addrs[0].contains("203.0.113.10".parse().unwrap()));
        assert!(!f.truncated);
        raw.announce_dev = -1;
        raw.n_addrs = 0;
        let f = DevFacts::from_raw(&raw);
        assert_eq!((f.announce_dev, f.effective_announce()), (None, Some(2)));
        assert!(f.addrs.is_empty());
    }

    #[test]
    fn kernel_facts_override_what_was_read_later() {
        let a = |ifname: &str, ip: &str, p: u8| IfAddr {
            ifname: ifname.into(),
            addr: ip.parse().unwrap(),
            prefix_len: p,
            scope: None,
            secondary: None,
        };
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
        let kernel = DevFacts {
            announce_all: Some(1),
            announce_dev: Some(2),
            addrs: vec![DevAddr {
                addr: "198.51.100.10".parse().unwrap(),
                prefixlen: 24,
                scope: 0,
                secondary: false,
            }],
            truncated: false,
        };
        kernel.apply(&mut ns, "eth3");
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
        assert!(!kernel.contradicts(&ns, "eth3"));
        let mut later = kernel.clone();
        later.announce_dev = Some(0);
        assert!(later.contradicts(&ns, "eth3"));
        let mut later = kernel.clone();
        later.addrs[0].prefixlen = 25;
        assert!(later.contradicts(&ns, "eth3"));
        let mut unknown = kernel;
        unknown.announce_dev = None;
        unknown.addrs.clear();
        assert!(!unknown.contradicts(&ns, "eth3"));
    }
}
