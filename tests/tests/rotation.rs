//! End-to-end `-w` rotation (issue 17), tcpdump's `-C`, `-G` and `-W`: every file is a whole
//! trace that `-r` reads alone (header, its records, a trailer with its own summary and
//! counts), files end where `-C` says, and `-W` keeps the number of files bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

/// The rotated files in `dir`, by modification order, as (path, text).
fn files(dir: &Path, prefix: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| {
            let p = e.path();
            let t = e.metadata().unwrap().modified().unwrap();
            (t, p.to_str().unwrap().to_string())
        })
        .collect();
    v.sort();
    v.into_iter()
        .map(|(_, p)| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Checks one file is a whole trace: `-r` reads it with no warning, header first, trailer
/// last counting exactly the records between them; returns its ARP requests.
fn whole(path: &str, text: &str) -> usize {
    let lines: Vec<Value> = parse_json_lines(text);
    assert!(lines.len() >= 2, "{path}: {text}");
    assert_eq!(lines[0]["type"], "header", "{path}");
    let trailer = lines.last().unwrap();
    assert_eq!(trailer["type"], "summary", "{path}: no trailer");
    let records = &lines[1..lines.len() - 1];
    assert_eq!(trailer["events"], records.len() as u64, "{path}");
    // The trailer counts neighbour solicitations (the namespaces' own DAD) as requests too.
    let solicits = records
        .iter()
        .filter(|v| v["type"] == "ndisc" && v["op"] == "solicit")
        .count();
    let requests = records.iter().filter(|v| is_request(v)).count();
    assert_eq!(trailer["requests"], (requests + solicits) as u64, "{path}");
    let f = arp_trace(&["-r", path, "--json"]);
    assert!(f.status.success(), "{path}: {f:?}");
    assert!(!f.stderr.contains("warning"), "{path}: {}", f.stderr);
    // What -r prints is the file's own records, and its own summary.
    let out = parse_json_lines(&f.stdout);
    assert_eq!(
        out.iter().filter(|v| is_request(v)).count(),
        requests,
        "{path}"
    );
    requests
}

/// Requests to `n` absent hosts of 198.51.100.0/24 from the lone namespace, a few at a time.
fn solicit(ns: &Netns, n: u8) {
    for i in 0..n {
        ns.send_udp(None, udp(&format!("198.51.100.{}", 100 + i)));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn size_rotation_ends_each_file_past_the_limit_and_each_reads_alone() {
    let d = Scratch::new("rot-size");
    let ns = lone("rs");
    let w = d.file("t.jsonl");
    let t = Tracer::start(&["--json", "--netns", ns.name(), "-w", &w, "-C", "16k"]);
    solicit(&ns, 30);
    t.wait_for_n(|v| is_request(v) && from_ns(v, &ns), 30, EVENT_TIMEOUT);
    let (status, stdout, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    let live = parse_json_lines(&stdout)
        .iter()
        .filter(|v| is_request(v))
        .count();

    let fs = files(&d.0, "t.jsonl");
    assert!(
        fs.len() >= 3,
        "several files expected: {:?}",
        fs.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    // tcpdump's names: the first keeps the name, then 1, 2, ...
    for (i, (p, _)) in fs.iter().enumerate() {
        let want = if i == 0 { w.clone() } else { format!("{w}{i}") };
        assert_eq!(*p, want);
    }
    let mut total = 0;
    for (i, (p, text)) in fs.iter().enumerate() {
        total += whole(p, text);
        // The limit is checked before each record: all but the last record went in while
        // the file was at most 16 KiB (unless the header alone, a snapshot of every
        // namespace on the host, is larger), and every file but the last went past it.
        let body: Vec<&str> = text.lines().collect();
        let before_last: usize = body[..body.len() - 2].iter().map(|l| l.len() + 1).sum();
        assert!(
            before_last <= 16384 || body.len() == 3,
            "{p}: {before_last} bytes before its last record"
        );
        if i + 1 < fs.len() {
            assert!(
                text.len() - body.last().unwrap().len() - 1 > 16384,
                "{p} ended early"
            );
        }
    }
    assert_eq!(total, live, "every request is in exactly one file");
    // diff reads any two of them alone (exit 0 or 1 as diff(1), never 2: trouble).
    let (first, last) = (&fs[0].0, &fs[fs.len() - 1].0);
    let f = arp_trace(&["diff", first, last]);
    assert!(
        matches!(f.status.code(), Some(0 | 1)),
        "diff {first} {last}: {f:?}"
    );
    assert!(f.stdout.contains("verdict"), "{f:?}");
}

#[test]
fn size_rotation_with_w_reuses_count_names_ring_wise() {
    let d = Scratch::new("rot-ring");
    let ns = lone("rr");
    let w = d.file("r.jsonl");
    let t = Tracer::start(&[
        "--json",
        "--netns",
        ns.name(),
        "-w",
        &w,
        "-C",
        "8k",
        "-W",
        "3",
    ]);
    solicit(&ns, 30);
    t.wait_for_n(|v| is_request(v) && from_ns(v, &ns), 30, EVENT_TIMEOUT);
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    let fs = files(&d.0, "r.jsonl");
    let mut names: Vec<&str> = fs.iter().map(|(p, _)| p.as_str()).collect();
    names.sort();
    let want: Vec<String> = (0..3).map(|i| format!("{w}{i}")).collect();
    assert_eq!(names, want, "only the ring's three names");
    for (p, text) in &fs {
        whole(p, text);
    }
}

#[test]
fn time_rotation_keeps_at_most_count_files_named_by_their_start() {
    let d = Scratch::new("rot-time");
    let ns = lone("rt");
    let w = d.file("g-%s.jsonl");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = Tracer::start(&[
        "--json",
        "--netns",
        ns.name(),
        "-w",
        &w,
        "-G",
        "1",
        "-W",
        "2",
    ]);
    let end = Instant::now() + Duration::from_millis(4500);
    let mut i = 0;
    while Instant::now() < end {
        ns.send_udp(None, udp(&format!("198.51.100.{}", 100 + i)));
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    let fs = files(&d.0, "g-");
    assert_eq!(
        fs.len(),
        2,
        "-W 2: {:?}",
        fs.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let mut starts = Vec::new();
    for (p, text) in &fs {
        whole(p, text);
        let secs: u64 = Path::new(p)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_start_matches("g-")
            .trim_end_matches(".jsonl")
            .parse()
            .unwrap_or_else(|_| panic!("{p}: no time in the name"));
        starts.push(secs);
    }
    starts.sort();
    // The two newest windows: older files were removed, and each file began on its own.
    assert!(starts[0] >= started + 2, "{starts:?} vs start {started}");
    assert!(starts[1] > starts[0], "{starts:?}");
}

#[test]
fn rotation_options_are_checked_before_tracing() {
    for (args, want) in [
        (&["-w", "x", "-C", "0"][..], "limited to nothing"),
        (&["-C", "5"], "--write"),
        (&["-w", "x", "-W", "2"], "-C"),
        (&["-w", "x", "-G", "1.5"], "seconds"),
    ] {
        let f = arp_trace(args);
        assert_eq!(f.status.code(), Some(2), "{args:?}: {f:?}");
        assert!(f.stderr.contains(want), "{args:?}: {f:?}");
        assert!(!f.stderr.contains("panicked"), "{f:?}");
    }
}
