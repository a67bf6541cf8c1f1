//! End-to-end installation (issue 18, host only): `cargo xtask install` puts the binary, the
//! man page and the completions under a prefix (here staged with --destdir in a scratch
//! directory, never this host's /usr/local); `man` renders and finds the page, bash loads the
//! completion and completes options and their values; `--version` names the commit built
//! and the BPF paths compiled in.

use std::process::Command;
use std::time::Duration;

use arp_trace_e2e::*;

fn ok(f: &Finished, what: &str) {
    assert!(f.status.success(), "{what}: {f:?}");
}

/// Every long option `--help` lists.
fn long_options(help: &str) -> Vec<String> {
    let mut opts: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| {
            w.starts_with("--")
                && w.len() > 2
                && w[2..].starts_with(|c: char| c.is_ascii_lowercase())
        })
        .map(str::to_string)
        .collect();
    opts.sort();
    opts.dedup();
    opts
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn version_names_the_commit_and_the_bpf_paths() {
    let mut c = Command::new("git");
    c.args(["rev-parse", "HEAD"]).current_dir(workspace());
    let head = run_to_completion(c, Duration::from_secs(30));
    ok(&head, "git rev-parse HEAD");
    let head = &head.stdout.trim()[..12];

    let v = arp_trace(&["--version"]);
    ok(&v, "--version");
    let lines: Vec<&str> = v.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("arp-trace {}", env!("CARGO_PKG_VERSION")),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout.contains(&format!("commit: {head}")),
        "--version does not name HEAD {head}:\n{}",
        v.stdout
    );
    for hook in [
        "fentry/arp_solicit",
        "kprobe/arp_solicit",
        "tp_btf/neigh_*",
        "tp_btf/net_dev_queue",
        "tp_btf/neigh_update",
    ] {
        assert!(
            v.stdout.contains(hook),
            "--version lacks {hook}:\n{}",
            v.stdout
        );
    }
    // -V stays one line, for scripts.
    let short = arp_trace(&["-V"]);
    ok(&short, "-V");
    assert_eq!(
        short.stdout,
        format!("arp-trace {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn install_puts_the_man_page_and_completions_where_man_and_bash_look() {
    let d = Scratch::new("install");
    let dest = d.0.join("root");
    // The binary under test, staged under the default prefix (/usr/local) inside `dest`.
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.args([
        "run",
        "--quiet",
        "--package",
        "xtask",
        "--",
        "install",
        "--bin",
    ])
    .arg(bin())
    .arg("--destdir")
    .arg(&dest)
    .current_dir(workspace());
    let f = run_to_completion(c, Duration::from_secs(900));
    ok(&f, "cargo xtask install");
    let prefix = dest.join("usr/local");
    for (p, head) in [
        ("share/bash-completion/completions/arp-trace", "_arp"),
        ("share/zsh/site-functions/_arp-trace", "#compdef arp-trace"),
        (
            "share/fish/vendor_completions.d/arp-trace.fish",
            "complete -c arp-trace",
        ),
    ] {
        let text = std::fs::read_to_string(prefix.join(p))
            .unwrap_or_else(|e| panic!("{p} not installed: {e}"));
        assert!(text.contains(head), "{p}: {text}");
    }
    let installed = prefix.join("bin/arp-trace");
    let v = run_to_completion(
        {
            let mut c = Command::new(&installed);
            c.arg("-V");
            c
        },
        Duration::from_secs(30),
    );
    ok(&v, "the installed arp-trace -V");

    // The page renders, with every option --help lists, the exit status --help states, and
    // the JSON fields.
    let page = prefix.join("share/man/man1/arp-trace.1");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("man -l \"$1\" | col -b")
        .arg("sh")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8");
    let man = run_to_completion(c, Duration::from_secs(60));
    ok(&man, "man -l");
    assert!(man.stderr.trim().is_empty(), "man warns: {}", man.stderr);
    let text = words(&man.stdout);
    let help = arp_trace(&["--help"]);
    ok(&help, "--help");
    let opts = long_options(&help.stdout);
    assert!(opts.len() >= 15, "{opts:?}");
    for o in &opts {
        assert!(
            text.contains(o.as_str()),
            "the man page lacks {o}:\n{}",
            man.stdout
        );
    }
    for s in [
        "EXIT STATUS",
        "JSON FIELDS",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
        "COMMANDS",
    ] {
        assert!(
            man.stdout.contains(&format!("\n{s}\n")),
            "no {s} section:\n{}",
            man.stdout
        );
    }
    let status = &help.stdout[help
        .stdout
        .find("Exit status:")
        .expect("--help's Exit status")..];
    let status = words(&status["Exit status:".len()..]);
    // Each item of --help's list, in the man page's words (the codes become tags).
    for item in status
        .split(['0', '1', '2'])
        .map(str::trim)
        .filter(|i| i.len() > 20)
    {
        let item = item.trim_end_matches(',');
        assert!(text.contains(item), "the man page lacks --help's {item:?}");
    }
    for field in ["sender_ip", "netns_name", "trigger"] {
        assert!(text.contains(field), "JSON FIELDS lack {field}");
    }

    // man finds it by name in the prefix's man directory.
    let mut c = Command::new("man");
    c.arg("-M")
        .arg(prefix.join("share/man"))
        .arg("arp-trace")
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100");
    let found = run_to_completion(c, Duration::from_secs(60));
    ok(&found, "man -M PREFIX/share/man arp-trace");
    assert!(found.stdout.contains("EXIT STATUS"), "{found:?}");

    // bash loads the completion and completes an option and its values.
    let script = r#"
        source "$1" || exit 3
        f=$(complete -p arp-trace | sed -E 's/.* -F ([^ ]+) .*/\1/')
        COMP_WORDS=(arp-trace --col); COMP_CWORD=1
        "$f" arp-trace --col arp-trace
        echo "option: ${COMPREPLY[*]}"
        COMP_WORDS=(arp-trace --color ""); COMP_CWORD=2
        "$f" arp-trace "" --color
        echo "value: ${COMPREPLY[*]}"
        COMP_WORDS=(arp-trace do); COMP_CWORD=1
        "$f" arp-trace do arp-trace
        echo "command: ${COMPREPLY[*]}"
    "#;
    let mut c = Command::new("bash");
    c.args(["--norc", "--noprofile", "-c", script, "bash"])
        .arg(prefix.join("share/bash-completion/completions/arp-trace"));
    let comp = run_to_completion(c, Duration::from_secs(30));
    ok(&comp, "bash with the completion");
    let line = |k: &str| {
        comp.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} line: {comp:?}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(line("option: "), ["--color"], "{comp:?}");
    let values = line("value: ");
    for v in ["auto", "always", "never"] {
        assert!(
            values.iter().any(|x| x == v),
            "{v} not offered after --color: {values:?}"
        );
    }
    assert_eq!(line("command: "), ["doctor"], "{comp:?}");
}
