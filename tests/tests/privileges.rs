//! End-to-end privileges (issue 12): the capability set the README documents is enough to
//! catch, attribute and explain the seed request as an unprivileged user, and one capability
//! fewer is refused with that capability named, by the tracer and by `doctor`.

use std::net::SocketAddrV4;

use arp_trace_e2e::*;

/// Entry point of the helper child processes; not a test (returns at once in a test run).
#[test]
#[ignore = "entry point for helper processes spawned by the tests, not a test"]
fn helper_process() {
    helper_main();
}

/// Exactly the capabilities README's Requirements names as required, in setpriv's syntax.
const REQUIRED: &str = "+bpf,+perfmon,+syslog,+sys_admin";

fn sa(ip: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.parse().expect("IPv4 address"), port)
}

#[test]
fn the_documented_capabilities_catch_and_explain_the_seed_request() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let (t, _exe) = Tracer::start_with_caps(REQUIRED, &["--json", "--netns", srv.name()]);
    let mut h = Helper::spawn(srv, "at-caps-send");
    srv.flush_neigh();
    let sport = h.udp(sa(SRV_ETH5_IP, 0), sa(C3_IP, 9), 0);
    let evs = t.wait_for(
        |v| is_request(v) && v["target_ip"] == C3_IP && v["trigger"]["sport"] == sport,
        EVENT_TIMEOUT,
    );
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let ev = &evs[0];
    assert_fields(
        ev,
        &[
            ("sender_ip", json!(SRV_ETH5_IP)),
            ("reason", json!("announce0_local_source")),
            ("foreign_sender", json!(true)),
        ],
    );
    assert_fields(
        &ev["trigger"],
        &[("pid", json!(h.pid())), ("comm", json!(h.comm()))],
    );
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn one_capability_fewer_is_named() {
    for (caps, missing) in [
        ("+bpf,+perfmon,+syslog", "CAP_SYS_ADMIN"),
        ("+bpf,+syslog,+sys_admin", "CAP_PERFMON"),
        ("+perfmon,+syslog,+sys_admin", "CAP_BPF"),
    ] {
        let f = run_with_caps(Some(caps), &["-c", "1"]);
        assert_eq!(f.status.code(), Some(1), "{caps}: {}", f.stderr);
        let lines = f.stderr_lines();
        assert_eq!(lines.len(), 1, "{caps}: {lines:?}");
        assert!(
            lines[0].contains(missing) && lines[0].contains("permission denied"),
            "{caps}: {}",
            lines[0]
        );
        let d = run_with_caps(Some(caps), &["doctor"]);
        assert!(!d.status.success(), "{caps}: doctor passed:\n{}", d.stdout);
        assert!(
            d.stdout
                .lines()
                .any(|l| l.contains("FAIL") && l.contains(missing) && l.contains("MISSING")),
            "{caps}: doctor does not name {missing}:\n{}",
            d.stdout
        );
    }
    let d = run_with_caps(Some(REQUIRED), &["doctor"]);
    assert!(
        d.status.success(),
        "doctor with the documented set:\n{}",
        d.stdout
    );
}

/// `doctor --json` as a user without capabilities: one JSON object whose failed privilege
/// check and `ok` agree with the non-zero exit.
#[test]
fn doctor_json_names_the_missing_privileges() {
    let d = run_unprivileged(&["doctor", "--json"]);
    no_panic(&d);
    assert_eq!(d.status.code(), Some(1), "{d:?}");
    let v: serde_json::Value = serde_json::from_str(&d.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not one JSON object ({e}): {d:?}"));
    assert_eq!(v["ok"], false, "{v}");
    let checks = v["checks"].as_array().expect("checks");
    let privileges = checks
        .iter()
        .find(|c| c["name"] == "privileges")
        .unwrap_or_else(|| panic!("no privileges check: {v}"));
    assert_eq!(privileges["ok"], false, "{v}");
    assert!(
        checks.iter().any(|c| c["name"] == "CAP_BPF"
            && c["ok"] == false
            && c["detail"].as_str().unwrap().contains("MISSING")),
        "{v}"
    );
    assert_eq!(v["hooks_tried"], false, "{v}");
}
