//! The rule table against arp_solicit() restated from the kernel source: a matrix of
//! placements, sources and senders, plus the cases each rule's helpers must get right. Long,
//! because the matrix is the proof that at most one path matches.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use arp_trace_model::{ArpEvent, IfAddr, NsFacts, Origin, Reason, RequestFacts, Trigger, Verdict};

use super::ctx::Ctx;
use super::rules::RULES;
use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(crate) fn addr(ifname: &str, a: &str, prefix_len: u8) -> IfAddr<'static> {
    IfAddr {
        ifname: ifname.to_string().into(),
        addr: ip(a),
        prefix_len,
        scope: None,
        secondary: None,
        peer: None,
    }
}

const EGRESS_PRIMARY: &str = "198.51.100.10";
const EGRESS_SECONDARY: &str = "198.51.100.11";
const OTHER_IF: &str = "203.0.113.10";
const NONLOCAL: &str = "192.0.2.77";
const TARGET: &str = "198.51.100.20";

/// eth3 (egress) holds a primary and a secondary in the target's subnet, so the copy path
/// (secondary) and the select path (primary) write different senders.
fn facts(all: i32, dev: Option<i32>) -> NsFacts<'static> {
    NsFacts {
        announce_all: all,
        announce_dev: dev.map(|d| ("eth3".to_string(), d)).into_iter().collect(),
        addrs: vec![
            addr("lo", "127.0.0.1", 8),
            addr("eth3", EGRESS_PRIMARY, 24),
            addr("eth3", EGRESS_SECONDARY, 24),
            addr("eth5", OTHER_IF, 24),
        ],
        ..Default::default()
    }
}

/// The seed host: eth3 198.51.100.10/24, eth5 203.0.113.10/24, arp_announce 0.
pub(crate) fn seed_facts() -> NsFacts<'static> {
    NsFacts {
        announce_all: 0,
        announce_dev: [("eth3".to_string(), 0)].into(),
        addrs: vec![
            addr("eth3", "198.51.100.10", 24),
            addr("eth5", "203.0.113.10", 24),
        ],
        ..Default::default()
    }
}

pub(crate) fn trigger(saddr: &str, origin: Origin) -> Trigger<'static> {
    let forwarded = origin == Origin::Forwarded;
    Trigger {
        src: ip(saddr).into(),
        dst: ip(TARGET).into(),
        proto: "udp".into(),
        sport: Some(41000),
        dport: Some(9),
        icmp_type: None,
        len: 41,
        mark: 0,
        origin,
        pid: (!forwarded).then_some(4242),
        comm: (!forwarded).then(|| "python3".into()),
        in_ifindex: forwarded.then_some(9),
        in_ifname: forwarded.then(|| "eth1".into()),
        drop_reason: None,
    }
}

fn forwarded(saddr: &str) -> Trigger<'static> {
    trigger(saddr, Origin::Forwarded)
}

pub(crate) fn request(
    ifname: &str,
    sender: &str,
    target: &str,
    trigger: Option<Trigger<'static>>,
) -> ArpEvent<'static> {
    let mut ev = crate::kernel::ring::tests::request_event(ifname, sender, target);
    ev.trigger = trigger;
    ev
}

fn with_sender(req: &ArpEvent<'_>, sender: Ipv4Addr) -> ArpEvent<'static> {
    let mut r = req.clone().into_owned();
    r.sender_ip = sender;
    r
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    LocalOnDev,
    LocalElsewhere,
    NonLocal,
    NoTrigger,
}

fn src_trigger(src: Src) -> Option<Trigger<'static>> {
    match src {
        Src::LocalOnDev => Some(trigger(EGRESS_SECONDARY, Origin::Local)),
        Src::LocalElsewhere => Some(trigger(OTHER_IF, Origin::Local)),
        Src::NonLocal => Some(forwarded(NONLOCAL)),
        Src::NoTrigger => None,
    }
}

/// arp_solicit() restated directly from the kernel source, independent of RULES.
fn kernel_expectation(level: i32, src: Src) -> (&'static str, Reason, bool) {
    match (level, src) {
        (0, Src::LocalOnDev) => (EGRESS_SECONDARY, Reason::Announce0LocalSource, false),
        (0, Src::LocalElsewhere) => (OTHER_IF, Reason::Announce0LocalSource, true),
        (1, Src::LocalOnDev) => (EGRESS_SECONDARY, Reason::Announce1OnlinkSource, false),
        (1, Src::LocalElsewhere) => (EGRESS_PRIMARY, Reason::SelectOfflinkSource, false),
        (0 | 1, Src::NonLocal) => (EGRESS_PRIMARY, Reason::SelectNonlocalSource, false),
        (0 | 1, Src::NoTrigger) => (EGRESS_PRIMARY, Reason::SelectNoTrigger, false),
        (2, _) => (EGRESS_PRIMARY, Reason::SelectAnnounce2, false),
        _ => unreachable!(),
    }
}

/// (all, dev, the switch arm the kernel takes): max wins (as ints), and anything outside 0..=2
/// falls into case 0 through `default:`.
const PLACEMENTS: &[(i32, Option<i32>, i32)] = &[
    (0, None, 0),
    (0, Some(0), 0),
    (1, Some(0), 1),
    (0, Some(1), 1),
    (1, Some(1), 1),
    (2, Some(0), 2),
    (0, Some(2), 2),
    (2, Some(1), 2),
    (1, Some(2), 2),
    (3, Some(0), 0),
    (0, Some(4), 0),
    (3, Some(2), 0),
    (256, Some(1), 0),
    (-1, Some(1), 1),
    (-1, Some(-1), 0),
    (0, Some(-5), 0),
];

const SOURCES: [Src; 4] = [
    Src::LocalOnDev,
    Src::LocalElsewhere,
    Src::NonLocal,
    Src::NoTrigger,
];

#[test]
fn explain_table_covers_every_reason_once() {
    let arp: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| r.applies_to(arp_trace_model::Family::Ipv4))
        .collect();
    for &r in &arp {
        assert_eq!(
            RULES.iter().filter(|rule| rule.reason == r).count(),
            1,
            "{r}"
        );
    }
    assert_eq!(RULES.len(), arp.len());
    assert_eq!(RULES.last().unwrap().reason, Reason::Unexplained);
    for rule in RULES {
        assert!(!rule.kernel_fn.trim().is_empty(), "{}", rule.reason);
    }
}

#[test]
fn explain_reason_codes_serialize_as_documented() {
    for r in Reason::ALL {
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            serde_json::Value::String(r.code().to_string())
        );
        let back: Reason = serde_json::from_str(&format!("\"{}\"", r.code())).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn explain_effective_announce_is_max() {
    for &(all, dev, _) in PLACEMENTS {
        let f = facts(all, dev);
        let d = dev.unwrap_or(0);
        assert_eq!(f.announce("eth3"), (all, d, all.max(d)));
    }
    assert_eq!(facts(1, Some(2)).announce("eth5"), (1, 0, 1));
}

#[test]
fn explain_full_matrix() {
    let mut seen = Vec::new();
    for &(all, dev, level) in PLACEMENTS {
        for src in SOURCES {
            let f = facts(all, dev);
            let case = format!("all={all} dev={dev:?} (level {level}) src={src:?}");
            let (sender, reason, foreign) = kernel_expectation(level, src);
            let req = request("eth3", sender, TARGET, src_trigger(src));
            let v = explain(&req, &f);
            assert_eq!(v.reason, reason, "{case}: {}", v.explanation);
            assert_eq!(v.foreign_sender, foreign, "{case}");
            assert_eq!(v.consequence.is_some(), foreign, "{case}");
            assert_eq!(v.remedy.is_some(), foreign, "{case}");
            assert!(v.explanation.contains("eth3"), "{case}: {}", v.explanation);
            assert!(
                v.explanation.contains(&format!("all={all}")),
                "{case}: {}",
                v.explanation
            );
            assert_eq!(
                kernel_senders(&req, &f),
                vec![(ip(sender), reason)],
                "{case}"
            );
            seen.push(reason);

            // Every other address the host could have written contradicts the kernel.
            for other in [
                EGRESS_PRIMARY,
                EGRESS_SECONDARY,
                OTHER_IF,
                NONLOCAL,
                "0.0.0.0",
            ] {
                if other == sender {
                    continue;
                }
                let bad = request("eth3", other, TARGET, src_trigger(src));
                let v = explain(&bad, &f);
                assert_eq!(v.reason, Reason::Unexplained, "{case} observed {other}");
                assert!(v.remedy.is_none(), "{case} observed {other}");
                assert!(
                    v.explanation.contains(sender),
                    "{case} observed {other}: {}",
                    v.explanation
                );
                assert_eq!(v.foreign_sender, other == OTHER_IF || other == NONLOCAL);
            }
        }
    }
    for r in Reason::ALL
        .into_iter()
        .filter(|r| r.applies_to(arp_trace_model::Family::Ipv4))
    {
        // The rest have cases of their own (here and in kernel_cases.rs).
        let own = [
            Reason::SelectNoAddressOnDev,
            Reason::KernelAnnounce,
            Reason::Userspace,
            Reason::Unexplained,
        ];
        if !own.contains(&r) {
            assert!(seen.contains(&r), "matrix never reaches {r}");
        }
    }
}

#[test]
fn explain_at_most_one_kernel_path_matches() {
    for &(all, dev, _) in PLACEMENTS {
        for src in SOURCES {
            let f = facts(all, dev);
            for s in [
                EGRESS_PRIMARY,
                EGRESS_SECONDARY,
                OTHER_IF,
                NONLOCAL,
                "0.0.0.0",
            ] {
                for egress in ["eth3", "eth4"] {
                    let req = request(egress, s, TARGET, src_trigger(src));
                    let c = Ctx::new(RULES, &req, &f);
                    let hits: Vec<Reason> = RULES
                        .iter()
                        .filter(|r| r.reason != Reason::Unexplained && (r.matches)(&c))
                        .map(|r| r.reason)
                        .collect();
                    assert!(hits.len() <= 1, "{egress} {s} {src:?}: {hits:?}");
                }
            }
        }
    }
}

fn seed() -> (ArpEvent<'static>, NsFacts<'static>) {
    let f = NsFacts {
        announce_all: 0,
        announce_dev: [("eth3".to_string(), 0), ("eth5".to_string(), 0)].into(),
        addrs: vec![
            addr("lo", "127.0.0.1", 8),
            addr("eth3", "198.51.100.10", 24),
            addr("eth5", "203.0.113.10", 24),
        ],
        ..Default::default()
    };
    let req = request(
        "eth3",
        "203.0.113.10",
        "198.51.100.20",
        Some(trigger("203.0.113.10", Origin::Local)),
    );
    (req, f)
}

#[test]
fn a_local_source_on_the_egress_device_is_explained_word_for_word() {
    let mut f = seed_facts();
    f.announce_all = -2;
    f.announce_dev.insert("eth3".to_string(), -1);
    let req = request(
        "eth3",
        "198.51.100.10",
        TARGET,
        Some(trigger("198.51.100.10", Origin::Local)),
    );
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::Announce0LocalSource);
    assert!(!v.foreign_sender);
    // Built by pushes, not format!: every digit and sign as the levels are.
    assert_eq!(
        v.explanation,
        "eth3 announces 198.51.100.10, the source of the packet that needed the ARP \
         (python3[4242]), which is local and inside eth3's 198.51.100.0/24. With \
         arp_announce=-1 (all=-2, eth3=-1; below 0 acts like 0) Linux copies a packet's source \
         into the request whenever that address is local to the host."
    );
}

#[test]
fn explain_seed_case() {
    let (req, f) = seed();
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::Announce0LocalSource);
    assert!(v.foreign_sender);
    for needle in [
        "203.0.113.10",
        "eth5",
        "203.0.113.0/24",
        "eth3",
        "198.51.100.0/24",
        "arp_announce=0",
        "python3[4242]",
    ] {
        assert!(
            v.explanation.contains(needle),
            "{needle}: {}",
            v.explanation
        );
    }
    assert_eq!(
        v.explanation,
        "eth3 announces 203.0.113.10, which lives on eth5 (203.0.113.0/24), not on eth3's \
         198.51.100.0/24. The packet that needed the ARP came from 203.0.113.10 \
         (python3[4242]), and with arp_announce=0 (all=0, eth3=0) Linux copies a packet's \
         source into the request whenever that address is local to the host."
    );
    let consequence = v.consequence.unwrap();
    assert!(consequence.contains("attempt to overwrite entry"));
    assert!(consequence.contains("but got reply from"));
    assert!(consequence.contains("arpwatch"));
    let remedy = v.remedy.unwrap();
    assert!(remedy.command.contains("net.ipv4.conf.eth3.arp_announce"));
    assert_eq!(
        remedy.command,
        "sysctl -w net.ipv4.conf.eth3.arp_announce=1"
    );
    assert!(remedy.persistent.contains("/etc/sysctl.d/"));
    assert!(remedy
        .persistent
        .contains("'net.ipv4.conf.eth3.arp_announce = 1'"));
    assert!(remedy.tradeoff.contains('2'), "{}", remedy.tradeoff);
}

/// Replays a remedy's sysctl writes and checks the kernel now writes a non-foreign sender.
fn apply(f: &NsFacts<'_>, command: &str) -> NsFacts<'static> {
    let mut f = f.clone().into_owned();
    for w in command.trim_start_matches("sysctl -w ").split(' ') {
        let (key, v) = w.split_once('=').unwrap();
        let conf = key
            .strip_prefix("net.ipv4.conf.")
            .and_then(|k| k.strip_suffix(".arp_announce"))
            .unwrap()
            .replace('/', ".");
        let v: i32 = v.parse().unwrap();
        if conf == "all" {
            f.announce_all = v;
        } else {
            f.announce_dev.insert(conf, v);
        }
    }
    f
}

#[test]
fn explain_remedy_changes_the_outcome() {
    let (req, f) = seed();
    for (all, dev) in [(0, 0), (3, 0), (0, 3), (4, 7), (3, 2)] {
        let mut f = f.clone();
        f.announce_all = all;
        f.announce_dev.insert("eth3".to_string(), dev);
        let v = explain(&req, &f);
        assert_eq!(
            v.reason,
            Reason::Announce0LocalSource,
            "all={all} dev={dev}"
        );
        let remedy = v.remedy.unwrap();
        assert_eq!(
            remedy.command.contains("conf.all."),
            all > 2,
            "{}",
            remedy.command
        );
        let fixed = apply(&f, &remedy.command);
        let after = kernel_senders(&req, &fixed);
        // eth3's own 2 survives when only `all` had to come down.
        let expected = if dev == 2 {
            Reason::SelectAnnounce2
        } else {
            Reason::SelectOfflinkSource
        };
        assert_eq!(
            after,
            vec![(ip("198.51.100.10"), expected)],
            "all={all} dev={dev}: {}",
            remedy.command
        );
        if dev == 2 {
            assert_eq!(remedy.command, "sysctl -w net.ipv4.conf.all.arp_announce=1");
        }
        let v = explain(&with_sender(&req, after[0].0), &fixed);
        assert!(!v.foreign_sender);
        assert!(v.remedy.is_none());
    }
}

#[test]
fn explain_remedy_key_for_dotted_interface() {
    let (mut req, mut f) = seed();
    for a in &mut f.addrs {
        if a.ifname == "eth3" {
            a.ifname = "eth3.100".into();
        }
    }
    req.ifname = "eth3.100".into();
    let remedy = explain(&req, &f).remedy.unwrap();
    assert_eq!(
        remedy.command,
        "sysctl -w net.ipv4.conf.eth3/100.arp_announce=1"
    );
    assert_eq!(
        apply(&f, &remedy.command).announce_dev.get("eth3.100"),
        Some(&1)
    );
}

fn no_address_facts(all: i32) -> NsFacts<'static> {
    NsFacts {
        announce_all: all,
        announce_dev: BTreeMap::new(),
        addrs: vec![
            addr("lo", "127.0.0.1", 8),
            addr("eth3", "198.51.100.10", 24),
            addr("eth5", "203.0.113.10", 24),
        ],
        ..Default::default()
    }
}

#[test]
fn explain_no_address_on_dev() {
    for level in [0, 1, 2] {
        let f = no_address_facts(level);
        for (sender, t) in [
            ("203.0.113.10", None),
            ("198.51.100.10", Some(forwarded(NONLOCAL))),
        ] {
            let req = request("eth4", sender, "192.0.2.20", t);
            let v = explain(&req, &f);
            assert_eq!(v.reason, Reason::SelectNoAddressOnDev, "level {level}");
            assert!(v.foreign_sender);
            assert!(v.explanation.contains("eth4 has no IPv4 address"));
            assert!(v.explanation.contains("arp_announce cannot"));
            let remedy = v.remedy.unwrap();
            assert!(remedy.command.starts_with("ip address add"));
            assert!(
                remedy.command.starts_with(
                    "ip address add ADDRESS/PREFIX dev eth4  # ADDRESS/PREFIX: an unused \
                     address in 192.0.2.20's subnet"
                ),
                "{}",
                remedy.command
            );
            assert!(remedy.tradeoff.contains("arp_announce cannot help"));
        }
        // The borrowed address is a primary of another device, never its loopback one.
        let req = request("eth4", "127.0.0.1", "192.0.2.20", None);
        assert_eq!(explain(&req, &f).reason, Reason::Unexplained);
    }

    // Copying a local source still happens, but no level can fix it without an address.
    let f = no_address_facts(0);
    let req = request(
        "eth4",
        "203.0.113.10",
        "192.0.2.20",
        Some(trigger("203.0.113.10", Origin::Local)),
    );
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::Announce0LocalSource);
    assert!(v.explanation.contains("eth4 has no IPv4 address at all"));
    assert!(v.remedy.unwrap().command.starts_with("ip address add"));

    // Nothing to borrow anywhere: the request goes out with 0.0.0.0, which is not foreign.
    let f = NsFacts {
        addrs: vec![addr("lo", "127.0.0.1", 8)],
        ..NsFacts::default()
    };
    let req = request("eth4", "0.0.0.0", "192.0.2.20", None);
    let v = explain(&req, &f);
    assert_eq!(v.reason, Reason::SelectNoAddressOnDev);
    assert!(!v.foreign_sender);
    assert!(v.remedy.is_none());
}

#[test]
fn explain_select_prefers_target_subnet_and_skips_secondaries() {
    let f = NsFacts {
        announce_all: 2,
        announce_dev: BTreeMap::new(),
        addrs: vec![
            addr("eth3", "192.0.2.1", 24),
            addr("eth3", "192.0.2.2", 24),
            addr("eth3", "198.51.100.10", 24),
        ],
        ..Default::default()
    };
    let v = explain(&request("eth3", "198.51.100.10", TARGET, None), &f);
    assert_eq!(v.reason, Reason::SelectAnnounce2);
    assert!(
        v.explanation.contains("198.51.100.0/24"),
        "{}",
        v.explanation
    );
    let v = explain(&request("eth3", "192.0.2.1", "203.0.113.5", None), &f);
    assert_eq!(v.reason, Reason::SelectAnnounce2);
    assert!(v.explanation.contains("first primary"), "{}", v.explanation);
    let v = explain(&request("eth3", "192.0.2.2", "203.0.113.5", None), &f);
    assert_eq!(v.reason, Reason::Unexplained);
}

#[test]
fn explain_uses_kernel_flags_when_netlink_gave_them() {
    // 198.51.100.11 listed first but flagged secondary by the kernel: inference from
    // order alone would have picked it.
    let mut f = facts(2, None);
    f.addrs = vec![
        IfAddr {
            secondary: Some(true),
            scope: Some(0),
            ..addr("eth3", EGRESS_SECONDARY, 24)
        },
        IfAddr {
            secondary: Some(false),
            scope: Some(0),
            ..addr("eth3", EGRESS_PRIMARY, 24)
        },
    ];
    let v = explain(&request("eth3", EGRESS_PRIMARY, TARGET, None), &f);
    assert_eq!(v.reason, Reason::SelectAnnounce2, "{}", v.explanation);
    let v = explain(&request("eth3", EGRESS_SECONDARY, TARGET, None), &f);
    assert_eq!(v.reason, Reason::Unexplained);
    // A host-scope address (as `ip addr add ... scope host` makes) is never selected.
    f.addrs[1].scope = Some(254);
    let v = explain(&request("eth3", EGRESS_PRIMARY, TARGET, None), &f);
    assert_eq!(v.reason, Reason::Unexplained);
}

#[test]
fn explain_loopback_prefix_is_local() {
    // A VIP on lo as /32 inside eth3's subnet: the LVS-DR case where level 1 still copies it.
    let mut f = facts(1, None);
    f.addrs.push(addr("lo", "198.51.100.100", 32));
    let req = request(
        "eth3",
        "198.51.100.100",
        TARGET,
        Some(trigger("198.51.100.100", Origin::Local)),
    );
    assert_eq!(explain(&req, &f).reason, Reason::Announce1OnlinkSource);
    f.announce_all = 2;
    let v = explain(&with_sender(&req, ip(EGRESS_PRIMARY)), &f);
    assert_eq!(v.reason, Reason::SelectAnnounce2);
}

#[test]
fn explain_verdict_json_field_names() {
    let (req, f) = seed();
    let v = explain(&req, &f);
    let json = serde_json::to_value(&v).unwrap();
    let obj = json.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "consequence",
            "explanation",
            "foreign_sender",
            "reason",
            "remedy"
        ]
    );
    assert_eq!(obj["reason"], "announce0_local_source");
    assert_eq!(obj["foreign_sender"], true);
    let mut remedy: Vec<&str> = obj["remedy"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    remedy.sort_unstable();
    assert_eq!(remedy, ["command", "persistent", "tradeoff"]);
    let text = json.to_string();
    let back: Verdict = serde_json::from_str(&text).unwrap();
    assert_eq!(back, v);

    let ok = explain(&request("eth3", "198.51.100.10", "198.51.100.20", None), &f);
    let json = serde_json::to_value(&ok).unwrap();
    assert!(json["consequence"].is_null());
    assert!(json["remedy"].is_null());
}

#[test]
fn explain_replays_from_the_event_alone() {
    let (mut req, f) = seed();
    for t in [None, Some(forwarded(NONLOCAL)), req.trigger.clone()] {
        req.trigger = t;
        let facts_json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<NsFacts<'_>>(&facts_json).unwrap(), f);
        let mut ev = req.clone();
        ev.egress = None; // internal; its values travel as `facts`
        ev.verdict = Some(explain(&req, &f));
        ev.facts = Some(RequestFacts::from_ns(&f, &req.ifname, false));
        let line = serde_json::to_string(&ev).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["arp_announce"],
            serde_json::json!({"all":0,"dev":0,"effective":0})
        );
        assert_eq!(v["addrs"], serde_json::json!(["198.51.100.10/24"]));
        assert!(
            v["reason"].is_string() && v["foreign_sender"].is_boolean(),
            "{v}"
        );
        let back: ArpEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev);
        let replayed = explain(&back, &back.facts.as_ref().unwrap().to_ns(&back.ifname));
        assert_eq!(Some(replayed), ev.verdict);
    }
}
