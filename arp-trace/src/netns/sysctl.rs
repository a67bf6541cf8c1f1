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

/// net.ipv4.conf.<conf>.arp_announce.
pub fn read_announce(conf: &str) -> Option<u8> {
    read_conf(conf, "arp_announce").and_then(|v| u8::try_from(v).ok())
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
