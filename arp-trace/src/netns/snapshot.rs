//! The trace header's snapshot: IPv4 addresses and ARP sysctls of every interface in every
//! network namespace that exists at start: the tracer's own, every `ip netns` one, and those
//! held only by a process (opened through /proc/PID/ns/net), at most [`MAX_NAMESPACES`].
//! Namespaces first seen later are covered by the `watched` record the watchers emit. Read
//! with the same rtnetlink dump and sysctl reads the watchers use.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use arp_trace_model::{IfSnapshot, NsSnapshot, Snapshot, Sysctls};

use super::find::NETNS_RUN_DIR;
use super::{enter, rtnetlink, sysctl};

/// Namespaces read into one header; beyond it they are left to `watched` records.
pub const MAX_NAMESPACES: usize = 256;

/// Addresses read per namespace.
const MAX_ADDRS: usize = 4096;

fn sysctls(conf: &str) -> Sysctls {
    Sysctls {
        arp_announce: sysctl::read_conf(conf, "arp_announce"),
        arp_filter: sysctl::read_conf(conf, "arp_filter"),
        arp_ignore: sysctl::read_conf(conf, "arp_ignore"),
    }
}

/// The calling thread's current namespace.
fn this_namespace(inode: u32) -> NsSnapshot {
    let failed = |e: String| NsSnapshot {
        error: Some(e),
        netns: inode,
        ..Default::default()
    };
    let dump = match rtnetlink::socket(0).and_then(|fd| rtnetlink::dump(&fd, &mut 0, MAX_ADDRS)) {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let mut interfaces = BTreeMap::new();
    for name in dump.links.values() {
        let s = sysctls(name);
        // Only devices with an IPv4 configuration have these sysctls.
        if s == Sysctls::default() {
            continue;
        }
        let ipv4 = dump
            .addrs
            .iter()
            .filter(|a| a.ifname == name.as_str())
            .map(|a| a.cidr())
            .collect();
        interfaces.insert(name.clone(), IfSnapshot { sysctls: s, ipv4 });
    }
    NsSnapshot {
        all: Some(sysctls("all")),
        error: None,
        interfaces: Some(interfaces),
        netns: inode,
    }
}

/// Reads one namespace from a thread that joins it, leaving the tracer's own thread alone.
fn other_namespace(path: &Path, inode: u32) -> NsSnapshot {
    enter::run_in(path, inode, move || this_namespace(inode)).unwrap_or_else(|e| NsSnapshot {
        error: Some(e),
        netns: inode,
        ..Default::default()
    })
}

/// The namespaces named in /run/netns, by name order: (inode, name, path), each inode once
/// (its first name), at most [`MAX_NAMESPACES`].
fn named() -> Vec<(u32, String, PathBuf)> {
    let mut out: Vec<(u32, String, PathBuf)> = Vec::new();
    let Ok(rd) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return out;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= MAX_NAMESPACES {
            break;
        }
        let Ok(ino) = super::find::inode_of(&e.path()) else {
            continue;
        };
        if out.iter().all(|(i, _, _)| *i != ino) {
            let name = arp_trace_model::kernel_name(e.file_name().as_bytes());
            out.push((ino, name, e.path()));
        }
    }
    out
}

/// The `ip netns` names by inode, as [`take`] sees them, without reading any namespace.
pub fn names() -> BTreeMap<u32, String> {
    named()
        .into_iter()
        .map(|(ino, name, _)| (ino, name))
        .collect()
}

/// The snapshot for the trace header, and the `ip netns` names it saw.
pub fn take(own: Option<u32>) -> (Snapshot, BTreeMap<u32, String>) {
    let mut namespaces = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (ino, name, path) in named() {
        let v = if Some(ino) == own {
            this_namespace(ino)
        } else {
            other_namespace(&path, ino)
        };
        names.insert(ino, name.clone());
        namespaces.insert(name, v);
    }
    if let Some(own) = own {
        if !names.contains_key(&own) {
            namespaces.insert(own.to_string(), this_namespace(own));
        }
    }
    for (ino, path) in super::find::process_namespaces(&names) {
        if namespaces.len() >= MAX_NAMESPACES {
            break;
        }
        if Some(ino) == own {
            continue;
        }
        let v = other_namespace(&path, ino);
        // The process may have left meanwhile; its namespace is then not worth a row.
        if v.error.is_none() {
            namespaces.insert(ino.to_string(), v);
        }
    }
    (Snapshot { namespaces }, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_has_loopback_and_all() {
        let own = super::super::find::own_inode();
        let (v, _) = take(own);
        let ns = v
            .namespaces
            .values()
            .find(|n| Some(n.netns) == own)
            .unwrap_or_else(|| panic!("{own:?} missing in {v:?}"));
        assert!(ns.all.unwrap().arp_announce.is_some(), "{ns:?}");
        let lo = &ns.interfaces.as_ref().unwrap()["lo"];
        assert_eq!(lo.ipv4[0].to_string(), "127.0.0.1/8", "{ns:?}");
    }
}
