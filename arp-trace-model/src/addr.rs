//! IPv4 addresses with their prefix: [`Cidr`] is the one subnet type (every containment test
//! goes through it), and [`IfAddr`] the one address-of-an-interface type, whether netlink, the
//! BPF program or a trace file reported it.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// RT_SCOPE_LINK: inet_select_addr(.., RT_SCOPE_LINK) skips anything narrower.
pub const RT_SCOPE_LINK: u8 = 253;
/// RT_SCOPE_HOST, what 127/8 addresses get.
pub const RT_SCOPE_HOST: u8 = 254;

/// An address and prefix length, written `198.51.100.10/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Cidr {
        Cidr { addr, prefix_len }
    }

    pub fn mask(&self) -> u32 {
        match self.prefix_len.min(32) {
            0 => 0,
            p => u32::MAX << (32 - p),
        }
    }

    /// Whether `a` is in this subnet: the kernel's inet_ifa_match().
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (u32::from(a) ^ u32::from(self.addr)) & self.mask() == 0
    }

    /// The subnet itself, `198.51.100.0/24`.
    pub fn network(&self) -> Cidr {
        Cidr {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix_len: self.prefix_len.min(32),
        }
    }
}

impl Cidr {
    /// `198.51.100.10/24` without core::fmt: requests carry several, and explanations name
    /// them.
    pub fn text<'b>(&self, buf: &'b mut [u8; 19]) -> &'b str {
        let mut a = [0u8; 15];
        let n = ipv4_text(self.addr, &mut a).len();
        buf[..n].copy_from_slice(&a[..n]);
        buf[n] = b'/';
        let len = n + 1 + put_decimal(self.prefix_len, &mut buf[n + 1..]);
        std::str::from_utf8(&buf[..len]).unwrap_or_default()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text(&mut [0; 19]))
    }
}

/// Writes `v` in decimal at the start of `out` (room for 3 digits); returns the length.
fn put_decimal(v: u8, out: &mut [u8]) -> usize {
    let digits = [v / 100, v / 10 % 10, v % 10];
    let skip = if v >= 100 {
        0
    } else if v >= 10 {
        1
    } else {
        2
    };
    for (o, d) in out.iter_mut().zip(&digits[skip..]) {
        *o = b'0' + d;
    }
    3 - skip
}

/// `a.b.c.d`, as `Ipv4Addr`'s Display writes it, without core::fmt.
pub fn ipv4_text(a: Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let mut n = 0;
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        n += put_decimal(o, &mut buf[n..]);
    }
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

/// Where the address writers below put their bytes: a growing line, or a fixed buffer.
pub(crate) trait Put {
    fn put(&mut self, b: u8);
    fn put_all(&mut self, s: &[u8]) {
        for &b in s {
            self.put(b);
        }
    }
}

impl Put for Vec<u8> {
    fn put(&mut self, b: u8) {
        self.push(b);
    }
}

/// A fixed buffer long enough for any address's text (`ffff:...:ffff`, `::ffff:a.b.c.d`).
struct Fixed<'b> {
    buf: &'b mut [u8; 45],
    n: usize,
}

impl Put for Fixed<'_> {
    fn put(&mut self, b: u8) {
        // The longest text is 45 bytes; nothing writes past it.
        if let Some(slot) = self.buf.get_mut(self.n) {
            *slot = b;
            self.n += 1;
        }
    }
}

/// Appends `a.b.c.d`, the same text as [`ipv4_text`], with no UTF-8 check of digits.
pub(crate) fn put_ipv4(a: Ipv4Addr, out: &mut impl Put) {
    // Byte by byte: a copy of 1-3 bytes through memcpy costs more than the pushes, and a
    // storm's records hold a dozen addresses each.
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.put(b'.');
        }
        if o >= 100 {
            out.put(b'0' + o / 100);
        }
        if o >= 10 {
            out.put(b'0' + o / 10 % 10);
        }
        out.put(b'0' + o % 10);
    }
}

/// Appends the text `Ipv6Addr`'s Display writes (RFC 5952: lowercase hex, the first longest
/// run of two or more zero groups as `::`, IPv4-mapped addresses as `::ffff:a.b.c.d`) without
/// core::fmt, which a storm of neighbour solicitations paid for at every address.
pub(crate) fn put_ipv6(a: Ipv6Addr, out: &mut impl Put) {
    if let Some(v4) = a.to_ipv4_mapped() {
        out.put_all(b"::ffff:");
        put_ipv4(v4, out);
        return;
    }
    let g = a.segments();
    let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
    for (i, &x) in g.iter().enumerate() {
        if x == 0 {
            if run_len == 0 {
                run = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best, best_len) = (run, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    let groups = |out: &mut dyn FnMut(u8), part: &[u16]| {
        for (i, &x) in part.iter().enumerate() {
            if i > 0 {
                out(b':');
            }
            let mut shift = 12;
            while shift > 0 && x >> shift == 0 {
                shift -= 4;
            }
            loop {
                out(b"0123456789abcdef"[usize::from((x >> shift) & 0xf)]);
                if shift == 0 {
                    break;
                }
                shift -= 4;
            }
        }
    };
    if best_len > 1 {
        groups(&mut |b| out.put(b), &g[..best]);
        out.put_all(b"::");
        groups(&mut |b| out.put(b), &g[best + best_len..]);
    } else {
        groups(&mut |b| out.put(b), &g);
    }
}

/// Either family's text, as Display writes it, without core::fmt: for explanations that
/// name addresses in every record of a storm.
pub fn ip_text(a: IpAddr, buf: &mut [u8; 45]) -> &str {
    let mut f = Fixed { buf, n: 0 };
    match a {
        IpAddr::V4(a) => put_ipv4(a, &mut f),
        IpAddr::V6(a) => put_ipv6(a, &mut f),
    }
    let n = f.n;
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

/// An address whose Display is [`ip_text`]: one `write_str` instead of a `write!` per group.
pub struct FastIp(pub IpAddr);

impl fmt::Display for FastIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(ip_text(self.0, &mut [0; 45]))
    }
}

/// `serialize_with` for IPv4 addresses: the same text as serde's, faster.
pub fn ser_ipv4<S: Serializer>(a: &Ipv4Addr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(ipv4_text(*a, &mut [0; 15]))
}

/// `serialize_with` for addresses of either family: IPv4 the fast way, IPv6 as serde writes it.
pub fn ser_ip<S: Serializer>(a: &std::net::IpAddr, s: S) -> Result<S::Ok, S::Error> {
    match a {
        std::net::IpAddr::V4(v4) => ser_ipv4(v4, s),
        std::net::IpAddr::V6(_) => a.serialize(s),
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("bad address/prefix {s:?}");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix_len: u8 = p.parse().map_err(|_| bad())?;
        if prefix_len > 32 {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix_len })
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text(&mut [0; 19]))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::borrowed_str(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One IPv4 address of an interface as `ip -4 addr` lists it, in the kernel's order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IfAddr<'a> {
    #[serde(borrow)]
    pub ifname: Cow<'a, str>,
    #[serde(serialize_with = "ser_ipv4")]
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The kernel's ifa_scope (0 universe, 253 link, 254 host) when read from the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
    /// IFA_F_SECONDARY as the kernel set it, when read from the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<bool>,
    /// The peer of a point-to-point address (`ip addr add A peer B/N`): `ifa_address`, which
    /// the kernel matches targets against instead of the local address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Ipv4Addr>,
}

impl IfAddr<'_> {
    /// The local address and prefix (`198.51.100.10/24`), as `ip addr` shows it.
    pub fn cidr(&self) -> Cidr {
        Cidr::new(self.addr, self.prefix_len)
    }

    /// The prefix the kernel matches against: the peer's when there is one (`ifa_address`
    /// under `ifa_mask`).
    pub fn subnet(&self) -> Cidr {
        Cidr::new(self.peer.unwrap_or(self.addr), self.prefix_len)
    }

    /// Whether `a` is in this address's subnet: the kernel's inet_ifa_match(), which tests
    /// `ifa_address` (the peer of a point-to-point address, else the local one).
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.subnet().contains(a)
    }

    /// Whether `a` is this address or in its subnet: not foreign to the link.
    pub fn covers(&self, a: Ipv4Addr) -> bool {
        a == self.addr || self.contains(a)
    }

    pub fn into_owned(self) -> IfAddr<'static> {
        IfAddr {
            ifname: Cow::Owned(self.ifname.into_owned()),
            addr: self.addr,
            prefix_len: self.prefix_len,
            scope: self.scope,
            secondary: self.secondary,
            peer: self.peer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let c: Cidr = "198.51.100.10/24".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(198, 51, 100, 7)));
        assert!(!c.contains(Ipv4Addr::new(203, 0, 113, 10)));
        assert_eq!(c.network().to_string(), "198.51.100.0/24");
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains(Ipv4Addr::new(1, 2, 3, 4)));
        for bad in ["junk", "1.2.3.4", "1.2.3.4/33", "1.2.3/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"198.51.100.10/24\"");
    }

    /// The fast text is the standard library's, for every octet value and prefix length.
    #[test]
    fn fast_text_matches_display() {
        for o in 0..=255u8 {
            let a = Ipv4Addr::new(o, 255 - o, o / 3, 7);
            assert_eq!(ipv4_text(a, &mut [0; 15]), a.to_string());
            let c = Cidr::new(a, o % 33);
            assert_eq!(c.to_string(), format!("{a}/{}", o % 33));
        }
        let t = serde_json::to_string(&Cidr::new(Ipv4Addr::new(0, 0, 0, 0), 0)).unwrap();
        assert_eq!(t, "\"0.0.0.0/0\"");
    }
}
