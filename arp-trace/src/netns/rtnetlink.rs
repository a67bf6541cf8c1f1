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
    pub addrs: Vec<IfAddr<'static>>,
}

/// Dumps the links and IPv4 addresses of the namespace `fd` was created in; `seq` numbers
/// the requests.
pub fn dump(fd: &OwnedFd, seq: &mut u32, max_addrs: usize) -> Result<Dump, String> {
    let mut links = HashMap::new();
    *seq += 1;
    for msg in dump_raw(fd, libc::RTM_GETLINK, libc::AF_UNSPEC as u8, *seq)? {
        if let Some((index, name)) = parse_link(&msg) {
            links.insert(index, name);
        }
    }
    *seq += 1;
    let mut addrs = Vec::new();
    for msg in dump_raw(fd, libc::RTM_GETADDR, libc::AF_INET as u8, *seq)? {
        if addrs.len() >= max_addrs {
            break;
        }
        if let Some((index, a)) = parse_addr(&msg) {
            let ifname = links
                .get(&index)
                .cloned()
                .unwrap_or_else(|| format!("if{index}"));
            addrs.push(IfAddr {
                ifname: Cow::Owned(ifname),
                ..a
            });
        }
    }
    Ok(Dump { links, addrs })
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
pub fn parse_link(msg: &[u8]) -> Option<(u32, String)> {
    let index = i32::from_ne_bytes(msg.get(4..8)?.try_into().ok()?) as u32;
    let name = attrs(msg.get(16..)?)
        .find(|(t, _)| *t == libc::IFLA_IFNAME)?
        .1;
    Some((index, arp_trace_model::kernel_name(name)))
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
    // IFA_LOCAL is the host's own address; IFA_ADDRESS differs only on point-to-point links.
    let addr = local.or(address)?;
    Some((
        index,
        IfAddr {
            ifname: Cow::Borrowed(""),
            addr,
            prefix_len,
            scope: Some(scope),
            secondary: Some(flags & IFA_F_SECONDARY != 0),
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
        assert_eq!(parse_link(&l), Some((7, "eth3".to_string())));
        // Truncated attributes end the walk instead of reading past the message.
        l.truncate(l.len() - 6);
        assert_eq!(parse_link(&l), None);
    }
}
