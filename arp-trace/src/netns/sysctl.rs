//! `net.ipv4.conf.<conf>.*` of the calling thread's namespace: /proc/sys/net resolves against
//! the reading thread's namespace, so a thread inside a namespace reads that namespace's values.

/// The value of `net.ipv4.conf.<conf>.<name>`, when it exists and is a number. `conf` comes
/// from the kernel (interface names), so it is checked to stay inside the conf directory.
pub fn read_conf(conf: &str, name: &str) -> Option<i64> {
    if conf.is_empty() || conf.contains('/') || conf == "." || conf == ".." {
        return None;
    }
    let p = format!("/proc/sys/net/ipv4/conf/{conf}/{name}");
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// net.ipv4.conf.<conf>.arp_announce: an int in the kernel, any value (above 2 and below 0
/// act like 0, but max(all, dev) still compares them as ints).
pub fn read_announce(conf: &str) -> Option<i32> {
    read_conf(conf, "arp_announce").and_then(|v| i32::try_from(v).ok())
}

/// net.ipv4.conf.<conf>.route_localnet.
pub fn read_localnet(conf: &str) -> Option<bool> {
    read_conf(conf, "route_localnet").map(|v| v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_cannot_escape_the_conf_directory() {
        assert_eq!(read_announce("../../../../etc"), None);
        assert_eq!(read_announce(".."), None);
        assert_eq!(read_announce(""), None);
        assert!(read_conf("all", "arp_announce").is_some());
    }
}
