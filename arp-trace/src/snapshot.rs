//! The trace header's per-namespace snapshot: IPv4 addresses and ARP sysctls of every
//! interface in every network namespace that exists at start: the tracer's own, every
//! `ip netns` one, and those held only by a process (opened through /proc/PID/ns/net, as
//! facts.rs does), at most [`MAX_NAMESPACES`]. Namespaces first seen later are covered by the
//! `watched` facts_change record facts.rs emits when it starts watching them. Kept as JSON so
//! the trace format does not depend on facts.rs's types.
//!
//! Shape: `{"namespaces": {"<name or inode>": {"netns": inode, "all": {sysctls},
//! "interfaces": {"eth3": {"ipv4": ["198.51.100.10/24"], "arp_announce": 0, ...}}}}}`

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::netns::{self, NETNS_RUN_DIR};

const SYSCTLS: [&str; 3] = ["arp_announce", "arp_ignore", "arp_filter"];

/// Namespaces read into one header; beyond it they are left to `watched` records.
pub const MAX_NAMESPACES: usize = 256;

/// One path per namespace held only by processes (not a /run/netns entry), by inode.
fn process_namespaces(skip: &BTreeMap<u32, String>) -> BTreeMap<u32, std::path::PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let p = e.path().join("ns/net");
        if let Ok(ino) = netns::inode_of(&p) {
            if !skip.contains_key(&ino) {
                out.entry(ino).or_insert(p);
            }
        }
    }
    out
}

fn sysctls(dev: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for s in SYSCTLS {
        let p = format!("/proc/sys/net/ipv4/conf/{dev}/{s}");
        if let Some(v) = std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        {
            m.insert(s.into(), v.into());
        }
    }
    m
}

/// IPv4 addresses with prefix length per interface, from the calling thread's namespace.
fn addresses() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below; every pointer is checked before use.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || (*ifa.ifa_addr).sa_family as i32 != libc::AF_INET {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let addr = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            let prefix = if ifa.ifa_netmask.is_null() {
                32
            } else {
                let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                u32::from_be(m.sin_addr.s_addr).count_ones()
            };
            out.entry(name).or_default().push(format!("{ip}/{prefix}"));
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// The facts of the calling thread's current namespace.
fn this_namespace(inode: u32) -> Value {
    let mut interfaces = Map::new();
    let addrs = addresses();
    if let Ok(rd) = std::fs::read_dir("/proc/sys/net/ipv4/conf") {
        let mut devs: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|d| d != "all" && d != "default")
            .collect();
        devs.sort();
        for d in devs {
            let mut m = sysctls(&d);
            m.insert(
                "ipv4".into(),
                json!(addrs.get(&d).cloned().unwrap_or_default()),
            );
            interfaces.insert(d, Value::Object(m));
        }
    }
    json!({"netns": inode, "all": Value::Object(sysctls("all")), "interfaces": interfaces})
}

/// Reads one namespace from a thread that joins it, leaving the tracer's own thread alone.
fn other_namespace(path: &Path, inode: u32) -> Value {
    let path = path.to_path_buf();
    let h = std::thread::spawn(move || -> Result<Value, String> {
        let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        // SAFETY: setns on this thread only; the thread ends after reading.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(this_namespace(inode))
    });
    match h.join() {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({"netns": inode, "error": e}),
        Err(_) => json!({"netns": inode, "error": "reader thread failed"}),
    }
}

/// The snapshot for the trace header, and the `ip netns` names it saw.
pub fn take(own: Option<u32>) -> (Value, BTreeMap<u32, String>) {
    let mut namespaces = Map::new();
    let mut names = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(NETNS_RUN_DIR) {
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if namespaces.len() >= MAX_NAMESPACES {
                break;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ino) = netns::inode_of(&e.path()) else {
                continue;
            };
            if names.contains_key(&ino) {
                continue;
            }
            names.insert(ino, name.clone());
            let v = if Some(ino) == own {
                this_namespace(ino)
            } else {
                other_namespace(&e.path(), ino)
            };
            namespaces.insert(name, v);
        }
    }
    if let Some(own) = own {
        if !names.contains_key(&own) {
            namespaces.insert(own.to_string(), this_namespace(own));
        }
    }
    for (ino, path) in process_namespaces(&names) {
        if namespaces.len() >= MAX_NAMESPACES {
            break;
        }
        if Some(ino) == own {
            continue;
        }
        let v = other_namespace(&path, ino);
        // The process may have left meanwhile; its namespace is then not worth a row.
        if v.get("error").is_none() {
            namespaces.insert(ino.to_string(), v);
        }
    }
    (json!({ "namespaces": namespaces }), names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_has_loopback_and_all() {
        let own = netns::inode_of(Path::new("/proc/self/ns/net")).ok();
        let (v, _) = take(own);
        let key = own.unwrap().to_string();
        let ns = v["namespaces"]
            .as_object()
            .unwrap()
            .values()
            .find(|n| n["netns"] == own.unwrap())
            .unwrap_or_else(|| panic!("{key} missing in {v}"));
        assert!(ns["all"]["arp_announce"].is_i64(), "{ns}");
        assert_eq!(ns["interfaces"]["lo"]["ipv4"][0], "127.0.0.1/8", "{ns}");
    }
}
