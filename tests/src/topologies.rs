//! The fixed topologies the tests share: a lone namespace, the dual-homed seed (one server
//! on two nets), a router between two nets, and a switch (a bridge hosts plug into).

use std::cell::Cell;

use crate::{bridge_port, veth, Netns};

/// A lone namespace holding both ends of a veth pair: eth3 (198.51.100.10/24, up) and eth4
/// (no address, up). UDP to any other 198.51.100.x makes the kernel ARP on eth3 with nobody
/// answering: one request now, two retransmits 1 s apart.
pub fn lone(role: &str) -> Netns {
    lone_in(Netns::new(role))
}

/// [`lone`] with IPv6 off before its links come up: no duplicate address detection, so
/// nothing but what the test sends.
pub fn lone_ipv4_only(role: &str) -> Netns {
    let ns = Netns::new(role);
    ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
    ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
    lone_in(ns)
}

fn lone_in(ns: Netns) -> Netns {
    ns.ip(&[
        "link", "add", "eth3", "type", "veth", "peer", "name", "eth4",
    ]);
    ns.ip(&["addr", "add", "198.51.100.10/24", "dev", "eth3"]);
    ns.ip(&["link", "set", "eth3", "up"]);
    ns.ip(&["link", "set", "eth4", "up"]);
    ns.wait_link_up("eth3");
    ns
}

pub const SRV_ETH3_IP: &str = "198.51.100.10";
pub const SRV_ETH5_IP: &str = "203.0.113.10";
pub const C3_IP: &str = "198.51.100.20";
pub const C5_IP: &str = "203.0.113.20";

/// The seed topology:
///
/// ```text
///   c3 eth0 198.51.100.20/24 ── eth3 198.51.100.10/24  srv  eth5 203.0.113.10/24 ── eth0 203.0.113.20/24 c5
/// ```
pub struct Seed {
    pub srv: Netns,
    pub c3: Netns,
    pub c5: Netns,
}

impl Seed {
    pub fn new() -> Seed {
        let srv = Netns::new("s");
        let c3 = Netns::new("c3");
        let c5 = Netns::new("c5");
        veth(
            &srv,
            "eth3",
            "198.51.100.10/24",
            &c3,
            "eth0",
            "198.51.100.20/24",
        );
        veth(
            &srv,
            "eth5",
            "203.0.113.10/24",
            &c5,
            "eth0",
            "203.0.113.20/24",
        );
        Seed { srv, c3, c5 }
    }

    /// Lets c3 answer packets from srv's net-5 address (203.0.113.10) through srv, as a TCP
    /// peer must: c3 only knows 198.51.100.0/24 otherwise.
    pub fn route_c3_to_net5(&self) {
        self.c3
            .ip(&["route", "add", "203.0.113.0/24", "via", SRV_ETH3_IP]);
    }
}

pub const CLIENT_IP: &str = "192.0.2.2";
pub const ROUTER_IN_IP: &str = "192.0.2.1";
pub const ROUTER_OUT_IP: &str = "198.51.100.1";
pub const HOST_IP: &str = "198.51.100.2";

/// A router between two nets, with `ip_forward=1` in the router's namespace only:
///
/// ```text
///   client eth0 192.0.2.2/24 ── eth1 192.0.2.1/24  router  eth2 198.51.100.1/24 ── eth0 198.51.100.2/24 host
/// ```
pub struct Routed {
    pub client: Netns,
    pub router: Netns,
    pub host: Netns,
}

impl Routed {
    pub fn new() -> Routed {
        let client = Netns::new("cl");
        let router = Netns::new("r");
        let host = Netns::new("h");
        veth(
            &router,
            "eth1",
            "192.0.2.1/24",
            &client,
            "eth0",
            "192.0.2.2/24",
        );
        veth(
            &router,
            "eth2",
            "198.51.100.1/24",
            &host,
            "eth0",
            "198.51.100.2/24",
        );
        client.ip(&["route", "add", "default", "via", ROUTER_IN_IP]);
        host.ip(&["route", "add", "default", "via", ROUTER_OUT_IP]);
        router.sysctl("net/ipv4/ip_forward", "1");
        Routed {
            client,
            router,
            host,
        }
    }
}

impl Default for Routed {
    fn default() -> Self {
        Routed::new()
    }
}

impl Default for Seed {
    fn default() -> Self {
        Seed::new()
    }
}

/// A switch: namespace `br` holding bridge br0 (up, no address), and hosts plugged into its
/// ports p1, p2, ...
pub struct Switch {
    pub br: Netns,
    ports: Cell<u32>,
}

impl Switch {
    pub fn new() -> Switch {
        let br = Netns::new("br");
        br.ip(&["link", "add", "br0", "type", "bridge"]);
        br.ip(&["link", "set", "br0", "up"]);
        Switch {
            br,
            ports: Cell::new(0),
        }
    }

    /// Plugs `host`'s `dev` (given `addr`, a CIDR) into the next port: the port's name.
    pub fn plug(&self, host: &Netns, dev: &str, addr: &str) -> String {
        self.ports.set(self.ports.get() + 1);
        let port = format!("p{}", self.ports.get());
        bridge_port(&self.br, "br0", &port, host, dev, addr);
        port
    }
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new()
    }
}
