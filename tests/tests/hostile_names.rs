//! End-to-end: names chosen by someone hostile (a process's comm, interface and namespace
//! names a root in a container can create) reach the terminal as visible escapes and JSON
//! exactly, and every command arp-trace prints is one command when pasted into sh: each one
//! printed for hostile names is checked with `sh -n` and then run for real in a scratch
//! directory, where it must change the sysctl it names, inside the test's own namespaces, and
//! nothing else (no file appears).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arp_trace_e2e::*;

/// Entry point of the helper child processes; not a test (returns at once in a test run).
#[test]
#[ignore = "entry point for helper processes spawned by the tests, not a test"]
fn helper_process() {
    helper_main();
}

/// `ip` run in a namespace given by the path of its file; arguments may be any bytes.
fn ip_in(ns: &Path, args: &[&OsStr]) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg("ip")
        .args(args)
        .output()
        .expect("nsenter ip");
    assert!(
        out.status.success(),
        "ip {args:?} in {}: {}",
        ns.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A veth pair inside the namespace at `ns`, `dev` (any bytes) with `addr` if given, both
/// ends up.
fn veth_named(ns: &Path, dev: &[u8], peer: &str, addr: Option<&str>) {
    let dev = OsStr::from_bytes(dev);
    ip_in(
        ns,
        &[
            os("link"),
            os("add"),
            dev,
            os("type"),
            os("veth"),
            os("peer"),
            os("name"),
            os(peer),
        ],
    );
    if let Some(a) = addr {
        ip_in(ns, &[os("addr"), os("add"), os(a), os("dev"), dev]);
    }
    ip_in(ns, &[os("link"), os("set"), dev, os("up")]);
    ip_in(ns, &[os("link"), os("set"), os(peer), os("up")]);
}

/// net.ipv4.conf.<conf>.arp_announce in the namespace at `ns`, read or written through /proc
/// by a thread inside it.
fn announce(ns: &Path, conf: &str, set: Option<u8>) -> String {
    let path = format!("/proc/sys/net/ipv4/conf/{conf}/arp_announce");
    in_netns(ns, move || {
        if let Some(v) = set {
            std::fs::write(&path, v.to_string()).map_err(|e| format!("{path}: {e}"))?;
        }
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{path}: {e}"))
    })
}

/// Whether `s` has a character a terminal would act on (besides line ends), or U+FFFD (a
/// byte silently replaced).
fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| (c.is_control() && c != '\n') || c == '\u{fffd}')
}

/// A process's comm that renames the terminal's window and clears the screen, one that is
/// not UTF-8, and an interface named with an escape sequence and a byte that is not UTF-8.
#[test]
fn hostile_comm_and_interface_names_are_escaped_on_the_terminal_and_exact_in_json() {
    let ns = Netns::new("hn");
    let p = ns.path();
    ns.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    let dev = b"\x1b[2Je\xff";
    veth_named(&p, dev, "p1", Some("198.51.100.10/24"));
    ns.wait_link_up("p1");
    announce(&p, "all", Some(0));

    let text = Tracer::start(&["-v", "--netns", ns.name()]);
    let json = Tracer::start(&["--json", "--netns", ns.name()]);
    let mut h = Helper::spawn(&ns, "x");
    let comms: [&[u8]; 2] = [b"\x1b]2;owned\x07\x1b[2J", b"\xff\xfeok"];
    for (i, comm) in comms.iter().enumerate() {
        h.rename(comm);
        let src = "203.0.113.10:0".parse().unwrap();
        h.udp(src, udp(&format!("198.51.100.{}", 20 + i)), 0);
    }
    let evs = json.wait_for_n(
        |v| is_request(v) && v["trigger"]["comm"].is_string(),
        2,
        EVENT_TIMEOUT,
    );
    text.wait_for_line(|l| l.contains("who-has 198.51.100.21"), EVENT_TIMEOUT);
    let (_, out, _) = text.stop();
    let (_, _, _) = json.stop();
    forget_neighbours(&p);

    // JSON: the names exactly, a byte that is not UTF-8 as `\xNN`.
    for v in &evs {
        assert_eq!(v["ifname"], "\u{1b}[2Je\\xff", "{v}");
    }
    let comm_of = |target: &str| {
        evs.iter()
            .find(|v| v["target_ip"] == target)
            .map(|v| {
                v["trigger"]["comm"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert_eq!(comm_of("198.51.100.20"), "\u{1b}]2;owned\u{7}\u{1b}[2J");
    assert_eq!(comm_of("198.51.100.21"), "\\xff\\xfeok");

    // Text: every line free of control characters, the names shown as escapes.
    assert!(!has_control(&out), "{out:?}");
    let pid = h.pid();
    for shown in [
        format!("{}/\\x1b[2Je\\xff ARP who-has 198.51.100.20", ns.name()),
        format!(" \\x1b]2;owned\\a\\x1b[2J[{pid}]"),
        format!(" \\xff\\xfeok[{pid}]"),
        "    processes: \\x1b]2;owned\\a\\x1b[2J[".to_string(),
    ] {
        assert!(out.contains(&shown), "{shown:?} not in:\n{out}");
    }
}

/// Interface names a container's root can create (the kernel forbids only '/', ':' and
/// whitespace), each of which runs a command if pasted unquoted or naively quoted: the
/// command creates a file in the directory the paste runs in.
const HOSTILE: [&str; 5] = ["a;>m1", "$(>m2)", "`>m3`", "q'$(>m4)'", "b\\|>m5"];

/// A namespace held only by a process (no `ip netns` name), killed on drop.
struct Unnamed(Child);

impl Unnamed {
    fn new() -> Unnamed {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare -n");
        let u = Unnamed(child);
        // unshare has entered the new namespace once its namespace file differs from ours.
        let ours = inode_of(Path::new("/proc/self/ns/net"));
        for _ in 0..500 {
            if inode_of(&u.path()).is_some_and(|i| Some(i) != ours) {
                return u;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("unshare -n did not enter a new namespace");
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.0.id()))
    }

    fn inode(&self) -> u64 {
        inode_of(&self.path()).expect("the namespace of unshare -n")
    }
}

fn inode_of(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sets up `ns` to make one foreign-sender request on each hostile interface: 203.0.113.10
/// on lo (local, so arp_announce=0 copies it into the request), and each interface on a /27
/// of 198.51.100.0/24 with its target. Returns (name, target) per interface.
fn hostile_interfaces(ns: &Path, names: &[&str]) -> Vec<(String, String)> {
    ip_in(ns, &[os("link"), os("set"), os("lo"), os("up")]);
    ip_in(
        ns,
        &[
            os("addr"),
            os("add"),
            os("203.0.113.10/32"),
            os("dev"),
            os("lo"),
        ],
    );
    announce(ns, "all", Some(0));
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let base = 32 * i;
        let peer = format!("p{i}");
        veth_named(
            ns,
            name.as_bytes(),
            &peer,
            Some(&format!("198.51.100.{}/27", base + 1)),
        );
        announce(ns, name, Some(0));
        out.push((name.to_string(), format!("198.51.100.{}", base + 20)));
    }
    out
}

/// Every command a run printed: `remedy.command` and `remedy.persistent` of each JSON request
/// and summary row, and the `fix:`/`persist:` lines of the text output and text summary.
fn printed_commands(json_out: &[Value], text_out: &str) -> Vec<String> {
    let mut cmds = Vec::new();
    let mut remedy = |r: &Value| {
        for k in ["command", "persistent"] {
            if let Some(c) = r[k].as_str() {
                cmds.push(c.to_string());
            }
        }
    };
    for v in json_out {
        remedy(&v["remedy"]);
        for row in v["rows"].as_array().into_iter().flatten() {
            remedy(&row["remedy"]);
        }
    }
    for l in text_out.lines() {
        for p in ["    fix: ", "    persist: "] {
            if let Some(c) = l.strip_prefix(p) {
                cmds.push(c.to_string());
            }
        }
    }
    cmds.sort();
    cmds.dedup();
    cmds
}

/// The directory commands are pasted in, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let d = std::env::temp_dir().join(format!("arp-trace-paste-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pastes `cmd` into sh in `dir`: `sh -n` first, then for real if sh reads it. Returns why
/// sh refused it, or the run. The sh is dash, Debian's /bin/sh, named so that the VM guest
/// (whose own sh is BusyBox's, running its `ip` applet before the real one) gets it too.
fn paste(cmd: &str, dir: &Path) -> Result<Finished, Finished> {
    let mut n = Command::new("dash");
    n.args(["-n", "-c", cmd]).current_dir(dir);
    let n = run_to_completion(n, Duration::from_secs(10));
    let mut c = Command::new("dash");
    c.args(["-c", cmd]).current_dir(dir);
    let run = run_to_completion(c, Duration::from_secs(30));
    if n.status.success() {
        Ok(run)
    } else {
        Err(n)
    }
}

#[test]
fn every_printed_command_is_one_command_that_does_what_it_says() {
    // lsns is what the command for a namespace without a name runs to find it.
    let lsns = Command::new("lsns").arg("--version").output();
    assert!(
        lsns.is_ok_and(|o| o.status.success()),
        "lsns (util-linux) is needed"
    );
    let scratch = Scratch::new();
    let dir = scratch.0.clone();

    // A named namespace whose name is hostile too, and one held only by a process.
    let named = Netns::new(";$(>m0)'q");
    let unnamed = Unnamed::new();
    let in_named = hostile_interfaces(&named.path(), &HOSTILE[..4]);
    let in_unnamed = hostile_interfaces(&unnamed.path(), &HOSTILE[4..]);
    // One more without an address: no arp_announce can help, the remedy is an address.
    let bare = "n$(>m6)";
    veth_named(&named.path(), bare.as_bytes(), "p9", None);
    named.ip(&["route", "add", "192.0.2.0/24", "dev", bare]);
    named.wait_link_up("p9");

    let inode = unnamed.inode().to_string();
    let args = ["--netns", named.name(), "--netns", &inode];
    let json = Tracer::start(&[&["--json"][..], &args].concat());
    let text = Tracer::start(&args);
    let src = Some("203.0.113.10".parse().unwrap());
    let targets = |t: &[(String, String)]| t.iter().map(|(_, a)| udp(a)).collect::<Vec<_>>();
    let mut named_targets = targets(&in_named);
    named_targets.push(udp("192.0.2.20"));
    send_udp_in(&named.path(), src, &named_targets);
    send_udp_in(&unnamed.path(), src, &targets(&in_unnamed));
    let want = named_targets.len() + in_unnamed.len();
    json.wait_for_n(
        |v| is_request(v) && v["remedy"].is_object() && v["attempt"] == 1,
        want,
        EVENT_TIMEOUT,
    );
    text.wait_for_line(|l| l.starts_with("    fix: "), EVENT_TIMEOUT);
    let (_, json_out, _) = json.stop();
    let (_, text_out, _) = text.stop();
    let cmds = printed_commands(&parse_json_lines(&json_out), &text_out);
    let runs: Vec<_> = cmds.iter().map(|c| (c, paste(c, &dir))).collect();

    // Nothing ran but what was printed: no marker file.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(
        left.is_empty(),
        "pasting ran more than the printed command: {left:?} after {cmds:#?}"
    );
    for (c, run) in &runs {
        let f = run
            .as_ref()
            .unwrap_or_else(|n| panic!("sh -n refuses {c:?}: {n:?}"));
        // Only the address placeholder is refused, and by `ip`, not by sh.
        let placeholder = c.contains("ADDRESS/PREFIX");
        assert_eq!(f.status.success(), !placeholder, "{c:?}: {f:?}");
        if placeholder {
            assert!(f.stderr.contains("ADDRESS/PREFIX"), "{c:?}: {f:?}");
        }
    }
    // Per namespace and interface: the sysctl command, the comment on persistence; and the
    // address command, in JSON and text alike; the unnamed namespace found by its inode.
    assert!(cmds.len() >= want + 2, "{cmds:#?}");
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("nsenter --net=/proc/\"$(lsns")),
        "{cmds:#?}"
    );
    // Each sysctl changed where it says.
    for (name, _) in &in_named {
        assert_eq!(announce(&named.path(), name, None), "1", "{name}");
    }
    for (name, _) in &in_unnamed {
        assert_eq!(announce(&unnamed.path(), name, None), "1", "{name}");
    }
    forget_neighbours(&named.path());
    forget_neighbours(&unnamed.path());
}

/// Drops the neighbour entries nobody answered while the namespace lives: left to its
/// teardown, their failure would be reported to whatever tracer runs then, under an inode the
/// kernel may have handed to a newer namespace.
fn forget_neighbours(ns: &Path) {
    ip_in(ns, &[os("neigh"), os("flush"), os("all")]);
}
