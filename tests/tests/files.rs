//! End-to-end: the files arp-trace writes as root and what reaches them on the way out.
//! Outputs refuse links, other users' files and the input itself; they are 0600; the ready
//! file cannot be raced and goes at exit; a closed stdout or a full disk loses nothing of the
//! trace; bad values and cut traces end with the documented exit status.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

use arp_trace_e2e::*;

/// A private directory for one test's files, removed on drop.
struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("arp-trace-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir(d)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted and removed on drop (also when
/// the test fails), so a full disk is only ever this one.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn new(tag: &str, size: &str) -> Tmpfs {
        let d = std::env::temp_dir().join(format!("arp-trace-tmpfs-{}-{tag}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (src, dir, fs, opts) = (
            c("tmpfs"),
            c(d.to_str().unwrap()),
            c("tmpfs"),
            c(&format!("size={size},mode=0755")),
        );
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dir.as_ptr(),
                fs.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            d.display(),
            std::io::Error::last_os_error()
        );
        Tmpfs(d)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
    /// Takes every free byte left.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..1]).is_ok() {}
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: umount2(2) on the directory this guard mounted.
        unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

const HEADER: &str = r#"{"type":"header","format_version":2,"hooks":"x","netns_names":{"4026532281":"srv"},"snapshot":{}}"#;
const EVENT: &str = r#"{"type":"arp","op":"request","time":"2026-11-28T19:31:02.000000000Z","netns":4026532281,"netns_name":"srv","ifindex":2,"ifname":"eth3","sender_ip":"198.51.100.10","sender_mac":"02:00:00:00:00:01","target_ip":"198.51.100.20","target_mac":"00:00:00:00:00:00","unicast":false,"eth_dst":"ff:ff:ff:ff:ff:ff","frame":"00","trigger":null,"neigh_state":null,"attempt":null,"queued":null}"#;

/// A whole trace of `n` requests on srv/eth3, trailer included.
fn trace_of(path: &str, n: usize) {
    let mut s = String::with_capacity((n + 2) * (EVENT.len() + 1));
    s.push_str(HEADER);
    s.push('\n');
    for _ in 0..n {
        s.push_str(EVENT);
        s.push('\n');
    }
    s.push_str(&format!(
        r#"{{"type":"summary","final":true,"requests":{n},"events":{n}}}"#
    ));
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

fn arp_trace(args: &[&str]) -> Finished {
    let mut c = Command::new(bin());
    c.args(args);
    run_to_completion(c, Duration::from_secs(60))
}

fn no_panic(f: &Finished) {
    assert!(!f.stderr.contains("panicked"), "{f:?}");
}

/// Failed with exit 1 and one line of stderr containing `want`.
fn refused(f: &Finished, want: &str) {
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    let lines = f.stderr_lines();
    assert_eq!(lines.len(), 1, "one line for {want}: {f:?}");
    assert!(lines[0].contains(want), "want {want:?} in {:?}", lines[0]);
    no_panic(f);
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn outputs_never_follow_a_link_and_are_0600() {
    let d = Dir::new("links");
    let t = d.file("t.jsonl");
    trace_of(&t, 3);
    let victim = d.file("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (opt, name) in [("-w", "link.jsonl"), ("--pcap", "link.pcapng")] {
        let link = d.file(name);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        refused(
            &arp_trace(&["-r", &t, "-q", opt, &link]),
            &format!("{opt} {link}: is a symbolic link"),
        );
    }
    // A dangling link would create its target.
    let dangling = d.file("dangling.jsonl");
    std::os::unix::fs::symlink(d.file("created-through-link"), &dangling).unwrap();
    refused(
        &arp_trace(&["-r", &t, "-q", "-w", &dangling]),
        "symbolic link",
    );
    assert!(!Path::new(&d.file("created-through-link")).exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");

    // New outputs are 0600 whatever the umask.
    let (w, p) = (d.file("new.jsonl.gz"), d.file("new.pcapng"));
    let mut c = Command::new(bin());
    c.args(["-r", &t, "-q", "-w", &w, "--pcap", &p]);
    // SAFETY: umask(2) in the child between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        })
    };
    let f = run_to_completion(c, Duration::from_secs(60));
    assert!(f.status.success(), "{f:?}");
    assert_eq!((mode(&w), mode(&p)), (0o600, 0o600));
    // An existing file of one's own is emptied and made 0600 too.
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o644)).unwrap();
    let f = arp_trace(&["-r", &t, "-q", "-w", &w]);
    assert!(f.status.success(), "{f:?}");
    assert_eq!(mode(&w), 0o600);
    let back = arp_trace(&["-r", &w, "-q"]);
    assert!(
        back.status.success() && !back.stderr.contains("warning"),
        "{back:?}"
    );
    assert_eq!(parse_counts(&back.stderr).requests, 3);
}

#[test]
fn another_users_file_is_not_overwritten_the_sudo_users_is() {
    let d = Dir::new("owner");
    let t = d.file("t.jsonl");
    trace_of(&t, 2);
    let theirs = d.file("theirs.jsonl");
    std::fs::write(&theirs, "nobody's data").unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    for opt in ["-w", "--pcap"] {
        refused(
            &arp_trace(&["-r", &t, "-q", opt, &theirs]),
            &format!("{opt} {theirs}: exists and belongs to uid 65534, not to you (uid 0)"),
        );
    }
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "nobody's data");

    // Run by root through sudo for uid 65534: that file is the invoking user's to replace,
    // and a new file becomes theirs.
    let sudo = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(args)
            .env("SUDO_UID", "65534")
            .env("SUDO_GID", "65534");
        run_to_completion(c, Duration::from_secs(60))
    };
    let f = sudo(&["-r", &t, "-q", "-w", &theirs]);
    assert!(f.status.success(), "{f:?}");
    assert!(std::fs::read_to_string(&theirs)
        .unwrap()
        .starts_with(r#"{"type":"header""#));
    let new = d.file("new.pcapng");
    let f = sudo(&["-r", &t, "-q", "--pcap", &new]);
    assert!(f.status.success(), "{f:?}");
    let m = std::fs::metadata(&new).unwrap();
    assert_eq!((m.uid(), m.gid(), mode(&new)), (65534, 65534, 0o600));
    // Root's own file is not that user's.
    let roots = d.file("roots.jsonl");
    std::fs::write(&roots, "root's").unwrap();
    refused(
        &sudo(&["-r", &t, "-q", "-w", &roots]),
        "belongs to uid 0, not to you (uid 65534)",
    );
}

#[test]
fn the_same_file_twice_is_refused_whatever_its_name() {
    let d = Dir::new("same");
    let t = d.file("t.jsonl");
    trace_of(&t, 5);
    let size = std::fs::metadata(&t).unwrap().len();
    let dotted = format!("{}/./t.jsonl", d.0.display());
    let hard = d.file("hard.jsonl");
    std::fs::hard_link(&t, &hard).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["-w", &dotted], "the same file as -r"),
        (&["--pcap", &dotted], "the same file as -r"),
        (&["-w", &hard], "the same file as -r"),
        (&["--pcap", &hard], "the same file as -r"),
    ];
    for (extra, want) in cases {
        let args = [&["-r", t.as_str(), "-q"][..], extra].concat();
        refused(&arp_trace(&args), want);
        assert_eq!(std::fs::metadata(&t).unwrap().len(), size, "{args:?}");
    }
    // Two outputs under two spellings of one name.
    let out = d.file("out");
    let other = format!("{}/./out", d.0.display());
    refused(
        &arp_trace(&["-r", &t, "-q", "-w", &out, "--pcap", &other]),
        "the same file as -w",
    );
    // The input on stdin counts too.
    let mut c = Command::new(bin());
    c.args(["-r", "-", "-q", "-w", &hard]);
    c.stdin(std::fs::File::open(&t).unwrap());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("the same file as -r -"));
    assert_eq!(std::fs::metadata(&t).unwrap().len(), size);
}

/// The tracer run live with `args` and `--ready-file ready`, its stdout a pipe the test holds.
struct Live {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
}

impl Live {
    fn spawn(args: &[&str], ready: &str) -> Live {
        let mut cmd = Command::new(bin());
        cmd.args(args).args(["--ready-file", ready]);
        if let Some(h) = std::env::var_os("ARP_TRACE_HOOKS").filter(|h| !h.is_empty()) {
            cmd.arg("--hooks").arg(h);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        Live {
            stdout: Some(BufReader::new(child.stdout.take().unwrap())),
            child,
            stderr: Some(stderr),
        }
    }

    fn wait_ready(&mut self, ready: &str) {
        let deadline = Instant::now() + scaled(READY_TIMEOUT);
        while !Path::new(ready).exists() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("exited ({st}) before ready: {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "not ready in time");
            sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits for the exit; returns the status and all of stderr.
    fn wait(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + scaled(timeout);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.stdout = None;
                return (st, self.stderr());
            }
            assert!(Instant::now() < deadline, "did not exit in time");
            sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_ready_file_cannot_be_raced_and_goes_at_exit() {
    let d = Dir::new("ready");
    let victim = d.file("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    let ready = d.file("r.ready");
    let mut t = Live::spawn(&["-q"], &ready);
    // The name the ready file was written under before being renamed used to be
    // PATH-with-extension tmp.PID: planted as a link now, it would be written through.
    let guess = d.file(&format!("r.tmp.{}", t.child.id()));
    std::os::unix::fs::symlink(&victim, &guess).unwrap();
    t.wait_ready(&ready);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
    let text = std::fs::read_to_string(&ready).unwrap();
    assert!(
        text.starts_with(&format!("pid={}\n", t.child.id())),
        "{text}"
    );
    assert_eq!(mode(&ready), 0o600);
    let mut names: Vec<String> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let planted = format!("r.tmp.{}", t.child.id());
    assert_eq!(names, ["r.ready", &planted, "victim"]);
    t.signal(libc::SIGINT);
    let (st, err) = t.wait(EXIT_TIMEOUT);
    assert!(st.success(), "{err}");
    assert!(
        !Path::new(&ready).exists(),
        "the ready file is removed at exit"
    );

    // A link at the ready file's own name is refused like any output's.
    let link = d.file("link.ready");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut t = Live::spawn(&["-q"], &link);
    let (st, err) = t.wait(READY_TIMEOUT);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("--ready-file {link}: is a symbolic link")),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
}

/// `arp-trace -r BIG -w OUT | head -1`: the reader goes after one line, OUT still gets all.
#[test]
fn replay_into_a_closed_stdout_still_writes_the_whole_trace() {
    let d = Dir::new("pipe-r");
    let (t, out) = (d.file("big.jsonl"), d.file("out.jsonl.zst"));
    trace_of(&t, 20_000);
    let mut child = Command::new(bin())
        .args(["-r", &t, "-w", &out])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(" ARP who-has 198.51.100.20"), "{first}");
    // The read end is closed here, as `head -1` does.
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("stdout closed; still writing {out}")),
        "{err}"
    );
    let back = arp_trace(&["-r", &out, "-q"]);
    assert!(back.status.success(), "{back:?}");
    assert!(
        !back.stderr.contains("warning"),
        "a whole trace, trailer and zstd end: {back:?}"
    );
    assert_eq!(parse_counts(&back.stderr).requests, 20_000);
}

/// Live with `--json -w`: stdout closes after the first line; the trace keeps every request
/// the tracer counted, up to Ctrl-C, and ends whole.
#[test]
fn live_into_a_closed_stdout_still_writes_the_whole_trace() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let d = Dir::new("pipe-live");
    let (out, ready) = (d.file("live.jsonl.zst"), d.file("ready"));
    let mut t = Live::spawn(&["--json", "--netns", srv.name(), "-w", &out], &ready);
    t.wait_ready(&ready);
    let resolve = || {
        srv.flush_neigh();
        srv.send_udp(None, udp(C3_IP));
    };
    resolve();
    let mut first = String::new();
    t.stdout.as_mut().unwrap().read_line(&mut first).unwrap();
    assert!(first.starts_with(r#"{"type":""#), "{first}");
    t.stdout = None;
    // The first of these finds stdout closed; the rest go to the trace alone.
    for _ in 0..3 {
        sleep(scaled(Duration::from_millis(300)));
        resolve();
    }
    sleep(scaled(Duration::from_millis(500)));
    assert!(
        t.child.try_wait().unwrap().is_none(),
        "runs on while -w remains"
    );
    t.signal(libc::SIGINT);
    let (st, err) = t.wait(EXIT_TIMEOUT);
    assert!(st.success(), "{err}");
    assert!(
        err.contains(&format!("stdout closed; still writing {out}")),
        "{err}"
    );
    let live = parse_counts(&err);
    assert!(live.requests >= 4, "{err}");
    let back = arp_trace(&["-r", &out, "-q"]);
    assert!(
        back.status.success() && !back.stderr.contains("warning"),
        "{back:?}"
    );
    assert_eq!(
        parse_counts(&back.stderr).requests,
        live.requests,
        "{back:?}"
    );
    assert!(!Path::new(&ready).exists());
}

/// The counts line, then the one-line cause naming the file.
fn ends_with_cause(err: &str, file: &str, cause: &str) {
    let lines: Vec<&str> = err.lines().collect();
    let n = lines.len();
    assert!(n >= 2, "{err}");
    assert!(
        lines[n - 2].contains(" captured; "),
        "counts line first: {err}"
    );
    assert!(
        lines[n - 1].starts_with(&format!("arp-trace: {file}: {cause}")),
        "cause last: {err}"
    );
}

#[test]
fn a_full_disk_or_file_limit_still_ends_with_counts_summary_and_cause() {
    let d = Dir::new("full");
    let t = d.file("big.jsonl");
    trace_of(&t, 20_000);
    let small = Tmpfs::new("replay", "64k");
    for (opt, out) in [
        ("-w", small.file("t.jsonl")),
        ("--pcap", small.file("t.pcapng")),
    ] {
        let f = arp_trace(&["-r", &t, opt, &out, "-q"]);
        assert_eq!(f.status.code(), Some(1), "{f:?}");
        no_panic(&f);
        assert!(f.stdout.starts_with("Summary: "), "{f:?}");
        ends_with_cause(
            &f.stderr,
            &out,
            "No space left on device (os error 28); it holds",
        );
        if opt == "-w" {
            // What it holds reads as a trace cut at its end.
            let back = arp_trace(&["-r", &out, "-q"]);
            assert!(back.status.success(), "{back:?}");
            assert!(back.stderr.contains("warning:"), "{back:?}");
        }
        std::fs::remove_file(&out).unwrap();
    }
    drop(small);

    // RLIMIT_FSIZE: EFBIG from the write instead of death by SIGXFSZ.
    let p = d.file("t.pcapng");
    let mut c = Command::new(bin());
    c.args(["-r", &t, "--json", "-q", "--pcap", &p]);
    // SAFETY: setrlimit(2) in the child between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let f = run_to_completion(c, Duration::from_secs(60));
    assert_eq!(describe(&f.status), "exit status: 1", "{f:?}");
    assert!(f.stdout.starts_with(r#"{"type":"summary""#), "{f:?}");
    ends_with_cause(&f.stderr, &p, "File too large (os error 27); it holds");
}

/// Live: the disk fills while tracing; the run ends by itself with the counts, the summary
/// and the cause, and the ready file goes.
#[test]
fn a_full_disk_while_tracing_ends_the_run_cleanly() {
    let seed = Seed::new();
    let srv = &seed.srv;
    let d = Dir::new("full-live");
    let small = Tmpfs::new("live", "1m");
    let (out, ready) = (small.file("t.jsonl"), d.file("ready"));
    let mut t = Live::spawn(&["--json", "--netns", srv.name(), "-w", &out], &ready);
    t.wait_ready(&ready);
    small.fill();
    let deadline = Instant::now() + scaled(EVENT_TIMEOUT);
    while t.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "still running with a full disk");
        srv.flush_neigh();
        srv.send_udp(None, udp(C3_IP));
        sleep(Duration::from_millis(100));
    }
    let mut stdout = String::new();
    std::io::Read::read_to_string(t.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let (st, err) = t.wait(EXIT_TIMEOUT);
    assert_eq!(st.code(), Some(1), "{err}");
    no_panic(&Finished {
        status: st,
        stdout: stdout.clone(),
        stderr: err.clone(),
    });
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with(r#"{"type":"summary""#),
        "{stdout}"
    );
    ends_with_cause(&err, &out, "No space left on device (os error 28)");
    assert!(
        !Path::new(&ready).exists(),
        "the ready file goes on an error exit too"
    );
}

#[test]
fn a_cut_trace_exits_0_with_a_warning_corruption_before_the_end_1() {
    let d = Dir::new("cut");
    let whole = d.file("whole.jsonl");
    trace_of(&whole, 50);
    let r = arp_trace(&["-r", &whole, "-q"]);
    assert!(r.status.success() && !r.stderr.contains("warning"), "{r:?}");
    let text = std::fs::read_to_string(&whole).unwrap();
    let text = &text[..text.trim_end().rfind('\n').unwrap() + 1];
    // Cut at the end: before the trailer, and mid-record.
    let (notrailer, partial) = (d.file("notrailer.jsonl"), d.file("partial.jsonl"));
    std::fs::write(&notrailer, text).unwrap();
    std::fs::write(&partial, &text[..text.len() - 40]).unwrap();
    for f in [&notrailer, &partial] {
        let r = arp_trace(&["-r", f, "-q"]);
        assert_eq!(r.status.code(), Some(0), "{r:?}");
        assert!(
            r.stderr.contains(&format!("arp-trace: warning: {f}")),
            "{r:?}"
        );
        assert!(r.stderr.contains("cut"), "{r:?}");
    }
    // A compressed stream that ends early.
    let zst = d.file("w.jsonl.zst");
    assert!(arp_trace(&["-r", &whole, "-q", "-w", &zst])
        .status
        .success());
    let bytes = std::fs::read(&zst).unwrap();
    let cut = d.file("cut.jsonl.zst");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = arp_trace(&["-r", &cut, "-q"]);
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("cut"),
        "{r:?}"
    );
    // Corruption before the end.
    let bad = d.file("bad.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[10] = r#"{"type":"arp","op":"#;
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    refused(
        &arp_trace(&["-r", &bad, "-q"]),
        &format!("{bad} line 11: corrupt"),
    );
    // And the help says so.
    let help = arp_trace(&["--help"]);
    let exit = help.stdout.split("Exit status:").nth(1).unwrap_or_default();
    assert!(exit.contains("cut at its end"), "{}", help.stdout);
    assert!(exit.contains("corrupt before its end"), "{}", help.stdout);
}

#[test]
fn a_huge_summary_interval_is_a_usage_error_not_a_panic() {
    for args in [
        &["--summary-interval", "18446744073709551615"][..],
        &["-q", "--summary-interval=99999999999"],
        &[
            "-r",
            "/nonexistent",
            "--summary-interval",
            "18446744073709551615",
        ],
    ] {
        let f = arp_trace(args);
        assert_eq!(f.status.code(), Some(2), "{f:?}");
        no_panic(&f);
        assert!(f.stderr.starts_with("error: "), "{f:?}");
        assert!(f.stderr.contains("give 1 to 31536000 seconds"), "{f:?}");
    }
}

#[test]
fn a_filter_that_matches_nothing_in_the_trace_says_so() {
    let d = Dir::new("nomatch");
    let t = d.file("t.jsonl");
    trace_of(&t, 3);
    let r = arp_trace(&["-r", &t, "--netns", "nosuchns", "-i", "eth9", "-i", "eth3"]);
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "warning: --netns nosuchns matches nothing: {t} holds no namespace of that name \
             (it has srv)"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "warning: -i eth9 matches nothing: no ARP frame in {t} was sent on an interface \
             of that name (it has eth3)"
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("-i eth3 matches"), "{}", r.stderr);
    // Names that occur: no warning.
    let r = arp_trace(&["-r", &t, "--netns", "srv", "-i", "eth3", "-q"]);
    assert!(r.status.success() && !r.stderr.contains("warning"), "{r:?}");
}
