//! `--generate`: the man page and the shell completions, made from the clap definitions so
//! they list every option there is. The man page's prose sections reuse `--help`'s own text
//! (its examples and exit status), so the two cannot drift apart.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{bold, italic, roman, Inline, Roff};

use crate::cli::{Args, Generate, AFTER_HELP};

mod fields;

/// Writes what `--generate` asked for.
pub fn generate(what: Generate, out: &mut dyn Write) -> io::Result<()> {
    let shell = match what {
        Generate::Man => return out.write_all(man_page().as_bytes()),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "arp-trace", &mut buf);
    out.write_all(&buf)
}

/// The section of `--help`'s closing text under `heading` (e.g. "Exit status:"): its lines up
/// to the next blank line, without the heading.
pub fn help_section(heading: &str) -> Option<&'static str> {
    let start = AFTER_HELP.lines().position(|l| l.trim_end() == heading)?;
    let mut offset = 0;
    let mut lines = AFTER_HELP.split_inclusive('\n');
    for _ in 0..=start {
        offset += lines.next()?.len();
    }
    let rest = &AFTER_HELP[offset..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    Some(rest[..end].trim_end())
}

/// `--help`'s closing text without the sections the man page gives sections of their own.
fn help_prose() -> String {
    AFTER_HELP
        .split("\n\n")
        .filter(|block| !block.starts_with("Examples:") && !block.starts_with("Exit status:"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Renders text as `--help` lays it out: lines at the margin are paragraphs, indented lines
/// are shown as they are (examples of output).
fn prose(roff: &mut Roff, text: &str) {
    for block in text.split("\n\n") {
        let mut para: Vec<&str> = Vec::new();
        let mut pre: Vec<&str> = Vec::new();
        let flush_para = |roff: &mut Roff, para: &mut Vec<&str>| {
            if !para.is_empty() {
                roff.control("PP", []);
                roff.text([roman(para.join(" "))]);
                para.clear();
            }
        };
        let flush_pre = |roff: &mut Roff, pre: &mut Vec<&str>| {
            if !pre.is_empty() {
                roff.control("RS", ["4"]);
                roff.control("nf", []);
                for l in pre.iter() {
                    roff.text([roman(l.trim_start())]);
                }
                roff.control("fi", []);
                roff.control("RE", []);
                pre.clear();
            }
        };
        for line in block.lines() {
            if line.starts_with(' ') {
                flush_para(roff, &mut para);
                pre.push(line);
            } else {
                flush_pre(roff, &mut pre);
                para.push(line.trim());
            }
        }
        flush_para(roff, &mut para);
        flush_pre(roff, &mut pre);
    }
}

/// Renders an indented list of `--help` (`  TAG  text`, continued on deeper-indented lines)
/// as tagged paragraphs; a line without a tag column is a paragraph of its own, or with
/// `commands`, a command shown alone.
fn tagged_list(roff: &mut Roff, text: &str, commands: bool) {
    let mut items: Vec<(Option<String>, String)> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if indent > 2 {
            if let Some((_, text)) = items.last_mut() {
                text.push(' ');
                text.push_str(body);
                continue;
            }
        }
        match body.split_once("  ") {
            Some((tag, rest)) => items.push((Some(tag.to_string()), rest.trim().to_string())),
            None if commands => items.push((Some(body.to_string()), String::new())),
            None => items.push((None, body.to_string())),
        }
    }
    for (tag, text) in items {
        match tag {
            Some(tag) => {
                roff.control("TP", []);
                roff.text([bold(tag)]);
                if text.is_empty() {
                    roff.control("br", []);
                } else {
                    roff.text([roman(text)]);
                }
            }
            None => {
                roff.control("PP", []);
                roff.text([roman(text)]);
            }
        }
    }
}

fn section(roff: &mut Roff, name: &str) {
    roff.control("SH", [name]);
}

/// `arp-trace doctor` and `arp-trace diff`: usage, what they do, their options.
fn commands(roff: &mut Roff, cmd: &clap::Command) {
    section(roff, "COMMANDS");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut usage = vec![bold(format!("arp-trace {}", sub.get_name()))];
        for a in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            usage.push(roman(" "));
            match a.get_long() {
                Some(long) => usage.push(roman(format!("[--{long}]"))),
                None => usage.push(italic(a.get_id().as_str().to_uppercase())),
            }
        }
        roff.control("TP", []);
        roff.text(usage);
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        roff.text([roman(about)]);
        for a in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_long().is_some())
        {
            roff.control("RS", []);
            roff.control("TP", []);
            roff.text([bold(format!("--{}", a.get_long().unwrap_or_default()))]);
            let help = a.get_long_help().or_else(|| a.get_help());
            roff.text([roman(help.map(|h| h.to_string()).unwrap_or_default())]);
            roff.control("RE", []);
        }
    }
}

fn paragraph(roff: &mut Roff, text: impl Into<Vec<Inline>>) {
    roff.control("PP", []);
    roff.text(text);
}

fn tag(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text([roman(text)]);
}

/// arp-trace.1: every option from the clap definitions, the subcommands, and sections made
/// from `--help`'s closing text and the JSON Schema.
pub fn man_page() -> String {
    let cmd = Args::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .title("ARP-TRACE")
        .manual("arp-trace manual");
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let mut roff = Roff::new();
    prose(&mut roff, &help_prose());
    out.extend(roff.render().into_bytes());
    let _ = man.render_options_section(&mut out);

    let mut roff = Roff::new();
    commands(&mut roff, &cmd);

    section(&mut roff, "OUTPUT");
    paragraph(
        &mut roff,
        [roman(
            "Text lines go to standard output, warnings and the counts line to standard \
             error. With --json (and in a trace written with -w) every line is one JSON \
             object whose \"type\" names its record; the fields of each are listed under \
             JSON FIELDS. Field names are a contract: later versions add fields, never rename \
             these.",
        )],
    );

    section(&mut roff, "JSON FIELDS");
    fields::json_fields(&mut roff);

    section(&mut roff, "EXIT STATUS");
    tagged_list(
        &mut roff,
        help_section("Exit status:").unwrap_or_default(),
        false,
    );
    paragraph(
        &mut roff,
        [roman(
            "doctor exits 0 when arp-trace can run here, 1 when it cannot. --generate exits 0.",
        )],
    );

    section(&mut roff, "ENVIRONMENT");
    tag(
        &mut roff,
        "NO_COLOR",
        "Set and not empty: no colour with --color auto (the default).",
    );
    tag(
        &mut roff,
        "RUST_LOG",
        "Diagnostics on standard error (env_logger syntax; default warn).",
    );
    tag(
        &mut roff,
        "TZ",
        "The time zone of text output's clock times and of -G file names (else \
         /etc/localtime); JSON and traces are always UTC.",
    );
    tag(
        &mut roff,
        "SUDO_UID, SUDO_GID",
        "Under sudo, files arp-trace creates belong to the user who ran sudo.",
    );

    section(&mut roff, "FILES");
    for (path, what) in [
        (
            "FILE, FILE.gz, FILE.zst",
            "A trace written with -w and read with -r and diff: JSON Lines (a header, the \
             --json records, a summary trailer), compressed by suffix on writing and by \
             content on reading. New files are 0600. Outputs that are regular files leave \
             the page cache once written back (drop-behind, every 4 MiB).",
        ),
        (
            "/run/netns/NAME",
            "Network namespaces named by ip-netns(8): the names text output, --netns and the \
             trace header use.",
        ),
        (
            "/sys/kernel/btf/vmlinux",
            "The running kernel's BTF: every structure layout arp-trace reads comes from it.",
        ),
        (
            "/proc/kallsyms",
            "Kernel symbol addresses, for the kprobe path and doctor.",
        ),
        (
            "/sys/kernel/security/lockdown",
            "Kernel lockdown mode, checked by doctor (confidentiality forbids tracing).",
        ),
        (
            "/boot/config-RELEASE",
            "The kernel configuration, quoted by doctor when a check fails.",
        ),
        (
            "/etc/default/arp-trace",
            "ARP_TRACE_OPTS for the arp-trace.service systemd unit of the Debian package.",
        ),
    ] {
        tag(&mut roff, path, what);
    }

    section(&mut roff, "EXAMPLES");
    tagged_list(
        &mut roff,
        help_section("Examples:").unwrap_or_default(),
        true,
    );
    for (cmd, what) in [
        (
            "sudo arp-trace -w before.jsonl.zst",
            "trace and save, while printing as usual",
        ),
        (
            "arp-trace diff before.jsonl.zst after.jsonl.zst",
            "what changed between two traces",
        ),
        ("sudo arp-trace doctor --json", "the checks as one JSON object"),
        (
            "arp-trace --generate complete-bash > ~/.local/share/bash-completion/completions/arp-trace",
            "install the bash completion for yourself",
        ),
    ] {
        tag(&mut roff, cmd, what);
    }

    section(&mut roff, "SEE ALSO");
    paragraph(
        &mut roff,
        [roman(
            "tcpdump(8), ip-netns(8), arp(7), bpftool(8), jq(1), tshark(1), diff(1); \
             the README of the arp-trace sources.",
        )],
    );

    section(&mut roff, "VERSION");
    roff.control("PP", []);
    for line in crate::version::long().lines() {
        roff.text([roman(line)]);
        roff.control("br", []);
    }

    out.extend(roff.render().into_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_has_every_option_and_the_help_sections() {
        let page = man_page();
        for a in Args::command().get_arguments() {
            if let Some(long) = a.get_long() {
                // roff writes a hyphen as `\-`.
                let want = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&want), "the man page lacks --{long}");
            }
        }
        for s in [
            "COMMANDS",
            "JSON FIELDS",
            "EXIT STATUS",
            "FILES",
            "EXAMPLES",
            "SEE ALSO",
        ] {
            assert!(
                page.contains(&format!(".SH \"{s}\"")) || page.contains(&format!(".SH {s}")),
                "the man page lacks {s}"
            );
        }
        assert!(page.contains("arp\\-trace doctor"), "{page}");
    }

    #[test]
    fn help_sections_are_found() {
        let ex = help_section("Examples:").unwrap();
        assert!(ex.starts_with("  sudo arp-trace"), "{ex}");
        assert!(!ex.contains("Each line"), "{ex}");
        let st = help_section("Exit status:").unwrap();
        assert!(st.starts_with("  0  "), "{st}");
        assert!(help_section("Nothing:").is_none());
    }

    #[test]
    fn completions_are_generated_for_each_shell() {
        for (what, want) in [
            (Generate::CompleteBash, "complete -F"),
            (Generate::CompleteZsh, "#compdef arp-trace"),
            (Generate::CompleteFish, "complete -c arp-trace"),
        ] {
            let mut out = Vec::new();
            generate(what, &mut out).unwrap();
            let s = String::from_utf8(out).unwrap();
            assert!(s.contains(want), "{what:?}: {s}");
            assert!(s.contains("color"), "{what:?} lacks --color");
        }
    }
}
