//! End-to-end: the kernel rules behind a sender address that a naive model (and arp-trace
//! before issue 13) got wrong, each in a topology of its own where the two answers differ.
//! The sender every test waits for is the one the kernel's code writes (the function is named
//! in each test, Debian 6.1.192 sources); the test then checks arp-trace's reason and words.
//! VRF needs the `vrf` module: on a host kernel without it that test says so and returns, and
//! the VM suite runs it on Debian's 6.1 and 6.12.

use arp_trace_e2e::*;

#[test]
#[ignore = "entry point of helper processes, not a test"]
fn helper_process() {
    helper_main()
}

fn ipv4(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

/// The request from `ns` that asks for `target` with sender `sender`.
fn request(t: &Tracer, ns: &Netns, sender: &str, target: &str) -> Value {
    t.wait_for(
        |v| is_request(v) && from_ns(v, ns) && v["sender_ip"] == sender && v["target_ip"] == target,
        EVENT_TIMEOUT,
    )[0]
    .clone()
}

fn assert_says(v: &Value, words: &[&str]) {
    let why = s(v, "explanation");
    for w in words {
        assert!(why.contains(w), "{w:?} not in {why:?}");
    }
}

/// A veth pair with both ends in `ns`, up: `dev` carries the traffic, `dev`p answers nothing.
fn pair(ns: &Netns, dev: &str) {
    let peer = format!("{dev}p");
    ns.ip(&["link", "add", dev, "type", "veth", "peer", "name", &peer]);
    ns.ip(&["link", "set", &peer, "up"]);
    ns.ip(&["link", "set", dev, "up"]);
}

/// eth3 with no address and a route to 198.51.100.0/24, arp_announce=2 everywhere: the
/// kernel's only path is inet_select_addr()'s borrow (no_in_dev).
fn addressless_eth3(ns: &Netns) {
    ns.set_announce("all", 2);
    pair(ns, "eth3");
    ns.wait_link_up("eth3");
    ns.ip(&["route", "add", "198.51.100.0/24", "dev", "eth3"]);
}

#[test]
fn a_borrowed_address_is_never_link_scope() {
    // in_dev_select_addr(): the first primary with `ifa_scope != RT_SCOPE_LINK && ifa_scope <=
    // RT_SCOPE_LINK`. eth4's first primary is link scope, so the kernel lends 203.0.113.10.
    let ns = Netns::new("kb");
    addressless_eth3(&ns);
    pair(&ns, "eth4");
    ns.ip(&[
        "addr",
        "add",
        "192.0.2.5/24",
        "scope",
        "link",
        "dev",
        "eth4",
    ]);
    ns.ip(&["addr", "add", "203.0.113.10/24", "dev", "eth4"]);
    let first = ns.ip(&["-4", "-o", "addr", "show", "dev", "eth4"]);
    assert!(
        first.find("192.0.2.5") < first.find("203.0.113.10"),
        "the link-scope address must come first: {first}"
    );
    let t = Tracer::start(&["--json", "--netns", ns.name()]);
    ns.send_udp(None, udp("198.51.100.20"));
    let ev = request(&t, &ns, "203.0.113.10", "198.51.100.20");
    assert_eq!(s(&ev, "reason"), "select_no_address_on_dev", "{ev}");
    assert_says(&ev, &["from eth4", "never a link-scope one"]);
    assert_eq!(ev["lenders"][0]["ifname"], "eth4", "{ev}");
    t.stop();
}

#[test]
fn the_borrow_takes_the_first_device_in_the_kernels_list_not_by_ifindex() {
    // for_each_netdev_rcu() walks net->dev_base_head. eth5 leaves the namespace and comes back:
    // it keeps its ifindex (lower than eth7's) but is appended to the list's tail, so the
    // kernel reaches eth7 first; netlink dumps (and a naive model) go by ifindex.
    let ns = Netns::new("ko");
    let away = Netns::new("koa");
    addressless_eth3(&ns);
    pair(&ns, "eth5");
    pair(&ns, "eth7");
    let (i5, i7) = (ns.ifindex("eth5"), ns.ifindex("eth7"));
    assert!(i5 < i7, "eth5 {i5} eth7 {i7}");
    ns.ip(&["link", "set", "eth5", "netns", away.name()]);
    away.ip(&["link", "set", "eth5", "netns", ns.name()]);
    assert_eq!(ns.ifindex("eth5"), i5, "eth5 kept its ifindex");
    ns.ip(&["link", "set", "eth5", "up"]);
    ns.ip(&["addr", "add", "203.0.113.10/24", "dev", "eth5"]);
    ns.ip(&["addr", "add", "192.0.2.7/24", "dev", "eth7"]);
    let t = Tracer::start(&["--json", "--netns", ns.name()]);
    ns.send_udp(None, udp("198.51.100.20"));
    let ev = request(&t, &ns, "192.0.2.7", "198.51.100.20");
    assert_eq!(s(&ev, "reason"), "select_no_address_on_dev", "{ev}");
    assert_says(&ev, &["from eth7", "eth7 is the first that has one"]);
    let lenders: Vec<&str> = ev["lenders"]
        .as_array()
        .unwrap_or_else(|| panic!("no lenders: {ev}"))
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(lenders, ["eth7", "eth5"], "{ev}");
    t.stop();
}

#[test]
fn a_peer_address_is_chosen_for_its_peer() {
    // inet_select_addr(): the first primary for which inet_ifa_match(dst, ifa) holds, and
    // inet_ifa_match() tests ifa_address (the peer), so 198.51.100.10 (peer 198.51.100.1/32)
    // answers for 198.51.100.1 although 198.51.100.20/24 is the one whose own subnet holds it.
    let ns = Netns::new("kp");
    ns.set_announce("all", 2);
    pair(&ns, "eth3");
    ns.wait_link_up("eth3");
    ns.ip(&[
        "addr",
        "add",
        "198.51.100.10",
        "peer",
        "198.51.100.1/32",
        "dev",
        "eth3",
    ]);
    ns.ip(&["addr", "add", "198.51.100.20/24", "dev", "eth3"]);
    let t = Tracer::start(&["--json", "--netns", ns.name()]);
    ns.send_udp(Some(ipv4("198.51.100.20")), udp("198.51.100.1"));
    let ev = request(&t, &ns, "198.51.100.10", "198.51.100.1");
    assert_eq!(s(&ev, "reason"), "select_announce2", "{ev}");
    assert_eq!(ev["foreign_sender"], false, "{ev}");
    assert_says(
        &ev,
        &["198.51.100.1/32, the subnet of the target 198.51.100.1"],
    );
    let peer = ev["ns_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["addr"] == "198.51.100.10")
        .unwrap_or_else(|| panic!("{ev}"));
    assert_eq!(peer["peer"], "198.51.100.1", "{ev}");
    t.stop();
}

#[test]
fn route_localnet_makes_a_host_scope_address_the_sender() {
    // inet_select_addr(): min(ifa_scope, localnet_scope) > scope skips an address; with
    // route_localnet localnet_scope is RT_SCOPE_LINK, so eth3's 127.0.0.5 (host scope) is
    // chosen instead of borrowing eth5's 203.0.113.10.
    let ns = Netns::new("kl");
    ns.set_announce("all", 2);
    ns.sysctl("net/ipv4/conf/all/route_localnet", "1");
    pair(&ns, "eth3");
    pair(&ns, "eth5");
    ns.wait_link_up("eth3");
    ns.ip(&["addr", "add", "127.0.0.5/8", "dev", "eth3"]);
    ns.ip(&["addr", "add", "203.0.113.10/24", "dev", "eth5"]);
    ns.ip(&["route", "add", "198.51.100.0/24", "dev", "eth3"]);
    let t = Tracer::start(&["--json", "--netns", ns.name()]);
    ns.send_udp(Some(ipv4("203.0.113.10")), udp("198.51.100.20"));
    let ev = request(&t, &ns, "127.0.0.5", "198.51.100.20");
    assert_eq!(s(&ev, "reason"), "select_announce2", "{ev}");
    assert_says(&ev, &["route_localnet"]);
    assert_eq!(ev["route_localnet"]["all"], true, "{ev}");
    t.stop();
}

#[test]
fn arp_announce_is_read_and_recorded_as_the_kernels_int() {
    // IN_DEV_ARP_ANNOUNCE() = max(all, dev) as ints: max(256, 1) = 256, which `default:`
    // sends to case 0, so the local source 203.0.113.10 is copied although eth3 says 1.
    let seed = Seed::new();
    seed.srv.sysctl("net/ipv4/conf/all/arp_announce", "256");
    seed.srv.set_announce("eth3", 1);
    let t = Tracer::start(&["--json", "--netns", seed.srv.name()]);
    seed.srv.send_udp(Some(ipv4(SRV_ETH5_IP)), udp(C3_IP));
    let ev = request(&t, &seed.srv, SRV_ETH5_IP, C3_IP);
    assert_eq!(s(&ev, "reason"), "announce0_local_source", "{ev}");
    assert_eq!(ev["arp_announce"]["all"], 256, "{ev}");
    assert_eq!(ev["arp_announce"]["effective"], 256, "{ev}");
    assert_says(
        &ev,
        &["arp_announce=256 (all=256, eth3=1; above 2 acts like 0)"],
    );
    t.stop();
}

#[test]
fn a_gratuitous_arp_on_link_up_is_the_kernels_announcement() {
    // inetdev_event(NETDEV_UP) with arp_notify set calls inetdev_send_gratuitous_arp():
    // arp_send(who-has 198.51.100.10 tell 198.51.100.10), from the `ip` command's context.
    let ns = lone("kg");
    ns.sysctl("net/ipv4/conf/eth3/arp_notify", "1");
    let t = Tracer::start(&["--json", "--netns", ns.name()]);
    ns.ip(&["link", "set", "eth3", "down"]);
    ns.ip(&["link", "set", "eth3", "up"]);
    let ev = request(&t, &ns, "198.51.100.10", "198.51.100.10");
    assert_eq!(s(&ev, "reason"), "kernel_announce", "{ev}");
    assert_eq!(ev["foreign_sender"], false, "{ev}");
    assert_eq!(ev["arp_notify"], true, "{ev}");
    assert_eq!(ev["task"]["comm"], "ip", "{ev}");
    assert!(ev["remedy"].is_null(), "{ev}");
    assert_says(
        &ev,
        &[
            "arp_notify is set",
            "NETDEV_UP",
            "no arp_announce setting applies",
        ],
    );
    t.stop();
}

#[test]
fn a_frame_from_a_packet_socket_names_its_process() {
    // packet_sendmsg() hands the process's own frame to dev_queue_xmit(): arp_solicit() never
    // ran, so the sender is whatever the process wrote (here foreign to eth3).
    let ns = lone("kk");
    let mut h = Helper::spawn(&ns, "arping-e2e");
    let t = Tracer::start(&["--json", "--netns", ns.name()]);
    h.arp("eth3", "192.0.2.77", "198.51.100.20");
    let ev = request(&t, &ns, "192.0.2.77", "198.51.100.20");
    assert_eq!(s(&ev, "reason"), "userspace", "{ev}");
    assert_eq!(ev["foreign_sender"], true, "{ev}");
    let trig = &ev["trigger"];
    assert_eq!(trig["origin"], "packet_socket", "{ev}");
    assert_eq!(trig["pid"], h.pid(), "{ev}");
    assert_eq!(trig["comm"], "arping-e2e", "{ev}");
    assert!(
        ev["remedy"].is_null() && !ev["consequence"].is_null(),
        "{ev}"
    );
    assert_says(
        &ev,
        &[
            "arping-e2e[",
            "packet socket",
            "no arp_announce setting applies",
        ],
    );
    t.stop();
}

/// Sends one datagram from a socket bound to device `dev` (SO_BINDTODEVICE), which puts a
/// VRF member's traffic in its VRF's table.
fn send_via_device(ns: &Netns, dev: &'static str, dst: &str) {
    let dst = udp(dst);
    in_netns(&ns.path(), move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        use std::os::fd::AsRawFd;
        // SAFETY: SO_BINDTODEVICE with a name buffer of its length.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!(
                "SO_BINDTODEVICE {dev}: {}",
                std::io::Error::last_os_error()
            ));
        }
        sock.send_to(HELPER_PAYLOAD, dst)
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

#[test]
fn a_vrf_member_is_explained_in_its_vrf() {
    let ns = Netns::new("kv");
    if let Err(e) = ns.try_ip(&["link", "add", "blue", "type", "vrf", "table", "10"]) {
        eprintln!("skipped: this kernel has no VRF ({e:#}); the VM suite runs this test");
        return;
    }
    ns.ip(&["link", "set", "blue", "up"]);
    pair(&ns, "eth3");
    pair(&ns, "eth4");
    pair(&ns, "eth5");
    ns.ip(&["link", "set", "eth3", "master", "blue"]);
    ns.ip(&["link", "set", "eth4", "master", "blue"]);
    ns.ip(&["addr", "add", "198.51.100.10/24", "dev", "eth3"]);
    ns.ip(&["addr", "add", "203.0.113.10/24", "dev", "eth5"]);
    ns.ip(&["addr", "add", "192.0.2.1/32", "dev", "blue"]);
    ns.wait_link_up("eth3");
    // A main-table route out of eth3, so a main-domain socket's packet leaves by a member.
    ns.ip(&["route", "add", "198.51.100.0/24", "dev", "eth3"]);
    ns.ip(&[
        "route",
        "add",
        "192.0.2.128/25",
        "dev",
        "eth4",
        "table",
        "10",
    ]);
    ns.set_announce("all", 0);
    ns.set_announce("eth3", 0);
    ns.set_announce("eth4", 2);
    let t = Tracer::start(&["--json", "--netns", ns.name()]);

    // inet_addr_type_dev_table(eth3, 203.0.113.10) looks in table 10, where only blue's
    // members have local routes: not local, so arp_solicit() falls back to inet_select_addr().
    ns.send_udp(Some(ipv4("203.0.113.10")), udp("198.51.100.20"));
    let ev = request(&t, &ns, "198.51.100.10", "198.51.100.20");
    assert_eq!(s(&ev, "reason"), "select_nonlocal_source", "{ev}");
    assert_says(&ev, &["not an address of VRF blue"]);
    assert!(
        ev["links"].as_array().is_some_and(|l| l
            .iter()
            .any(|x| x["ifname"] == "blue" && x["vrf_table"] == 10)),
        "{ev}"
    );

    // eth4 has no address: inet_select_addr() tries the VRF device first and takes 192.0.2.1,
    // though eth5's 203.0.113.10 comes earlier in the device list.
    send_via_device(&ns, "eth4", "192.0.2.200");
    let ev = request(&t, &ns, "192.0.2.1", "192.0.2.200");
    assert_eq!(s(&ev, "reason"), "select_no_address_on_dev", "{ev}");
    assert_says(&ev, &["from blue", "VRF device"]);
    t.stop();
}
