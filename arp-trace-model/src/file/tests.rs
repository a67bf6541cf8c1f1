use std::borrow::Cow;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::*;
use crate::test_rng::Rng;
use crate::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("arp-trace-model-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// ARP requests as the tracer reports them, with names that need escaping in JSON.
pub(crate) fn events(n: usize) -> Vec<ArpEvent<'static>> {
    (0..n)
        .map(|i| {
            let target = Ipv4Addr::new(198, 51, 100, (i % 250) as u8);
            let mut frame = vec![0xff; 6];
            frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
            frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 203, 0, 113, 10, 0, 0, 0, 0, 0, 0]);
            frame.extend_from_slice(&target.octets());
            ArpEvent {
                op: ArpOp::Request,
                direction: crate::Direction::Out,
                time: Time(1_795_894_257_000_000_000 + i as i128),
                netns: 4026532281,
                netns_name: (i % 2 == 0).then(|| "srv".into()),
                ifindex: 7,
                ifname: "eth3".into(),
                sender_ip: Ipv4Addr::new(203, 0, 113, 10),
                sender_mac: Mac([2, 0, 0, 0, 0, 1]),
                target_ip: target,
                target_mac: Mac::default(),
                unicast: false,
                eth_dst: Some(Mac::BROADCAST),
                frame: Hex::encode(&frame),
                trigger: (i % 3 != 0).then(|| Trigger {
                    src: Ipv4Addr::new(203, 0, 113, 10).into(),
                    dst: Ipv4Addr::new(198, 51, 100, 20).into(),
                    proto: "udp".into(),
                    sport: Some(41000),
                    dport: Some(9),
                    icmp_type: None,
                    len: 29,
                    mark: 0,
                    origin: Origin::Local,
                    pid: Some(4242),
                    comm: Some("python3 \"x\"\u{7f}".into()),
                    in_ifindex: None,
                    in_ifname: None,
                    drop_reason: None,
                }),
                task: None,
                neigh_state: Some("incomplete".into()),
                attempt: Some(1 + (i % 3) as u32),
                queued: None,
                egress: None,
                verdict: (i % 5 != 0).then(|| Verdict {
                    foreign_sender: true,
                    reason: Reason::Announce0LocalSource,
                    explanation: "eth3 announces 203.0.113.10".into(),
                    consequence: Some("peers log \"arp: attempt to overwrite entry\"".into()),
                    remedy: Some(Remedy {
                        command: "sysctl -w net.ipv4.conf.eth3.arp_announce=1".into(),
                        persistent: "echo x > /etc/sysctl.d/90-arp-announce-eth3.conf".into(),
                        tradeoff: "t".into(),
                    }),
                }),
                facts: (i % 5 != 0).then(|| RequestFacts {
                    arp_announce: Announce {
                        all: 0,
                        dev: Some(0),
                        effective: 0,
                    },
                    addrs: vec!["198.51.100.10/24".parse().unwrap()],
                    ns_addrs: vec![
                        if_addr("eth3", Ipv4Addr::new(198, 51, 100, 10), 24),
                        if_addr("eth5", Ipv4Addr::new(203, 0, 113, 10), 24),
                    ],
                    route_localnet: None,
                    links: None,
                    lenders: None,
                    lenders_cut: false,
                    arp_notify: None,
                }),
                facts_error: None,
            }
        })
        .collect()
}

fn header() -> Header {
    Header {
        hooks: "transmit=tp_btf/net_dev_queue".into(),
        own_netns: Some(7),
        snapshot: Some(Snapshot::default()),
        ..Header::empty(FORMAT_VERSION)
    }
}

fn trailer(requests: u64, events: u64, lost: u64) -> Summary<'static> {
    Summary {
        last: true,
        requests,
        counts: Some(TraceCounts {
            events,
            lost,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn arp(ev: &ArpEvent<'_>) -> String {
    Record::Arp(Held::Borrowed(ev)).to_json()
}

/// Writes `evs` in batches of `batch`, returning the file's bytes as a SIGKILL would leave
/// them (flushed, never closed) and as a clean close leaves them.
fn write(path: &Path, evs: &[ArpEvent<'_>], batch: usize) -> (Vec<u8>, Vec<u8>) {
    let mut w = TraceWriter::create(path, &header()).unwrap();
    for chunk in evs.chunks(batch) {
        for ev in chunk {
            w.write(&Record::Arp(Held::Borrowed(ev))).unwrap();
        }
        w.flush().unwrap();
    }
    let killed = std::fs::read(path).unwrap();
    w.close(&trailer(evs.len() as u64, w.events(), 3)).unwrap();
    (killed, std::fs::read(path).unwrap())
}

fn read_all(data: &[u8]) -> (Vec<ArpEvent<'static>>, TraceReader) {
    let mut r = TraceReader::from_reader("t", Box::new(io::Cursor::new(data.to_vec()))).unwrap();
    let mut out = vec![];
    while let Some(rec) = r.read_record().unwrap() {
        if let Record::Arp(e) = rec {
            out.push(e.into_inner().into_owned())
        }
    }
    (out, r)
}

#[test]
fn json_round_trips_byte_identical() {
    for ev in events(12) {
        let line = arp(&ev);
        assert!(line.starts_with(
            r#"{"type":"arp","op":"request","direction":"out","time":"2026-11-28T19:30:57"#
        ));
        let Record::Arp(back) = Record::parse(&line, FORMAT_VERSION).unwrap() else {
            panic!("{line}")
        };
        assert_eq!(*back, ev);
        assert_eq!(arp(&back), line);
    }
}

#[test]
fn reading_borrows_from_the_line() {
    let ev = &events(2)[1];
    let line = arp(ev);
    let Record::Arp(back) = Record::parse(&line, FORMAT_VERSION).unwrap() else {
        panic!()
    };
    assert!(matches!(back.ifname, Cow::Borrowed(_)));
    assert!(matches!(
        back.verdict.as_ref().unwrap().explanation,
        Cow::Borrowed(_)
    ));
    // An escaped string cannot be borrowed.
    let comm = back.trigger.as_ref().unwrap().comm.as_ref().unwrap();
    assert!(matches!(comm, Cow::Owned(_)));
}

#[test]
fn every_compression_round_trips_and_survives_a_kill() {
    let evs = events(300);
    for name in ["t.jsonl", "t.jsonl.gz", "t.jsonl.zst"] {
        let path = tmp(name);
        let (killed, whole) = write(&path, &evs, 7);
        let (got, r) = read_all(&whole);
        assert_eq!(got, evs, "{name}");
        assert!(r.warnings.is_empty(), "{name}: {:?}", r.warnings);
        let t = r.trailer.as_ref().unwrap();
        let c = t.counts.unwrap();
        assert_eq!((c.events, t.requests, c.lost), (300, 300, 3));
        assert_eq!(
            (r.header.hooks.as_str(), r.header.own_netns),
            ("transmit=tp_btf/net_dev_queue", Some(7))
        );

        // Killed after the last flush: every event, and a warning about the missing trailer.
        let (got, r) = read_all(&killed);
        assert_eq!(got, evs, "{name}");
        assert_eq!(r.warnings.len(), 1, "{name}");
        assert!(r.warnings[0].contains("cut"), "{:?}", r.warnings);

        // Cut anywhere: a prefix of the events, a warning, never an error.
        let mut prev = 0;
        for cut in (40..killed.len()).step_by(killed.len() / 50) {
            let data = &killed[..cut];
            if let Err(e) = TraceReader::from_reader("t", Box::new(io::Cursor::new(data.to_vec())))
            {
                // Only a cut inside the header itself leaves nothing to read.
                assert!(prev == 0 && e.line == Some(1), "{name} cut at {cut}: {e}");
                continue;
            }
            let (got, r) = read_all(data);
            assert_eq!(got[..], evs[..got.len()], "{name} cut at {cut}");
            assert!(
                got.len() >= prev,
                "{name}: a longer prefix reads no fewer events"
            );
            prev = got.len();
            assert_eq!(r.warnings.len(), 1, "{name} cut at {cut}: {:?}", r.warnings);
        }
        assert!(prev > 250, "{name}: batches decode up to the cut ({prev})");
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_compressed_stream_damaged_before_its_end_is_an_error_not_a_cut() {
    let evs = events(300);
    let path = tmp("damaged.jsonl.gz");
    let (_, whole) = write(&path, &evs, 7);
    std::fs::remove_file(&path).unwrap();
    // A wrong CRC-32 in the gzip trailer: every byte decodes, then the check fails.
    let mut damaged = whole.clone();
    let crc = damaged.len() - 8;
    damaged[crc] ^= 0x5a;
    let e = err_of(&damaged);
    assert!(e.contains("damaged, not cut"), "{e}");
    // The stream stopped early is a cut: read up to it, with a warning.
    let mid = whole.len() / 2;
    let (got, r) = read_all(&whole[..mid]);
    assert!(!got.is_empty() && got.len() < evs.len());
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
}

fn err_of(data: &[u8]) -> String {
    let mut r = match TraceReader::from_reader("f", Box::new(io::Cursor::new(data.to_vec()))) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    loop {
        match r.read_record() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(data)),
            Err(e) => return e.to_string(),
        }
    }
}

#[test]
fn bad_input_is_one_line_with_file_line_and_cause() {
    let h = Record::Header(Held::Owned(header())).to_json();
    let ev = arp(&events(1)[0]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "f: empty file"),
        (b"\n\n".to_vec(), "f line 1: not an arp-trace trace"),
        (format!("{ev}\n").into_bytes(), "f line 1: missing header"),
        (
            b"{\"x\":1}\n".to_vec(),
            "f line 1: not an arp-trace trace: no \"type\"",
        ),
        (
            (h.replace(
                &format!("\"format_version\":{FORMAT_VERSION}"),
                "\"format_version\":9",
            ) + "\n")
                .into_bytes(),
            "f line 1: format version 9 is newer",
        ),
        (
            (h.replace(
                &format!("\"format_version\":{FORMAT_VERSION}"),
                "\"format_version\":0",
            ) + "\n")
                .into_bytes(),
            "f line 1: format version 0 does not exist",
        ),
        (
            format!("{h}\n{{\"type\":\"bogus\"}}\n").into_bytes(),
            "f line 2: unknown record type \"bogus\"",
        ),
        (
            format!("{h}\n{ev}\n{{\"type\":\"arp\",\"op\n{ev}\n").into_bytes(),
            "f line 3: arp record",
        ),
        (
            format!("{h}\nnot json\n").into_bytes(),
            "f line 2: not a JSON record",
        ),
        (
            format!("{h}\n{h}\n").into_bytes(),
            "f line 2: a second header",
        ),
        (
            format!("{h}\n{}\n", ev.replace("\"op\":\"request\"", "\"op\":7")).into_bytes(),
            "f line 2: arp record",
        ),
        (
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            "f line 1: cannot read the header",
        ),
        (
            [format!("{h}\n").as_bytes(), b"{\"type\":\"arp\",\xff}\n"].concat(),
            "f line 2: not UTF-8 text (bad byte at column 15)",
        ),
    ];
    for (data, want) in cases {
        let e = err_of(&data);
        assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        assert!(!e.contains('\n'), "{e}");
    }
}

/// A reader that yields `len` bytes of `x` without a newline and allocates nothing itself.
struct Endless(u64);
impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(b'x');
        self.0 -= n as u64;
        Ok(n)
    }
}

#[test]
fn an_endless_line_is_refused_at_the_cap() {
    let h = Record::Header(Held::Owned(header())).to_json() + "\n";
    let src = io::Cursor::new(h.into_bytes()).chain(Endless(1 << 30));
    let mut r = TraceReader::from_reader("big", Box::new(src)).unwrap();
    let e = r.read_record().unwrap_err().to_string();
    assert!(
        e.starts_with("big line 2: line longer than 4 MiB: not an arp-trace record"),
        "{e}"
    );
    assert!(r.buf.capacity() <= 2 * MAX_LINE);
    let e = TraceReader::from_reader("big", Box::new(Endless(1 << 30)))
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("big line 1: line longer than 16 MiB"), "{e}");
}

#[test]
fn directories_and_missing_files_are_named() {
    let e = TraceReader::open(Path::new("/")).err().unwrap().to_string();
    assert!(e.starts_with("/: is a directory"), "{e}");
    let e = TraceReader::open(Path::new("/nonexistent/t"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/t: cannot open: No such file"),
        "{e}"
    );
}

/// The fuzz target's stable stand-in: mutated traces (plain and compressed) through the
/// reader; it must never panic. `ARP_TRACE_FUZZ_ITERS` raises the count.
#[test]
fn fuzz_smoke_reader_never_panics() {
    let iters: usize = std::env::var("ARP_TRACE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let evs = events(20);
    let mut seeds = vec![];
    for name in ["s.jsonl", "s.jsonl.gz", "s.jsonl.zst"] {
        let p = tmp(name);
        let (_, whole) = write(&p, &evs, 5);
        seeds.push(whole);
        std::fs::remove_file(p).unwrap();
    }
    let dict: &[&[u8]] = &[
        b"\n",
        b"{",
        b"}",
        b"\"",
        b"null",
        b"\"type\":\"summary\"",
        b"\"type\":\"header\"",
        b"\"format_version\":99",
        b"\xff",
        b"\\u0000",
        b"9999999999999999999999",
    ];
    let mut rng = Rng(0x5eed_a4b1_7ace);
    let mut records = 0u64;
    for i in 0..iters {
        let mut d = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(d.len());
            match rng.below(5) {
                0 => d[at] ^= 1 << rng.below(8),
                1 => d.truncate(at),
                2 => {
                    let w = dict[rng.below(dict.len())];
                    d.splice(at..at, w.iter().copied());
                }
                3 => {
                    let n = rng.below(64).min(d.len() - at.min(d.len()));
                    d.drain(at..at + n);
                }
                _ => {
                    let n = rng.below(200);
                    let src = rng.below(d.len());
                    let chunk: Vec<u8> = d[src..(src + n).min(d.len())].to_vec();
                    d.splice(at..at, chunk);
                }
            }
            if d.is_empty() {
                break;
            }
        }
        let (n, _) = read_bytes(&d);
        records += n;
    }
    assert!(records > 0, "mutations left some records readable");
}

fn read_plain(zst: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(zst).unwrap()
}

#[test]
fn parallel_reader_keeps_order_errors_and_warnings() {
    let evs = events(5000);
    let path = tmp("par.jsonl.zst");
    let (killed, whole) = write(&path, &evs, 333);
    std::fs::remove_file(&path).unwrap();
    let open = |d: &[u8]| {
        ParallelReader::new(
            TraceReader::from_reader("p", Box::new(io::Cursor::new(d.to_vec()))).unwrap(),
        )
    };
    let drain = |p: &mut ParallelReader| {
        let mut out = vec![];
        let mut summary = 0;
        let err = p
            .for_each(|rec| {
                match rec {
                    Record::Arp(e) => out.push((**e).clone().into_owned()),
                    Record::Summary(_) => summary += 1,
                    _ => {}
                }
                Ok::<_, TraceError>(true)
            })
            .err();
        (out, summary, err)
    };
    let mut p = open(&whole);
    let (got, summary, err) = drain(&mut p);
    assert!(got == evs && summary == 1 && err.is_none() && p.warnings.is_empty());
    let mut p = open(&killed[..killed.len() * 2 / 3]);
    let (got, _, err) = drain(&mut p);
    assert!(err.is_none() && got.len() > 1000 && got[..] == evs[..got.len()]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    // A corrupt line 3001: the 2999 events before it, then the error naming it.
    let mut text = String::from_utf8(read_plain(&whole)).unwrap();
    let start = text.match_indices('\n').nth(2999).unwrap().0 + 1;
    text.replace_range(start..start + 1, "[");
    let mut p = open(text.as_bytes());
    let (got, _, err) = drain(&mut p);
    assert_eq!(got.len(), 2999);
    assert!(err
        .unwrap()
        .to_string()
        .starts_with("p line 3001: not a JSON record"));
}

fn change(kind: ChangeKind) -> FactsChange<'static> {
    let mut c = FactsChange::new(4026532281, kind);
    c.time = Time(1_795_894_258_000_000_000);
    c.netns_name = Some("srv".into());
    match kind {
        ChangeKind::Watched => {
            c.arp_announce = Some([("all".to_string(), 0), ("eth3".to_string(), 0)].into());
            c.addrs = Some(vec![if_addr("eth3", Ipv4Addr::new(198, 51, 100, 10), 24)]);
        }
        ChangeKind::AddrAdded | ChangeKind::AddrRemoved => {
            c.ifname = Some("eth3".into());
            c.addr = Some(Ipv4Addr::new(198, 51, 100, 11));
            c.prefix_len = Some(24);
            c.scope = Some(0);
            c.secondary = Some(true);
        }
        ChangeKind::ArpAnnounce => {
            c.conf = Some("eth3".into());
            (c.before, c.after) = (Some(0), Some(2));
        }
    }
    c
}

#[test]
fn facts_changes_round_trip_and_the_trailer_follows_the_summary() {
    let path = tmp("changes.jsonl");
    let mut w = TraceWriter::create(&path, &header()).unwrap();
    let evs = events(4);
    let kinds = [
        ChangeKind::Watched,
        ChangeKind::AddrAdded,
        ChangeKind::ArpAnnounce,
        ChangeKind::AddrRemoved,
    ];
    for (ev, k) in evs.iter().zip(kinds) {
        w.write(&Record::FactsChange(Held::Owned(change(k))))
            .unwrap();
        w.write(&Record::Arp(Held::Borrowed(ev))).unwrap();
    }
    w.close(&trailer(4, w.events(), 1)).unwrap();
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = String::from_utf8(data.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[3],
        r#"{"type":"facts_change","time":"2026-11-28T19:30:58.000000000Z","netns":4026532281,"netns_name":"srv","change":"addr_added","ifname":"eth3","addr":"198.51.100.11","prefix_len":24,"scope":0,"secondary":true}"#
    );
    assert!(
        lines[5].contains(r#""change":"arp_announce","conf":"eth3","before":0,"after":2}"#),
        "{}",
        lines[5]
    );
    let mut r = TraceReader::from_reader("t", Box::new(io::Cursor::new(data))).unwrap();
    let mut got = vec![];
    let mut n = 1;
    while let Some(rec) = r.read_record().unwrap() {
        n += 1;
        // Read back, written again: the same bytes (what `-r --json` prints).
        assert_eq!(rec.to_json(), lines[n - 1]);
        if let Record::FactsChange(c) = rec {
            got.push(c.change);
        }
    }
    assert_eq!(got, kinds);
    let last = lines.last().unwrap();
    assert_eq!(
        *last,
        r#"{"type":"summary","final":true,"requests":4,"foreign_requests":0,"rows":[],"folded_requests":0,"events":8,"replies":0,"failures":0,"lost":1,"filtered":0,"undecodable":0,"end_time":"1970-01-01T00:00:00.000000000Z"}"#
    );
    let t = r.trailer.unwrap();
    let c = t.counts.unwrap();
    assert_eq!((c.events, t.requests, c.lost), (8, 4, 1));
}

/// A file version 1 wrote (no facts_change, a counts-only trailer) still reads; a
/// facts_change in a version 1 file is an unknown type there.
#[test]
fn version_1_files_still_read() {
    // Files before version 4 carry no direction: every frame in them was transmitted.
    let ev = arp(&events(1)[0]).replace(r#""direction":"out","#, "");
    assert!(!ev.contains("direction"), "{ev}");
    let h = Record::Header(Held::Owned(header())).to_json().replace(
        &format!("\"format_version\":{FORMAT_VERSION}"),
        "\"format_version\":1",
    );
    assert!(h.contains("\"format_version\":1"), "{h}");
    let trailer = r#"{"type":"summary","events":1,"requests":1,"replies":0,"failures":0,"lost":2,"filtered":0,"undecodable":0,"end_time":"2026-11-28T19:31:03.000000000Z"}"#;
    let v1 = format!("{h}\n{ev}\n{trailer}\n");
    let (got, r) = read_all(v1.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].direction, crate::Direction::Out);
    assert_eq!(r.header.format_version, 1);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let t = r.trailer.as_ref().unwrap();
    assert_eq!((t.counts.unwrap().events, t.counts.unwrap().lost), (1, 2));
    let ch = Record::FactsChange(Held::Owned(change(ChangeKind::ArpAnnounce))).to_json();
    assert_eq!(
        err_of(format!("{h}\n{ch}\n").as_bytes()),
        "f line 2: unknown record type \"facts_change\" for format version 1 (written by a \
         newer arp-trace?)"
    );
    let h2 = Record::Header(Held::Owned(header())).to_json();
    let (got, _) = read_all(format!("{h2}\n{ch}\n{ev}\n").as_bytes());
    assert_eq!(got.len(), 1);
}

/// The header's snapshot is typed but written as the sorted JSON map it began as.
#[test]
fn snapshot_keeps_its_sorted_shape() {
    let json = r#"{"namespaces":{"gone":{"error":"No such file","netns":9},"srv":{"all":{"arp_announce":0,"arp_filter":0,"arp_ignore":0},"interfaces":{"eth3":{"arp_announce":0,"arp_filter":0,"arp_ignore":0,"ipv4":["198.51.100.10/24"]},"lo":{"arp_announce":0,"ipv4":[]}},"netns":4026532281}}}"#;
    let s: Snapshot = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_string(&s).unwrap(), json);
}
