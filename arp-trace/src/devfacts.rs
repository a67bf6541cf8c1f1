//! What the kernel's sender choice depended on, as the BPF program read it from the egress
//! device while the ARP frame left: `arp_announce` (namespace `all` and device) and the
//! device's IPv4 addresses. Exact at the moment of the request, unlike anything read later.

use std::net::Ipv4Addr;

use arp_trace_common::{ArpXmitEvent, ADDR_SECONDARY};
use serde::{Deserialize, Serialize};

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
}
