//! rtnetlink, read by hand: a socket (subscribed to address and link changes, or not), one
//! dump request at a time, and the two messages arp-trace reads: RTM_NEWLINK (index and name)
//! and RTM_NEWADDR for IPv4 (address, prefix, scope, IFA_F_SECONDARY).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use arp_trace_model::IfAddr;

fn last_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// A namespace's links (ifindex -> name) and IPv4 addresses in the kernel's order, at most
/// `max_addrs` of them.
pub struct Dump {
    pub links: HashMap<u32, String>,
    /// The links with an L3 role: a VRF (its table) or a device enslaved to another.
    pub l3: HashMap<u32, L3>,
    pub addrs: Vec<IfAddr<'static>>,
}

/// What a link's RTM_NEWLINK says about its L3 domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L3 {
    /// `IFLA_MASTER`: the device this one is enslaved to (a VRF, a bridge, a bond).
    pub master: Option<u32>,
    /// `IFLA_VRF_TABLE` of a link of kind `vrf`.
    pub vrf_table: Option<u32>,
}

/// One RTM_NEWLINK.
#[derive(Debug, PartialEq, Eq)]
pub struct LinkMsg {
    pub index: u32,
    pub name: String,
    pub l3: L3,
}

/// Dumps the links and IPv4 addresses of the namespace `fd` was created in; `seq` numbers
/// the requests.
pub fn dump(fd: &OwnedFd, seq: &mut u32, max_addrs: usize) -> Result<Dump, String> {
    let mut links = HashMap::new();
    let mut l3 = HashMap::new();
    *seq += 1;
    for msg in dump_raw(fd, libc::RTM_GETLINK, libc::AF_UNSPEC as u8, *seq)? {
        if let Some(l) = parse_link(&msg) {
            links.insert(l.index, l.name);
            if l.l3 != L3::default() {
                l3.insert(l.index, l.l3);
            }
        }
    }
    *seq += 1;
    let mut addrs = Vec::new();
    for msg in dump_raw(fd, libc::RTM_GETADDR, libc::AF_INET as u8, *seq)? {
        if addrs.len() >= max_addrs {
            break;
        }
        if let Some((index, a)) = parse_addr(&msg) {
            // From the run's name table: every request's facts copy these addresses.
            let ifname = match links.get(&index) {
                Some(n) => arp_trace_model::intern::name(n),
                None => Cow::Owned(format!("if{index}")),
            };
            addrs.push(IfAddr { ifname, ..a });
        }
    }
    Ok(Dump { links, l3, addrs })
}

pub fn socket(groups: u32) -> Result<OwnedFd, String> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(last_err("netlink socket"));
    }
    // SAFETY: fd is fresh and ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zero is a valid start.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = groups;
    // SAFETY: binds a valid sockaddr_nl of its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc != 0 {
        return Err(last_err("netlink bind"));
    }
    let rcvbuf: libc::c_int = 1 << 20;
    // SAFETY: sets an int option from a valid int.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            4,
        )
    };
    Ok(fd)
}

const NLMSG_HDR: usize = 16;

/// Sends one dump request and returns each answer message's payload (after the header).
fn dump_raw(fd: &OwnedFd, kind: u16, family: u8, seq: u32) -> Result<Vec<Vec<u8>>, String> {
    // ifinfomsg is 16 bytes and ifaddrmsg 8; both start with the family.
    let body = if kind == libc::RTM_GETLINK { 16 } else { 8 };
    let mut req = vec![0u8; NLMSG_HDR + body];
    req[0..4].copy_from_slice(&((NLMSG_HDR + body) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    req[NLMSG_HDR] = family;
    // SAFETY: sends a valid buffer of its length to the kernel (default address).
    let n = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(last_err("netlink dump request"));
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into a valid buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("netlink dump: {e}"));
        }
        let mut data = &buf[..n as usize];
        while data.len() >= NLMSG_HDR {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
            let mseq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
            if len < NLMSG_HDR || len > data.len() {
                return Err("netlink dump: malformed message".to_string());
            }
            if mseq == seq {
                match ty as i32 {
                    libc::NLMSG_DONE => return Ok(out),
                    libc::NLMSG_ERROR => {
                        let code = data
                            .get(16..20)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .unwrap_or(0);
                        if code != 0 {
                            return Err(format!(
                                "netlink dump: {}",
                                io::Error::from_raw_os_error(-code)
                            ));
                        }
                        return Ok(out);
                    }
                    _ => out.push(data[NLMSG_HDR..len].to_vec()),
                }
            }
            data = &data[((len + 3) & !3).min(data.len())..];
        }
    }
}

/// (type, payload) of each rtattr in `b`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, payload))
    })
}

/// An RTM_NEWLINK payload: (ifindex, name).
pub fn parse_link(msg: &[u8]) -> Option<LinkMsg> {
    let index = i32::from_ne_bytes(msg.get(4..8)?.try_into().ok()?) as u32;
    let (mut name, mut l3) = (None, L3::default());
    let u32_of = |p: &[u8]| {
        p.get(..4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
    };
    for (ty, p) in attrs(msg.get(16..)?) {
        match ty {
            libc::IFLA_IFNAME => name = Some(arp_trace_model::kernel_name(p)),
            libc::IFLA_MASTER => l3.master = u32_of(p).filter(|&m| m != 0),
            libc::IFLA_LINKINFO => l3.vrf_table = vrf_table(p, u32_of),
            _ => {}
        }
    }
    Some(LinkMsg {
        index,
        name: name?,
        l3,
    })
}

const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VRF_TABLE: u16 = 1;

/// The table of a VRF from its IFLA_LINKINFO: kind "vrf", data { IFLA_VRF_TABLE }.
fn vrf_table(linkinfo: &[u8], u32_of: impl Fn(&[u8]) -> Option<u32>) -> Option<u32> {
    let kind = attrs(linkinfo).find(|(t, _)| *t == IFLA_INFO_KIND)?.1;
    if kind.split(|&c| c == 0).next() != Some(b"vrf") {
        return None;
    }
    let data = attrs(linkinfo).find(|(t, _)| *t == IFLA_INFO_DATA)?.1;
    let table = attrs(data).find(|(t, _)| *t == IFLA_VRF_TABLE)?.1;
    u32_of(table)
}

const IFA_F_SECONDARY: u32 = 0x01;

/// An RTM_NEWADDR payload for AF_INET: (ifindex, address with an empty ifname).
pub fn parse_addr(msg: &[u8]) -> Option<(u32, IfAddr<'static>)> {
    if msg.len() < 8 || msg[0] != libc::AF_INET as u8 {
        return None;
    }
    let (prefix_len, mut flags, scope) = (msg[1], msg[2] as u32, msg[3]);
    let index = u32::from_ne_bytes(msg[4..8].try_into().ok()?);
    let (mut local, mut address) = (None, None);
    for (ty, p) in attrs(&msg[8..]) {
        let ip = || p.get(..4).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        match ty {
            libc::IFA_LOCAL => local = ip(),
            libc::IFA_ADDRESS => address = ip(),
            libc::IFA_FLAGS if p.len() >= 4 => flags = u32::from_ne_bytes(p[..4].try_into().ok()?),
            _ => {}
        }
    }
    // IFA_LOCAL is the host's own address; IFA_ADDRESS differs only on point-to-point links,
    // where it is the peer the kernel matches targets against (inet_ifa_match()).
    let addr = local.or(address)?;
    let peer = address.filter(|&a| a != addr);
    Some((
        index,
        IfAddr {
            ifname: Cow::Borrowed(""),
            addr,
            prefix_len,
            scope: Some(scope),
            secondary: Some(flags & IFA_F_SECONDARY != 0),
            peer,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rta(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_rtnetlink_address_and_link_messages() {
        let mut m = vec![libc::AF_INET as u8, 24, 0, 0];
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend(rta(libc::IFA_ADDRESS, &[198, 51, 100, 99]));
        m.extend(rta(libc::IFA_LOCAL, &[198, 51, 100, 10]));
        m.extend(rta(
            libc::IFA_FLAGS,
            &(0x80u32 | IFA_F_SECONDARY).to_ne_bytes(),
        ));
        let (index, a) = parse_addr(&m).unwrap();
        assert_eq!(index, 7);
        assert_eq!(a.addr, Ipv4Addr::new(198, 51, 100, 10));
        // IFA_ADDRESS differs from IFA_LOCAL: a point-to-point peer.
        assert_eq!(a.peer, Some(Ipv4Addr::new(198, 51, 100, 99)));
        assert_eq!(
            (a.prefix_len, a.scope, a.secondary),
            (24, Some(0), Some(true))
        );
        m[0] = libc::AF_INET6 as u8;
        assert!(parse_addr(&m).is_none());

        let mut l = vec![0u8; 16];
        l[4..8].copy_from_slice(&7i32.to_ne_bytes());
        l.extend(rta(libc::IFLA_MTU, &1500u32.to_ne_bytes()));
        l.extend(rta(libc::IFLA_IFNAME, b"eth3\0"));
        let plain = parse_link(&l).unwrap();
        assert_eq!((plain.index, &*plain.name), (7, "eth3"));
        assert_eq!(plain.l3, L3::default());
        // Truncated attributes end the walk instead of reading past the message.
        l.truncate(l.len() - 6);
        assert_eq!(parse_link(&l), None);
    }

    #[test]
    fn reads_vrf_tables_and_masters_from_link_messages() {
        let link = |index: i32, name: &[u8], extra: Vec<u8>| {
            let mut l = vec![0u8; 16];
            l[4..8].copy_from_slice(&index.to_ne_bytes());
            l.extend(rta(libc::IFLA_IFNAME, name));
            l.extend(extra);
            l
        };
        let mut data = rta(IFLA_VRF_TABLE, &10u32.to_ne_bytes());
        let mut info = rta(IFLA_INFO_KIND, b"vrf\0");
        info.extend(rta(IFLA_INFO_DATA, &data));
        let vrf = parse_link(&link(5, b"blue\0", rta(libc::IFLA_LINKINFO, &info))).unwrap();
        assert_eq!(
            vrf.l3,
            L3 {
                master: None,
                vrf_table: Some(10)
            }
        );
        let member = parse_link(&link(
            6,
            b"eth3\0",
            rta(libc::IFLA_MASTER, &5u32.to_ne_bytes()),
        ));
        assert_eq!(member.unwrap().l3.master, Some(5));
        // A bridge's data has no VRF table, whatever its attribute numbers.
        data = rta(IFLA_VRF_TABLE, &10u32.to_ne_bytes());
        let mut info = rta(IFLA_INFO_KIND, b"bridge\0");
        info.extend(rta(IFLA_INFO_DATA, &data));
        let br = parse_link(&link(7, b"br0\0", rta(libc::IFLA_LINKINFO, &info))).unwrap();
        assert_eq!(br.l3, L3::default());
    }
}
