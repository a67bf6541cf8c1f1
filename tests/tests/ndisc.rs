//! End-to-end: IPv6 neighbour solicitations traced, attributed and explained like ARP
//! requests, on the real kernel, from namespaces the tracer is not in.
//!
//! Each expected source is written from net/ipv6/ndisc.c and addrconf.c, not from what
//! arp-trace printed: `ndisc_solicit()` keeps the queued packet's source only if
//! `ipv6_chk_addr_and_flags(net, saddr, dev, false, 1, TENTATIVE | OPTIMISTIC)` finds it on
//! the outgoing device; otherwise `ndisc_send_ns()` takes `ipv6_get_lladdr(dev, TENTATIVE |
//! OPTIMISTIC)` and sends nothing without one. In every topology here, ARP's rule at
//! arp_announce=0 (the packet's source whenever it is local anywhere) gives another answer.
//! Only 2001:db8::/32 addresses, only inside the test's own namespaces.

use std::time::Duration;

use arp_trace_e2e::*;

const SRV3: &str = "2001:db8:3::1";
const SRV5: &str = "2001:db8:5::1";
const C3: &str = "2001:db8:3::44";
const C5: &str = "2001:db8:5::99";

/// The server of the seed, dual-homed: eth3 on 2001:db8:3::/64 (peer c3), eth5 on
/// 2001:db8:5::/64 (peer c5).
struct Dual {
    srv: Netns,
    c3: Netns,
    _c5: Netns,
}

fn dual() -> Dual {
    let (srv, c3, c5) = (Netns::new("s"), Netns::new("c3"), Netns::new("c5"));
    veth6(&srv, "eth3", SRV3, &c3, "eth0", C3);
    veth6(&srv, "eth5", SRV5, &c5, "eth0", C5);
    Dual { srv, c3, _c5: c5 }
}

fn is_solicit(v: &Value) -> bool {
    v["type"] == "ndisc" && v["op"] == "solicit"
}

/// Waits for the first solicitation from `ns` on `dev` for `target` that `pred` accepts.
fn solicit(
    t: &Tracer,
    ns: &Netns,
    dev: &str,
    target: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    t.wait_for(
        |v| {
            is_solicit(v)
                && from_ns(v, ns)
                && v["ifname"] == dev
                && v["target_ip"] == target
                && pred(v)
        },
        EVENT_TIMEOUT,
    )[0]
    .clone()
}

fn stop_ok(t: Tracer) -> String {
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "exit {}: {stderr}", describe(&status));
    stdout
}

#[test]
fn another_interfaces_address_is_not_kept_the_link_local_is_used() {
    let d = dual();
    let ll = d.srv.link_local("eth3");
    let t = Tracer::start(&["--json", "-6", "--netns", d.srv.name()]);
    d.srv.send_udp6(Some(SRV5), C3);
    let ev = solicit(&t, &d.srv, "eth3", C3, |_| true);
    // ARP at arp_announce=0 would announce 2001:db8:5::1 here (local on eth5).
    assert_fields(
        &ev,
        &[
            ("sender_ip", json!(ll)),
            ("sender_mac", json!(d.srv.mac("eth3"))),
            ("dst_ip", json!("ff02::1:ff00:44")),
            ("unicast", json!(false)),
            ("reason", json!("ndisc_link_local")),
            ("foreign_sender", json!(false)),
            ("neigh_state", json!("incomplete")),
            ("attempt", json!(1)),
            ("remedy", Value::Null),
        ],
    );
    assert_eq!(ev["trigger"]["src"], SRV5, "{ev}");
    assert_eq!(ev["trigger"]["dst"], C3, "{ev}");
    assert_eq!(ev["trigger"]["proto"], "udp", "{ev}");
    assert_eq!(ev["trigger"]["origin"], "local", "{ev}");
    assert!(
        s(&ev, "explanation").contains("2001:db8:5::1 is not an address of eth3"),
        "{ev}"
    );
    // The facts the verdict rests on: eth3's own addresses with their flags.
    let addrs = ev["dev_addrs"].as_array().unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a["addr"] == ll && a["scope"] == "link"),
        "{ev}"
    );
    assert!(addrs.iter().any(|a| a["addr"] == SRV3
        && a["scope"] == "global"
        && a["flags"].as_array().unwrap().iter().any(|f| f == "nodad")));
    stop_ok(t);
}

#[test]
fn the_egress_devices_own_address_is_kept() {
    let d = dual();
    let t = Tracer::start(&["--json", "-6", "--netns", d.srv.name()]);
    d.srv.send_udp6(Some(SRV3), C3);
    let ev = solicit(&t, &d.srv, "eth3", C3, |_| true);
    assert_eq!(ev["sender_ip"], SRV3, "{ev}");
    assert_eq!(ev["reason"], "ndisc_packet_source", "{ev}");
    assert_eq!(ev["trigger"]["src"], SRV3, "{ev}");
    stop_ok(t);
}

#[test]
fn the_answer_is_an_advertisement_from_the_target_itself() {
    let d = dual();
    let t = Tracer::start(&["--json", "-6", "--netns", d.c3.name()]);
    d.srv.send_udp6(Some(SRV3), C3);
    let na = t.wait_for(
        |v| v["type"] == "ndisc" && v["op"] == "advert" && from_ns(v, &d.c3),
        EVENT_TIMEOUT,
    )[0]
    .clone();
    // ndisc_recv_ns() answers a multicast solicitation with solicited and override set,
    // from the target address (ndisc_send_na(): ipv6_get_ifaddr() finds it on the device).
    assert_fields(
        &na,
        &[
            ("sender_ip", json!(C3)),
            ("target_ip", json!(C3)),
            ("dst_ip", json!(SRV3)),
            ("reason", json!("ndisc_advert")),
            (
                "advert",
                json!({"router": false, "solicited": true, "override": true}),
            ),
        ],
    );
    stop_ok(t);
}

#[test]
fn a_tentative_source_is_not_kept_and_its_dad_is_traced() {
    let d = dual();
    let ll = d.srv.link_local("eth3");
    // DAD on for eth3 alone, slow enough that 2001:db8:3::9 stays tentative while we send.
    d.srv.sysctl("net/ipv6/conf/eth3/accept_dad", "1");
    d.srv.sysctl("net/ipv6/conf/eth3/dad_transmits", "20");
    // A tentative address cannot be bound without this (inet6_bind(): ipv6_chk_addr()).
    d.srv.sysctl("net/ipv6/ip_nonlocal_bind", "1");
    let t = Tracer::start(&["--json", "-6", "--netns", d.srv.name()]);
    d.srv
        .ip(&["-6", "addr", "add", "2001:db8:3::9/64", "dev", "eth3"]);
    // addrconf_dad_work(): from ::, to the solicited-node group, target the new address.
    let dad = solicit(&t, &d.srv, "eth3", "2001:db8:3::9", |_| true);
    assert_fields(
        &dad,
        &[
            ("sender_ip", json!("::")),
            ("dst_ip", json!("ff02::1:ff00:9")),
            ("sender_mac", Value::Null),
            ("reason", json!("ndisc_dad")),
            ("trigger", Value::Null),
            // enhanced_dad defaults to 1: addrconf_dad_kick() draws a nonce.
            ("nonce", json!(true)),
        ],
    );
    d.srv.send_udp6(Some("2001:db8:3::9"), C3);
    let ev = solicit(&t, &d.srv, "eth3", C3, |_| true);
    // The naive model keeps 2001:db8:3::9: it is on eth3. ndisc_solicit() bans it.
    assert_eq!(ev["sender_ip"], json!(ll), "{ev}");
    assert_eq!(ev["reason"], "ndisc_link_local", "{ev}");
    assert_eq!(ev["trigger"]["src"], "2001:db8:3::9", "{ev}");
    assert!(s(&ev, "explanation").contains("still tentative"), "{ev}");
    let tentative = ev["dev_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["addr"] == "2001:db8:3::9")
        .unwrap_or_else(|| panic!("{ev}"))
        .clone();
    assert!(
        tentative["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("tentative")),
        "{tentative}"
    );
    stop_ok(t);
}

#[test]
fn without_a_link_local_address_nothing_is_sent_and_the_failure_says_why() {
    let (srv, c3, c5) = (Netns::new("s"), Netns::new("c3"), Netns::new("c5"));
    srv.ip(&[
        "link",
        "add",
        "eth3",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        c3.name(),
    ]);
    // IN6_ADDR_GEN_MODE_NONE before the device comes up: addrconf_addr_gen() adds no
    // link-local address.
    srv.sysctl("net/ipv6/conf/eth3/addr_gen_mode", "1");
    srv.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{SRV3}/64"),
        "dev",
        "eth3",
        "nodad",
    ]);
    srv.ip(&["link", "set", "eth3", "up"]);
    c3.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{C3}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    c3.ip(&["link", "set", "eth0", "up"]);
    veth6(&srv, "eth5", SRV5, &c5, "eth0", C5);
    srv.wait_link_up("eth3");
    assert!(
        srv.addrs6("eth3", "link").is_empty(),
        "eth3 has a link-local address"
    );
    let t = Tracer::start(&["--json", "-6", "--netns", srv.name()]);
    srv.send_udp6(Some(SRV5), C3);
    // __neigh_event_send() then the timer: mcast_solicit (3) silent tries, a second apart.
    let failed = t.wait_for(
        |v| v["type"] == "neigh_failed" && from_ns(v, &srv) && v["target_ip"] == C3,
        EVENT_TIMEOUT,
    )[0]
    .clone();
    assert_eq!(failed["reason"], "ndisc_no_link_local", "{failed}");
    assert!(
        s(&failed, "explanation").contains("eth3 has no link-local address"),
        "{failed}"
    );
    let dropped = failed["dropped"].as_array().unwrap();
    assert!(
        dropped
            .iter()
            .any(|p| p["src"] == SRV5 && p["dst"] == C3 && p["proto"] == "udp"),
        "the UDP packet is named among the drops: {failed}"
    );
    assert_eq!(
        failed["remedy"]["command"],
        format!(
            "ip netns exec {} sysctl -w net.ipv6.conf.eth3.addr_gen_mode=0",
            srv.name()
        ),
        "{failed}"
    );
    assert!(
        !t.json()
            .iter()
            .any(|v| is_solicit(v) && v["target_ip"] == C3),
        "no solicitation for {C3} may have left"
    );
    // The remedy's setting: the kernel generates the link-local address at once, and the
    // next packet is solicited from it.
    srv.sysctl("net/ipv6/conf/eth3/addr_gen_mode", "0");
    let ll = srv.link_local("eth3");
    srv.send_udp6(Some(SRV5), C3);
    let ev = solicit(&t, &srv, "eth3", C3, |_| true);
    assert_eq!(ev["sender_ip"], json!(ll), "{ev}");
    assert_eq!(ev["reason"], "ndisc_link_local", "{ev}");
    stop_ok(t);
}

#[test]
fn a_stale_entry_is_reprobed_by_unicast_from_the_link_local_address() {
    let d = dual();
    let ll = d.srv.link_local("eth3");
    let c3_mac = d.c3.mac("eth0");
    // STALE now; a packet then moves it to DELAY, and after delay_first_probe_time to PROBE.
    d.srv
        .sysctl("net/ipv6/neigh/eth3/delay_first_probe_time", "1");
    d.srv.ip(&[
        "-6", "neigh", "replace", C3, "lladdr", &c3_mac, "dev", "eth3", "nud", "stale",
    ]);
    let t = Tracer::start(&["--json", "-6", "--netns", d.srv.name()]);
    d.srv.send_udp6(Some(SRV3), C3);
    let ev = solicit(&t, &d.srv, "eth3", C3, |_| true);
    // neigh_probe() in PROBE finds the queue empty (STALE and DELAY send at once), so
    // ndisc_solicit() gets no packet; probes < ucast_solicit: to the target itself.
    assert_fields(
        &ev,
        &[
            ("sender_ip", json!(ll)),
            ("dst_ip", json!(C3)),
            ("unicast", json!(true)),
            ("eth_dst", json!(c3_mac)),
            ("trigger", Value::Null),
            ("reason", json!("ndisc_no_trigger")),
            ("neigh_state", json!("probe")),
        ],
    );
    assert!(s(&ev, "explanation").contains("unicast reprobe"), "{ev}");
    stop_ok(t);
}

#[test]
fn a_forwarded_packet_is_solicited_from_the_routers_link_local_address() {
    let (r, c3, c5) = (Netns::new("r"), Netns::new("c3"), Netns::new("c5"));
    veth6(&r, "eth3", SRV3, &c3, "eth0", C3);
    veth6(&r, "eth5", SRV5, &c5, "eth0", C5);
    r.sysctl("net/ipv6/conf/all/forwarding", "1");
    c5.ip(&["-6", "route", "add", "default", "via", SRV5, "dev", "eth0"]);
    let ll = r.link_local("eth3");
    let t = Tracer::start(&["--json", "-6", "--netns", r.name()]);
    c5.send_udp6(Some(C5), C3);
    let ev = solicit(&t, &r, "eth3", C3, |_| true);
    // The naive model: the packet's source, 2001:db8:5::99. A forwarded source is never
    // local, so ipv6_chk_addr_and_flags() fails.
    assert_eq!(ev["sender_ip"], json!(ll), "{ev}");
    assert_eq!(ev["reason"], "ndisc_link_local", "{ev}");
    assert_eq!(ev["trigger"]["src"], C5, "{ev}");
    assert_eq!(ev["trigger"]["origin"], "forwarded", "{ev}");
    assert_eq!(ev["trigger"]["in_ifname"], "eth5", "{ev}");
    assert!(s(&ev, "explanation").contains("forwarded"), "{ev}");
    stop_ok(t);
}

#[test]
fn families_are_chosen_with_4_and_6_and_text_reads_like_tcpdump() {
    let d = dual();
    veth(
        &d.srv,
        "eth7",
        "198.51.100.10/24",
        &d.c3,
        "eth7",
        "198.51.100.20/24",
    );
    let ll = d.srv.link_local("eth3");
    let only4 = Tracer::start(&["--json", "-4", "--netns", d.srv.name()]);
    let text = Tracer::start(&["--netns", d.srv.name()]);
    d.srv.send_udp6(Some(SRV5), C3);
    d.srv.send_udp(None, udp("198.51.100.20"));
    only4.wait_for(|v| is_request(v) && from_ns(v, &d.srv), EVENT_TIMEOUT);
    let line = format!("IP6 {ll} > ff02::1:ff00:44: ICMP6, neighbor solicitation, who has {C3}");
    text.wait_for_line(|l| l.contains(&line), EVENT_TIMEOUT);
    text.wait_for_line(|l| l.contains("ARP who-has 198.51.100.20"), EVENT_TIMEOUT);
    std::thread::sleep(Duration::from_millis(300));
    let out4 = stop_ok(only4);
    assert!(
        !out4.contains("\"type\":\"ndisc\""),
        "-4 shows no neighbour discovery: {out4}"
    );
    let out = stop_ok(text);
    assert!(out.contains("<- udp [2001:db8:5::1]:"), "{out}");
}

/// Sends one neighbour solicitation for `target` from `src` on `dev` through a raw ICMPv6
/// socket, as ndisc6 does: rawv6_sendmsg() builds the IPv6 header, the kernel fills in the
/// checksum, and the hop limit is set to the 255 RFC 4861 requires.
fn raw_solicit(ns: &Netns, dev: &str, src: &str, target: &str) {
    let ifindex = ns.ifindex(dev) as u32;
    let src: std::net::Ipv6Addr = src.parse().expect("IPv6");
    let target: std::net::Ipv6Addr = target.parse().expect("IPv6");
    ns.run_in(move || {
        // SAFETY: plain socket calls on a descriptor this closure owns and closes.
        unsafe {
            let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
            assert!(
                fd >= 0,
                "raw ICMPv6 socket: {}",
                std::io::Error::last_os_error()
            );
            let hops: libc::c_int = 255;
            for opt in [libc::IPV6_MULTICAST_HOPS, libc::IPV6_UNICAST_HOPS] {
                let rc = libc::setsockopt(
                    fd,
                    libc::IPPROTO_IPV6,
                    opt,
                    (&hops as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                assert_eq!(rc, 0, "hop limit: {}", std::io::Error::last_os_error());
            }
            let mut me: libc::sockaddr_in6 = std::mem::zeroed();
            me.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            me.sin6_addr.s6_addr = src.octets();
            let rc = libc::bind(
                fd,
                (&me as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "bind {src}: {}", std::io::Error::last_os_error());
            // Type 135, code 0, checksum (the kernel's), reserved, then the target.
            let mut ns_msg = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
            ns_msg.extend_from_slice(&target.octets());
            // The target's solicited-node group: ff02::1:ff and its low 24 bits.
            let t = target.octets();
            let group = [
                0xff02,
                0,
                0,
                0,
                0,
                1,
                0xff00 | t[13] as u16,
                u16::from_be_bytes([t[14], t[15]]),
            ];
            let mut to: libc::sockaddr_in6 = std::mem::zeroed();
            to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            to.sin6_addr.s6_addr = std::net::Ipv6Addr::from(group).octets();
            to.sin6_scope_id = ifindex;
            let n = libc::sendto(
                fd,
                ns_msg.as_ptr().cast(),
                ns_msg.len(),
                0,
                (&to as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            );
            assert_eq!(
                n,
                ns_msg.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
            libc::close(fd);
        }
    })
}

#[test]
fn a_solicitation_a_process_sends_itself_is_traced_as_its() {
    // Every IPv6 frame of a local TCP or UDP socket is let go before its header is read
    // (net_dev_queue, 6.12 on); a process's own raw ICMPv6 socket is neither, so its
    // solicitation must still come out, named as the process's (rawv6_sendmsg(), not
    // ndisc_send_ns()). The UDP datagram that makes the kernel solicit C3 leaves after the
    // answer, one of the frames let go.
    let d = dual();
    let t = Tracer::start(&["--json", "-6", "--netns", d.srv.name()]);
    d.srv.send_udp6(Some(SRV3), C3);
    raw_solicit(&d.srv, "eth3", SRV3, C5);
    let ev = solicit(&t, &d.srv, "eth3", C5, |_| true);
    assert_eq!(ev["user_socket"], true, "{ev}");
    assert_eq!(ev["reason"], "userspace", "{ev}");
    assert_eq!(ev["sender_ip"], SRV3, "{ev}");
    assert_eq!(ev["trigger"]["pid"], std::process::id(), "{ev}");
    // The kernel's own solicitation for the UDP datagram is traced beside it.
    let kernel = solicit(&t, &d.srv, "eth3", C3, |v| v["user_socket"].is_null());
    assert_eq!(kernel["reason"], "ndisc_packet_source", "{kernel}");
    stop_ok(t);
}
