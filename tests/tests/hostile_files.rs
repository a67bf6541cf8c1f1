//! End-to-end: `arp-trace -r` and `arp-trace diff` on hostile trace files stay under the
//! memory bound the README gives (Traces), whatever the file holds: each file here is made to
//! cost as much as its shape can (names and texts at their limits or far beyond, a header
//! array of 60 MiB, a header with every list entry it may have, a million groups, lines of
//! maps, a trailer at its limit, a million short lines), streamed into the tracer through a
//! FIFO, and the peak RSS of the process is read from wait4(2).

use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

/// What `-r` and `diff` may hold, as the README says.
const BOUND_MIB: i64 = 256;

/// Whether this runs in one of `cargo xtask vm`'s guests (its init reads this file): these
/// tests read files only, so another kernel proves nothing more, and software emulation would
/// take most of the guest's time on them.
fn in_vm_guest() -> bool {
    Path::new("/etc/arp-trace-vm.env").exists()
}

type Gen = fn(&mut dyn Write) -> io::Result<()>;

/// A FIFO fed by `gen` from a thread: what the tracer reads as a file.
struct Fifo {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    writer: Option<thread::JoinHandle<()>>,
}

impl Fifo {
    fn new(dir: &Path, name: &str, gen: Gen) -> Fifo {
        let path = dir.join(name);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path in our own directory.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (path.clone(), stop.clone());
        let writer = thread::spawn(move || {
            // Open without blocking, so a reader that never comes (it failed on the other
            // file) does not hold this thread forever.
            let f = loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&p)
                {
                    Ok(f) => break f,
                    Err(_) if !s.load(Ordering::Relaxed) => thread::sleep(Duration::from_millis(5)),
                    Err(_) => return,
                }
            };
            // SAFETY: plain fcntl on a descriptor we own: back to blocking writes.
            unsafe {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
                libc::fcntl(
                    fd,
                    libc::F_SETFL,
                    libc::fcntl(fd, libc::F_GETFL) & !libc::O_NONBLOCK,
                );
            }
            // The reader may stop early (a refused line): the broken pipe ends the writer.
            let _ = gen(&mut BufWriter::with_capacity(1 << 20, f));
        });
        Fifo {
            path,
            stop,
            writer: Some(writer),
        }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Run {
    code: i32,
    stderr: String,
    peak_mib: i64,
}

/// Runs arp-trace with `args`, each `{}` replaced by the next FIFO fed by `gens`; returns its
/// exit code, stderr and peak RSS.
// The child is reaped with wait4(2) to read its peak RSS.
#[allow(clippy::zombie_processes)]
fn run(tag: &str, args: &[&str], gens: &[Gen]) -> Option<Run> {
    if in_vm_guest() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("arp-trace-hostile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifos: Vec<Fifo> = gens
        .iter()
        .enumerate()
        .map(|(i, g)| Fifo::new(&dir, &format!("{tag}{i}.jsonl"), *g))
        .collect();
    let mut paths = fifos.iter().map(|f| f.path.to_str().unwrap().to_string());
    let args: Vec<String> = args
        .iter()
        .map(|a| match *a {
            "{}" => paths.next().unwrap(),
            a => a.to_string(),
        })
        .collect();
    let mut child = Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + scaled(Duration::from_secs(600));
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 on our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: as above.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("arp-trace {args:?} did not finish");
        }
        thread::sleep(Duration::from_millis(20));
    }
    drop(fifos);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = reader.join().unwrap();
    let peak_mib = ru.ru_maxrss / 1024;
    eprintln!(
        "{tag}: {args:?}: peak RSS {peak_mib} MiB, {}",
        stderr.trim()
    );
    Some(Run {
        code: libc::WEXITSTATUS(status),
        stderr,
        peak_mib,
    })
}

/// Fails unless the run (if it ran) stayed under the bound and ended with `code` and a stderr
/// holding `stderr`.
fn assert_bounded(r: &Option<Run>, code: i32, stderr: &str) {
    let Some(r) = r else { return };
    assert!(
        r.peak_mib < BOUND_MIB,
        "peak RSS {} MiB over {BOUND_MIB}",
        r.peak_mib
    );
    assert_eq!(r.code, code, "{}", r.stderr);
    assert!(r.stderr.contains(stderr), "{stderr:?} not in {}", r.stderr);
}

const HEADER: &str = r#"{"type":"header","format_version":2,"arp_trace_version":"0.1.0","hostname":"h","start_time":"2026-11-28T20:34:42Z","hooks":"x","own_netns":1,"netns_names":{},"snapshot":{"namespaces":{}}}"#;

/// 198.51.100.10: every request comes from it (groups differ by namespace).
const SENDER: u32 = 0xC633_640A;

/// An ARP request; `rest` ends the object (after a comma).
fn arp(
    w: &mut dyn Write,
    netns: u32,
    netns_name: &str,
    ifname: &str,
    sender: u32,
    rest: &str,
) -> io::Result<()> {
    let s = std::net::Ipv4Addr::from(sender);
    writeln!(
        w,
        r#"{{"type":"arp","op":"request","time":"2026-11-28T20:34:43Z","netns":{netns},"netns_name":{netns_name},"ifindex":3,"ifname":"{ifname}","sender_ip":"{s}","sender_mac":"de:67:76:da:bf:90","target_ip":"198.51.100.20","target_mac":"00:00:00:00:00:00","unicast":false,"eth_dst":null,"frame":"00"{rest}}}"#
    )
}

/// 200 requests with 8 MiB interface names (5 GB peak before the limits).
fn big_names(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{HEADER}")?;
    let mut name = "x".repeat(8 << 20);
    for i in 0..200 {
        // A row of the summary each.
        name.replace_range(..3, &format!("{i:03}"));
        arp(w, 1, "null", &name, SENDER, "")?;
    }
    Ok(())
}

/// A header with a 60 MiB array (2 GB peak before the limits).
fn header_array(w: &mut dyn Write) -> io::Result<()> {
    write!(
        w,
        r#"{{"type":"header","format_version":2,"snapshot":{{"namespaces":{{"a":{{"netns":1,"interfaces":{{"e":{{"ipv4":["1.2.3.4/24""#
    )?;
    let chunk = r#","1.2.3.4/24""#.repeat(4096);
    for _ in 0..(60 << 20) / chunk.len() {
        w.write_all(chunk.as_bytes())?;
    }
    writeln!(w, "]}}}}}}}}}}")
}

/// A header with every list entry it may have, as empty interfaces (the costliest entry
/// parsed and compared), in namespaces named `prefix0..15`.
fn full_header(w: &mut dyn Write, prefix: char) -> io::Result<()> {
    write!(
        w,
        r#"{{"type":"header","format_version":2,"snapshot":{{"namespaces":{{"#
    )?;
    for n in 0..16 {
        let sep = if n == 0 { "" } else { "," };
        write!(w, r#"{sep}"{prefix}{n}":{{"netns":{n},"interfaces":{{"#)?;
        for i in 0..4095 {
            write!(w, r#"{}"i{i}":{{}}"#, if i == 0 { "" } else { "," })?;
        }
        write!(w, "}}}}")?;
    }
    writeln!(w, "}}}}}}")?;
    for _ in 0..1000 {
        arp(w, 1, "null", "eth3", SENDER, "")?;
    }
    Ok(())
}

fn full_header_a(w: &mut dyn Write) -> io::Result<()> {
    full_header(w, 'a')
}

fn full_header_b(w: &mut dyn Write) -> io::Result<()> {
    full_header(w, 'b')
}

/// A million groups: a request from each of a million namespaces (638 MB peak for `diff`
/// before its groups went through the summary's capped table).
fn million_groups(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{HEADER}")?;
    for i in 0..1_000_000 {
        arp(w, i, "null", "eth3", SENDER, "")?;
    }
    Ok(())
}

/// Every request in a namespace of its own, with names, explanation and remedy texts at their
/// limits: the summary's table fills by bytes.
fn long_texts(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{HEADER}")?;
    let t = "x".repeat(8 << 10);
    let verdict = format!(
        r#","foreign_sender":true,"reason":"announce0_local_source","explanation":"{t}","consequence":"{t}","remedy":{{"command":"{t}","persistent":"{t}","tradeoff":"{t}"}}"#
    );
    let name = format!("\"{}\"", "n".repeat(1020));
    for i in 0..6000 {
        arp(w, i, &name, &"e".repeat(60), SENDER, &verdict)?;
    }
    Ok(())
}

/// `watched` records with as many interfaces and addresses as one may list: lines of maps,
/// which cost the most parsed per byte of text.
fn watched_maps(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{HEADER}")?;
    let mut line = String::from(
        r#"{"type":"facts_change","time":"2026-11-28T20:34:43Z","netns":NS,"netns_name":null,"change":"watched","arp_announce":{"#,
    );
    for i in 0..65_536 {
        line.push_str(&format!(r#"{}"i{i:05}":0"#, if i == 0 { "" } else { "," }));
    }
    line.push_str(r#"},"addrs":["#);
    for i in 0..4096 {
        line.push_str(&format!(
            r#"{}{{"ifname":"i","addr":"1.2.3.4","prefix_len":24}}"#,
            if i == 0 { "" } else { "," }
        ));
    }
    line.push_str("]}");
    for ns in 0..40 {
        writeln!(w, "{}", line.replace("NS", &ns.to_string()))?;
    }
    Ok(())
}

/// A summary trailer near its 16 MiB limit: 4096 rows with remedies and full top lists.
fn long_trailer(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{HEADER}")?;
    arp(w, 1, "null", "eth3", SENDER, "")?;
    let top = |c: char| {
        let one = format!(r#"{{"name":"{}","count":1}}"#, c.to_string().repeat(30));
        format!("[{}]", vec![one; 9].join(","))
    };
    let (flows, procs) = (top('f'), top('p'));
    let remedy = format!(
        r#"{{"command":"{}","persistent":"{}","tradeoff":"{}"}}"#,
        "c".repeat(900),
        "p".repeat(900),
        "t".repeat(900)
    );
    write!(w, r#"{{"type":"summary","final":true,"rows":["#)?;
    for i in 0..4096 {
        write!(
            w,
            r#"{}{{"netns":{i},"netns_name":null,"ifname":"eth3","sender_ip":"1.2.3.4","reason":null,"foreign_sender":null,"requests":1,"distinct_targets":1,"distinct_targets_capped":false,"first_seen":"2026-11-28T20:34:43Z","last_seen":"2026-11-28T20:34:43Z","top_flows":{flows},"other_flows":0,"top_processes":{procs},"other_processes":0,"remedy":{remedy}}}"#,
            if i == 0 { "" } else { "," }
        )?;
    }
    writeln!(w, "]}}")
}

/// A million of the shortest records.
fn short_lines(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{HEADER}")?;
    for _ in 0..1_000_000 {
        w.write_all(
            br#"{"type":"neigh_failed","time":"2026-11-28T20:34:43Z","netns":1,"ifindex":2,"ifname":"e","target_ip":"1.2.3.4","attempts":1,"dropped":[],"dropped_omitted":0}
"#,
        )?;
    }
    Ok(())
}

#[test]
fn lines_over_their_limit_are_refused_in_bounded_memory() {
    let r = run("names", &["-r", "{}", "-q"], &[big_names]);
    assert_bounded(&r, 1, "line 2: line longer than 4 MiB");
    let r = run("header", &["-r", "{}", "-q"], &[header_array]);
    assert_bounded(&r, 1, "line 1: line longer than 16 MiB");
    let r = run("dnames", &["diff", "{}", "{}"], &[big_names, header_array]);
    assert_bounded(&r, 2, "line 2: line longer than 4 MiB");
}

#[test]
fn a_full_header_stays_bounded() {
    let r = run("full", &["-r", "{}", "-q"], &[full_header_a]);
    assert_bounded(&r, 0, "1000 ARP requests");
    // Every namespace differs: each is compared and printed whole.
    for out in ["", "--json"] {
        let mut args = vec!["diff", "{}", "{}"];
        args.extend((!out.is_empty()).then_some(out));
        let r = run("fulldiff", &args, &[full_header_a, full_header_b]);
        assert_bounded(&r, 0, "");
    }
}

#[test]
fn a_million_groups_stay_bounded() {
    let r = run(
        "groups",
        &["diff", "{}", "{}"],
        &[million_groups, million_groups],
    );
    assert_bounded(&r, 0, "");
}

#[test]
fn names_and_texts_at_their_limits_fill_the_table_by_bytes() {
    let r = run("texts", &["-r", "{}", "-q"], &[long_texts]);
    assert_bounded(&r, 0, "6000 ARP requests");
}

#[test]
fn lines_of_maps_a_long_trailer_and_short_lines_stay_bounded() {
    let r = run("maps", &["-r", "{}", "-q"], &[watched_maps]);
    assert_bounded(&r, 0, "0 ARP requests");
    let r = run(
        "dmaps",
        &["diff", "{}", "{}"],
        &[watched_maps, watched_maps],
    );
    assert_bounded(&r, 0, "");
    let r = run("trailer", &["-r", "{}", "-q"], &[long_trailer]);
    assert_bounded(&r, 0, "1 ARP request");
    let r = run("short", &["-r", "{}", "-q"], &[short_lines]);
    assert_bounded(&r, 0, "0 ARP requests");
}
