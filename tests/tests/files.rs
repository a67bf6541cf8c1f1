//! End-to-end: the files arp-trace writes as root. Outputs refuse links, other users' files
//! and the input itself or each other (whatever the spelling); they are 0600; the ready file
//! cannot be raced and goes at exit.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use arp_trace_e2e::*;

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn outputs_never_follow_a_link_and_are_0600() {
    let d = Scratch::new("files-links");
    let t = d.file("t.jsonl");
    write_trace(&t, 3);
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
    let d = Scratch::new("files-owner");
    let t = d.file("t.jsonl");
    write_trace(&t, 2);
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
    let d = Scratch::new("files-same");
    let t = d.file("t.jsonl");
    write_trace(&t, 5);
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

#[test]
fn the_ready_file_cannot_be_raced_and_goes_at_exit() {
    let d = Scratch::new("files-ready");
    let victim = d.file("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    let ready = d.file("r.ready");
    let mut t = PipedTracer::spawn(&["-q"], &ready);
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
    let mut t = PipedTracer::spawn(&["-q"], &link);
    let (st, err) = t.wait(READY_TIMEOUT);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("--ready-file {link}: is a symbolic link")),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
}
