//! End-to-end: the JSON Schema of every record (`arp-trace-model/schema/arp-trace.schema.json`)
//! checked by a real validator, check-jsonschema (`cargo xtask test` installs it into
//! target/tools/venv), against what arp-trace writes: live `--json` output, a trace file and
//! its replay with `-r --json`, and every line of every fuzz seed; broken records are refused.
//! The header line of each carries the schema's version.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arp_trace_e2e::*;

fn schema_file() -> PathBuf {
    workspace().join("arp-trace-model/schema/arp-trace.schema.json")
}

/// The schema's version, as its `$id` ends (`urn:arp-trace:schema:N`).
fn schema_version() -> u64 {
    let s: Value = serde_json::from_str(&std::fs::read_to_string(schema_file()).unwrap()).unwrap();
    let id = s["$id"].as_str().expect("the schema has an $id");
    id.rsplit(':')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version at the end of $id {id}"))
}

fn validator() -> PathBuf {
    venv_tool("check-jsonschema")
}

/// Runs the validator over `lines`, each in a file of its own (it validates one JSON
/// document per file), named `<tag>-<line number>.json` so a failure names the line.
fn check(d: &Scratch, tag: &str, lines: &[&str]) -> Finished {
    assert!(!lines.is_empty(), "{tag}: nothing to validate");
    let dir = Path::new(&d.file(tag)).to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Command::new(validator());
    c.arg("--schemafile").arg(schema_file());
    for (i, l) in lines.iter().enumerate() {
        let f = dir.join(format!("{tag}-{}.json", i + 1));
        std::fs::write(&f, l).unwrap();
        c.arg(f);
    }
    run_to_completion(c, Duration::from_secs(120))
}

/// Every non-blank line of `text` validates.
#[track_caller]
fn assert_valid(d: &Scratch, tag: &str, text: &str) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let f = check(d, tag, &lines);
    assert!(
        f.status.success(),
        "{tag}: the schema refuses what arp-trace wrote:\n{}\n{}",
        f.stdout,
        f.stderr
    );
}

/// The first line is a header carrying the schema's version.
#[track_caller]
fn assert_versioned(what: &str, text: &str) {
    let first = text.lines().next().unwrap_or_default();
    let v: Value = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("{what}: first line is not JSON ({e}): {first}"));
    assert_eq!(v["type"], "header", "{what}: first line {first}");
    assert_eq!(
        v["schema_version"],
        schema_version(),
        "{what}: header {first}"
    );
}

/// The record types `text` holds, in order of first appearance.
fn types(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in parse_json_lines(text) {
        let t = v["type"].as_str().unwrap_or_default().to_string();
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

#[test]
fn live_output_a_trace_and_its_replay_follow_the_schema() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let d = Scratch::new("schema-live");
    let trace = d.file("t.jsonl");
    let ns = ["--netns", srv.name(), "--netns", seed.c3.name()];
    let t = Tracer::start(&[&["--json", "-w", &trace][..], &ns].concat());
    // A foreign sender (a verdict with a remedy, and its facts), an answered request and its
    // reply (from c3), and a resolution that fails (neigh_failed with the dropped packet).
    // One solicitation, failed after retrans_time: the schema needs the record, not three
    // seconds of retransmits.
    for fam in ["ipv4", "ipv6"] {
        srv.sysctl(&format!("net/{fam}/neigh/eth3/mcast_solicit"), "1");
        srv.sysctl(&format!("net/{fam}/neigh/eth3/retrans_time_ms"), "200");
    }
    srv.flush_neigh();
    srv.send_udp(Some(SRV_ETH5_IP.parse().unwrap()), udp(C3_IP));
    t.wait_for(
        |v| is_request(v) && v["foreign_sender"] == true,
        EVENT_TIMEOUT,
    );
    srv.flush_neigh();
    srv.send_udp(None, udp(C3_IP));
    srv.send_udp(None, udp("198.51.100.99"));
    t.wait_for(
        |v| v["type"] == "neigh_failed" && from_ns(v, srv),
        EVENT_TIMEOUT,
    );
    // IPv6 too: a solicitation with its IPv6 trigger and device addresses, and a failed
    // IPv6 entry with its dropped packet.
    srv.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:3::1/64",
        "dev",
        "eth3",
        "nodad",
    ]);
    seed.c3.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:3::44/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    srv.send_udp6(Some("2001:db8:3::1"), "2001:db8:3::44");
    srv.send_udp6(Some("2001:db8:3::1"), "2001:db8:3::99");
    t.wait_for(
        |v| v["type"] == "neigh_failed" && v["target_ip"] == "2001:db8:3::99",
        EVENT_TIMEOUT,
    );
    let (status, live, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    let mut seen = types(&live);
    seen.sort();
    assert_eq!(
        seen,
        [
            "arp",
            "conflict",
            "facts_change",
            "header",
            "ndisc",
            "neigh_change",
            "neigh_failed",
            "summary"
        ],
        "{live}"
    );
    assert!(parse_json_lines(&live).iter().any(is_reply), "{live}");
    assert_versioned("live --json", &live);
    assert_valid(&d, "live", &live);

    // The file itself: its header with the snapshot, its trailer with the counts.
    let file = std::fs::read_to_string(&trace).unwrap();
    assert_versioned("the trace file", &file);
    assert!(file.lines().next().unwrap().contains("\"namespaces\""));
    assert_valid(&d, "file", &file);

    let replay = arp_trace(&["-r", &trace, "--json"]);
    assert!(replay.status.success(), "{replay:?}");
    assert_versioned("-r --json", &replay.stdout);
    assert_valid(&d, "replay", &replay.stdout);
    // -q --json: the header line and the summary, nothing else.
    let quiet = arp_trace(&["-r", &trace, "--json", "-q"]);
    assert!(quiet.status.success(), "{quiet:?}");
    assert_eq!(types(&quiet.stdout), ["header", "summary"], "{quiet:?}");
    assert_versioned("-r --json -q", &quiet.stdout);
    assert_valid(&d, "quiet", &quiet.stdout);
}

#[test]
fn every_line_of_every_fuzz_seed_follows_the_schema() {
    let d = Scratch::new("schema-seeds");
    let dir = workspace().join("fuzz/seeds");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 3, "{seeds:?}");
    for path in seeds {
        let raw = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut text = String::new();
        if name.ends_with(".gz") {
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_string(&mut text)
                .unwrap();
        } else if name.ends_with(".zst") {
            zstd::stream::read::Decoder::new(&raw[..])
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
        } else {
            text = String::from_utf8(raw).unwrap();
        }
        assert_versioned(&name, &text);
        assert_valid(&d, &name.replace('.', "_"), &text);
    }
}

/// A record arp-trace writes, with one thing broken at a time: each is refused, for the
/// field that is wrong.
#[test]
fn broken_records_are_refused() {
    let d = Scratch::new("schema-broken");
    let seed = std::fs::read_to_string(workspace().join("fuzz/seeds/six.jsonl")).unwrap();
    let header = seed.lines().next().unwrap();
    let arp = seed
        .lines()
        .find(|l| l.starts_with(r#"{"type":"arp""#))
        .unwrap();
    let failed = seed
        .lines()
        .find(|l| l.starts_with(r#"{"type":"neigh_failed""#))
        .unwrap();
    // The originals pass: what is refused below is the change alone.
    assert_valid(&d, "whole", &[header, arp, failed].join("\n"));
    let v: Value = serde_json::from_str(arp).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut o = v.as_object().unwrap().clone();
        f(&mut o);
        Value::Object(o).to_string()
    };
    let version = schema_version();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad-ip",
            edit(&|o| {
                o.insert("sender_ip".into(), json!("999.1.1.1"));
            }),
            "999.1.1.1",
        ),
        (
            "missing",
            edit(&|o| {
                o.remove("ifindex");
            }),
            "'ifindex' is a required property",
        ),
        (
            "wrong-type",
            edit(&|o| {
                o.insert("attempt".into(), json!("1"));
            }),
            "is not of type",
        ),
        (
            "bad-mac",
            edit(&|o| {
                o.insert("sender_mac".into(), json!("de:67:76:da:bf"));
            }),
            "de:67:76:da:bf",
        ),
        (
            "no-such-date",
            edit(&|o| {
                o.insert("time".into(), json!("2026-02-31T23:59:59.5Z"));
            }),
            "2026-02-31",
        ),
        (
            "unknown-field",
            edit(&|o| {
                o.insert("sender".into(), json!("x"));
            }),
            "'sender' was unexpected",
        ),
        (
            "bad-enum",
            edit(&|o| {
                o.insert("op".into(), json!("inform"));
            }),
            "'inform' is not one of",
        ),
        (
            "odd-hex",
            edit(&|o| {
                o.insert("frame".into(), json!("fff"));
            }),
            "'fff' does not match",
        ),
        (
            "half-a-verdict",
            edit(&|o| {
                o.insert("foreign_sender".into(), json!(true));
            }),
            "dependen",
        ),
        (
            "unknown-type",
            failed.replace("\"neigh_failed\"", "\"neigh_gone\""),
            "'neigh_gone' is not one of",
        ),
        (
            "other-version",
            header.replace(
                &format!("\"schema_version\":{version}"),
                &format!("\"schema_version\":{}", version + 1),
            ),
            "schema_version",
        ),
        (
            "no-version",
            header.replace(&format!("\"schema_version\":{version},"), ""),
            "'schema_version' is a required property",
        ),
    ];
    for (tag, line, want) in cases {
        let f = check(&d, tag, &[&line]);
        assert!(!f.status.success(), "{tag}: accepted {line}");
        let out = format!("{}{}", f.stdout, f.stderr);
        assert!(
            out.contains(want),
            "{tag}: refused, but not for {want:?}:\n{out}"
        );
    }
}
