//! Command-line interface. Letters follow tcpdump where tcpdump has one.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Parser};

pub use crate::kernel::hooks::HookChoice;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  sudo arp-trace                        every ARP request and reply, every IPv6 neighbour
                                        solicitation and advertisement, all namespaces
  sudo arp-trace -i eth3                only what leaves interfaces named eth3
  sudo arp-trace --netns srv -c 10      ten requests from namespace `srv`, then exit
  sudo arp-trace --json | jq 'select(.op==\"request\")'
  sudo arp-trace --foreign-only         only requests announcing an address foreign to the link
  sudo arp-trace -6 -v                  only IPv6 neighbour solicitations, each explained

Each line reads like tcpdump's:
  19:31:02.123456 srv/eth3 ARP who-has 198.51.100.20 tell 203.0.113.10 (00:11:22:33:44:55)
  time            netns/interface    target             sender IP     (sender MAC)
  19:31:02.123456 srv/eth3 IP6 fe80::3 > ff02::1:ff00:44: ICMP6, neighbor solicitation, who has 2001:db8:3::44
The namespace is shown by its `ip netns` name, by inode when it has none, and left out
for the namespace arp-trace runs in.

arp-trace only observes: it loads BPF programs that read the transmit path and detaches
them on exit; it adds no qdiscs, pins or sysctls.

Exit status:
  0  the run ended as asked: Ctrl-C, SIGTERM, -c, the end of the -r trace, or stdout
     closed (the other outputs are still written to the end). A -r trace cut at its end
     (a killed writer: partial last line, no trailer, compressed stream ending early) is
     read up to the cut with a warning, and is still 0.
  1  tracing could not start, an output failed (its file, the cause and the counts are
     printed), or the -r input is unreadable or corrupt before its end.
  2  a usage error (unknown option, bad value).
  diff exits like diff(1): 0 same groups, 1 different groups, 2 trouble.";

/// The longest `--summary-interval`, a year: longer is the same as never (the summary is
/// printed on exit anyway), and it keeps the timer's deadline far from overflowing.
pub const MAX_INTERVAL: u64 = 365 * 24 * 3600;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "arp-trace",
    version,
    long_version = crate::version::long(),
    about = "Catch every ARP request the kernel sends, in every network namespace",
    long_about = "Catch every ARP request (and reply) and every IPv6 neighbour solicitation \
                  (and advertisement) the Linux kernel transmits, on every interface of every \
                  network namespace, including namespaces created while tracing. Needs root (or CAP_BPF, CAP_PERFMON, CAP_SYSLOG and CAP_SYS_ADMIN; \
                  `arp-trace doctor` checks each) and a kernel with BTF.",
    after_help = AFTER_HELP,
    group(ArgGroup::new("rotation").args(["file_size", "rotate_seconds"]).multiple(true))
)]
pub struct Args {
    /// Only show frames sent on interfaces with this name (repeatable).
    #[arg(short = 'i', long = "interface", value_name = "NAME")]
    pub interfaces: Vec<String>,

    /// Exit after this many ARP requests (and neighbour solicitations) have been shown.
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Only show ARP requests caused by a packet of this process ID (repeatable; with --comm,
    /// either matches). Replies, and requests whose packet was forwarded or had no process,
    /// are left out.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Only show ARP requests caused by a packet of a process with this command name, as
    /// `ps -o comm` shows it (repeatable; the kernel keeps its first 15 bytes).
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,

    /// Print one JSON object per line on stdout instead of text.
    #[arg(long)]
    pub json: bool,

    /// Only show frames from this network namespace: an `ip netns` name, a path such as
    /// /proc/PID/ns/net, or an inode number (repeatable).
    #[arg(long = "netns", value_name = "NAME|PATH|INODE")]
    pub netns: Vec<String>,

    /// Print no per-event lines; only the summary and the counts on exit.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Only show ARP requests whose sender IP is in none of the egress interface's subnets
    /// (and neighbour solicitations whose source is in none of its IPv6 prefixes).
    #[arg(long)]
    pub foreign_only: bool,

    /// Only ARP (IPv4). With -6 too, or with neither, both families are shown.
    #[arg(short = '4', long = "ipv4")]
    pub ipv4: bool,

    /// Only IPv6 neighbour discovery (solicitations, advertisements, their failures).
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,

    /// Which frames to show: `in` only those the host's devices received, `out` only those it
    /// sent (and then the receive hook is not attached at all), `both` all of them.
    #[arg(long, value_enum, value_name = "WHICH", default_value_t = DirectionChoice::Both)]
    pub direction: DirectionChoice,

    /// Explain every request, not only those with a foreign sender.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// When to colour foreign senders red: `auto` does on a terminal unless NO_COLOR is set
    /// (and not empty); `always` and `never` win over both.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    /// Also print the summary every N seconds, up to a year (it is always printed on exit).
    #[arg(long, value_name = "N", value_parser = parse_interval)]
    pub summary_interval: Option<u64>,

    /// Create this file once every hook is attached (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Kernel ring buffer size in KiB (a power of two, at least 4; 4096 when not given).
    /// Raise it if events are reported lost.
    #[arg(short = 'B', long = "buffer-size", value_name = "KiB", value_parser = parse_buffer_kib)]
    pub buffer_kib: Option<u32>,

    /// How to catch the packet behind each request: `auto` takes the best this kernel
    /// allows (fentry on arp_solicit, else a kprobe on it, else the neighbour tracepoints
    /// reading the entry's queue); the others force one. `arp-trace doctor` shows which ones
    /// work here. [default: auto]
    #[arg(long, value_enum, value_name = "PATH")]
    pub hooks: Option<HookChoice>,

    /// Also save the trace to FILE (JSON Lines: header, the `--json` events, summary);
    /// FILE.gz and FILE.zst are compressed. `arp-trace -r FILE` replays it. `-w -` writes the
    /// trace (uncompressed) to standard output for a pipe, and the summary to stderr.
    #[arg(short = 'w', long = "write", value_name = "FILE", value_parser = parse_write)]
    pub write: Option<PathBuf>,

    /// With -w: start a new file once the current one exceeds SIZE millions of bytes
    /// (tcpdump's -C; a k, m or g suffix counts KiB, MiB or GiB). Each file is a whole trace.
    #[arg(short = 'C', value_name = "SIZE", value_parser = parse_file_size, requires = "write")]
    pub file_size: Option<u64>,

    /// With -w: start a new file every SECONDS (tcpdump's -G). FILE may hold strftime fields
    /// such as %Y%m%d-%H%M%S for each file's start; without any, files are numbered.
    #[arg(short = 'G', value_name = "SECONDS", value_parser = parse_rotate_seconds,
          requires = "write", conflicts_with = "read")]
    pub rotate_seconds: Option<u64>,

    /// With -C or -G: keep at most COUNT files of this run (tcpdump's -W): with -C alone the
    /// names FILE0.. are reused ring-wise, otherwise the oldest file goes.
    #[arg(short = 'W', value_name = "COUNT", requires = "rotation",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub file_count: Option<u32>,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics while tracing, e.g.
    /// 127.0.0.1:9819 (port 0 picks a free one, written to the ready file). With -q they are
    /// the only output until exit.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen, conflicts_with = "read")]
    pub metrics: Option<SocketAddr>,

    /// Replay a trace saved with -w instead of tracing (no root needed); `-` reads stdin.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Option<PathBuf>,

    /// Also write the ARP frames as pcapng for Wireshark, with each trigger as the packet
    /// comment (live or with -r).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Print the man page (roff) or a shell's completion script on stdout and exit, for
    /// packagers: `arp-trace --generate man > arp-trace.1`.
    #[arg(long, value_enum, value_name = "WHAT", exclusive = true)]
    pub generate: Option<Generate>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `-B` when not given: 4 MiB holds a burst of some ten thousand requests.
pub const DEFAULT_BUFFER_KIB: u32 = 4096;

impl Args {
    /// `-w -`: the trace goes to standard output, so nothing else may.
    pub fn trace_to_stdout(&self) -> bool {
        self.write.as_deref() == Some(std::path::Path::new("-"))
    }

    /// Combinations clap's declarations cannot express: a usage error (exit 2) when given.
    pub fn conflicts(&self) -> Option<String> {
        if !self.trace_to_stdout() {
            return None;
        }
        if self.json {
            return Some(
                "-w - puts the trace on standard output, which --json would share: drop --json \
                 (the trace is JSON Lines already)"
                    .into(),
            );
        }
        if self.file_size.is_some() || self.rotate_seconds.is_some() {
            return Some(
                "-w - cannot be rotated (-C, -G): give a file name to rotate, or rotate \
                 downstream of the pipe"
                    .into(),
            );
        }
        if self.pcap.as_deref() == Some(std::path::Path::new("-")) {
            return Some(
                "-w - and --pcap - cannot share standard output: give --pcap a file".into(),
            );
        }
        None
    }

    pub fn buffer_kib(&self) -> u32 {
        self.buffer_kib.unwrap_or(DEFAULT_BUFFER_KIB)
    }

    pub fn hooks(&self) -> HookChoice {
        self.hooks.unwrap_or(HookChoice::Auto)
    }

    /// One warning per option given that only a live run uses, when replaying with `-r`:
    /// silently ignoring them would let a user think they changed the replay.
    pub fn ignored_by_replay(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.read.is_none() {
            return w;
        }
        if self.buffer_kib.is_some() {
            w.push(
                "-B does nothing with -r: it sizes the kernel's ring buffer for live tracing"
                    .to_string(),
            );
        }
        if self.hooks.is_some() {
            w.push(
                "--hooks does nothing with -r: the trace's header names the hooks its live run \
                 used"
                    .to_string(),
            );
        }
        w
    }
}

/// What `--generate` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generate {
    /// The man page, arp-trace.1.
    Man,
    /// The bash completion script.
    CompleteBash,
    /// The zsh completion script (`_arp-trace`).
    CompleteZsh,
    /// The fish completion script.
    CompleteFish,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Check, without tracing, which hooks this kernel allows and why not; exit 0 when
    /// arp-trace can run here.
    Doctor {
        /// Print the report as one JSON object (the checks, each hook tried, the verdict).
        #[arg(long)]
        json: bool,
    },
    /// Compare two traces: ARP requests per (namespace, interface, sender IP, reason) and
    /// the sysctl/address changes between them. Exit 0 when the groups are the same, 1 when
    /// they differ, 2 on trouble (like diff(1)).
    Diff {
        before: PathBuf,
        after: PathBuf,
        /// Print the comparison as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectionChoice {
    In,
    Out,
    Both,
}

impl DirectionChoice {
    /// The one direction wanted, or `None` for both.
    pub fn only(self) -> Option<arp_trace_model::Direction> {
        match self {
            DirectionChoice::In => Some(arp_trace_model::Direction::In),
            DirectionChoice::Out => Some(arp_trace_model::Direction::Out),
            DirectionChoice::Both => None,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether text output is coloured, given whether stdout is a terminal and NO_COLOR's
    /// value (no-color.org: set and not empty disables colour by default).
    pub fn enabled(self, terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

/// Compression suffixes arp-trace cannot write: with them `-w` would put plain JSON under a
/// name every tool takes for compressed.
const UNWRITTEN_SUFFIXES: &[&str] = &["bz2", "xz", "lz4", "lzma", "lz", "Z", "zip", "7z", "br"];

fn parse_write(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match p.extension().and_then(|e| e.to_str()) {
        Some(e) if UNWRITTEN_SUFFIXES.contains(&e) => Err(format!(
            "arp-trace compresses only .gz and .zst and would write plain JSON under this .{e} \
             name: end it in .gz, .zst or .jsonl"
        )),
        _ => Ok(p),
    }
}

fn parse_buffer_kib(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of KiB"))?;
    if v < 4 || !v.is_power_of_two() || v > 1 << 20 {
        return Err(format!(
            "{v} KiB: use a power of two between 4 and 1048576 (e.g. 4096)"
        ));
    }
    Ok(v)
}

/// The port arp-trace's metrics are documented and packaged on.
pub const METRICS_PORT: u16 = 9819;

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not ADDR:PORT: give an IP address and a port, e.g. \
             127.0.0.1:{METRICS_PORT} or [::1]:{METRICS_PORT}"
        )
    })
}

/// The most `-C` takes: a million times a million bytes is past any file system's file.
const MAX_FILE_SIZE: u64 = 1_000_000_000_000;

/// tcpdump's `-C`: millions of bytes, or KiB/MiB/GiB with a k/m/g suffix.
fn parse_file_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1_000_000),
    };
    let hint = "give a whole number of millions of bytes, or of KiB, MiB, GiB with a k, m, g \
                suffix (e.g. -C 100, -C 512k)";
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a file size: {hint}"))?;
    match n.checked_mul(unit) {
        Some(0) => Err(format!("{s}: a file cannot be limited to nothing; {hint}")),
        Some(b) if b <= MAX_FILE_SIZE => Ok(b),
        _ => Err(format!("{s}: more than {MAX_FILE_SIZE} bytes; {hint}")),
    }
}

fn parse_rotate_seconds(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(v) if (1..=MAX_INTERVAL).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: give a whole number of seconds from 1 to {MAX_INTERVAL} (a year)"
        )),
    }
}

fn parse_interval(s: &str) -> Result<u64, String> {
    let range = format!("give 1 to {MAX_INTERVAL} seconds (a year)");
    match s.parse::<u64>() {
        Ok(v) if (1..=MAX_INTERVAL).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} s: {range}")),
        Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("too large: {range}"))
        }
        Err(_) => Err(format!("{s:?} is not a whole number of seconds; {range}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn colour_follows_the_option_then_no_color_then_the_terminal() {
        use std::ffi::OsStr;
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(ColorWhen::Auto.enabled(true, None));
        assert!(ColorWhen::Auto.enabled(true, empty));
        assert!(!ColorWhen::Auto.enabled(true, set));
        assert!(!ColorWhen::Auto.enabled(false, None));
        assert!(ColorWhen::Always.enabled(false, set));
        assert!(!ColorWhen::Never.enabled(true, None));
    }

    #[test]
    fn a_compression_arp_trace_does_not_write_is_refused() {
        for ok in ["t.jsonl", "t.jsonl.gz", "t.jsonl.zst", "t.json", "t"] {
            assert_eq!(parse_write(ok), Ok(PathBuf::from(ok)));
        }
        for bad in ["t.bz2", "t.jsonl.xz", "t.lz4"] {
            let e = parse_write(bad).unwrap_err();
            assert!(e.contains(".gz and .zst"), "{e}");
        }
    }

    #[test]
    fn parses_tcpdump_letters() {
        let a = Args::try_parse_from([
            "arp-trace",
            "-i",
            "eth3",
            "-i",
            "eth5",
            "-c",
            "3",
            "-q",
            "--netns",
            "srv",
        ])
        .unwrap();
        assert_eq!(a.interfaces, ["eth3", "eth5"]);
        assert_eq!(a.count, Some(3));
        assert!(a.quiet);
        assert_eq!(a.netns, ["srv"]);
        assert_eq!(a.buffer_kib(), 4096);
        assert!(a.ignored_by_replay().is_empty());
        assert!(!a.foreign_only && !a.verbose && a.summary_interval.is_none());
        let a = Args::try_parse_from([
            "arp-trace",
            "-v",
            "--foreign-only",
            "--summary-interval",
            "5",
        ])
        .unwrap();
        assert!(a.foreign_only && a.verbose);
        assert_eq!(a.summary_interval, Some(5));
        assert!(Args::try_parse_from(["arp-trace", "--summary-interval", "0"]).is_err());
    }

    #[test]
    fn live_only_options_warn_on_replay() {
        let a = Args::try_parse_from(["arp-trace", "-r", "t", "-B", "64", "--hooks", "kprobe"])
            .unwrap();
        let w = a.ignored_by_replay();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("-B does nothing with -r") && w[1].starts_with("--hooks"));
        let a = Args::try_parse_from(["arp-trace", "-B", "64", "--hooks", "kprobe"]).unwrap();
        assert!(a.ignored_by_replay().is_empty());
        assert_eq!((a.buffer_kib(), a.hooks()), (64, HookChoice::Kprobe));
        let a = Args::try_parse_from(["arp-trace", "-r", "t"]).unwrap();
        assert!(a.ignored_by_replay().is_empty());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Args::try_parse_from(["arp-trace", "-c", "0"]).is_err());
        assert!(Args::try_parse_from(["arp-trace", "-B", "100"]).is_err());
        assert!(Args::try_parse_from(["arp-trace", "-B", "x"]).is_err());
        assert!(Args::try_parse_from(["arp-trace", "-B", "64"]).is_ok());
    }

    #[test]
    fn rotation_options_read_like_tcpdump() {
        let a = Args::try_parse_from(["arp-trace", "-w", "t", "-C", "2", "-W", "5"]).unwrap();
        assert_eq!((a.file_size, a.file_count), (Some(2_000_000), Some(5)));
        let a = Args::try_parse_from(["arp-trace", "-w", "t", "-C", "64k", "-G", "60"]).unwrap();
        assert_eq!((a.file_size, a.rotate_seconds), (Some(65536), Some(60)));
        for (argv, want) in [
            (&["-w", "t", "-C", "0"][..], "limited to nothing"),
            (&["-w", "t", "-C", "0k"], "limited to nothing"),
            (&["-w", "t", "-C", "1.5"], "not a file size"),
            (&["-w", "t", "-C", "99999999999999g"], "more than"),
            (&["-w", "t", "-G", "0"], "from 1 to"),
            (&["-C", "1"], "--write"),
            (&["-w", "t", "-W", "3"], "-C"),
            (&["-w", "t", "-C", "1", "-W", "0"], "-W"),
            (&["-r", "t", "-w", "u", "-G", "5"], "-G"),
        ] {
            let e = Args::try_parse_from(std::iter::once("arp-trace").chain(argv.iter().copied()))
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
            assert!(e.to_string().contains(want), "{argv:?}: {e}");
        }
    }

    #[test]
    fn metrics_take_an_address_and_a_port() {
        let a = Args::try_parse_from(["arp-trace", "--metrics", "127.0.0.1:9819"]).unwrap();
        assert_eq!(a.metrics, Some("127.0.0.1:9819".parse().unwrap()));
        assert!(Args::try_parse_from(["arp-trace", "--metrics", "[::1]:0"]).is_ok());
        for bad in ["localhost:9819", "127.0.0.1", "9819", "127.0.0.1:99999", ""] {
            let e = Args::try_parse_from(["arp-trace", "--metrics", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("is not ADDR:PORT"), "{bad}: {e}");
        }
        let e =
            Args::try_parse_from(["arp-trace", "-r", "t", "--metrics", "127.0.0.1:1"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn summary_interval_is_bounded() {
        let parse =
            |v: &str| Args::try_parse_from(["arp-trace", &format!("--summary-interval={v}")]);
        assert_eq!(
            parse(&MAX_INTERVAL.to_string()).unwrap().summary_interval,
            Some(MAX_INTERVAL)
        );
        for v in [
            "18446744073709551615",
            "99999999999999999999999",
            &(MAX_INTERVAL + 1).to_string(),
            "-1",
            "1.5",
        ] {
            let e = parse(v).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{v}");
            assert!(
                e.to_string().contains("give 1 to 31536000 seconds"),
                "{v}: {e}"
            );
        }
        // The deadline the live loop computes from the largest value stays representable.
        let now = std::time::Instant::now();
        assert!(now
            .checked_add(std::time::Duration::from_secs(MAX_INTERVAL * 1000))
            .is_some());
    }

    #[test]
    fn help_and_readme_state_one_exit_status_rule() {
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let help = words(&Args::command().render_long_help().to_string());
        let help = &help[help.find("Exit status:").expect("an Exit status section")..];
        let readme = words(include_str!("../../README.md"));
        let readme = &readme[readme
            .find("### Exit status")
            .expect("an Exit status table")..];
        let man = words(&man_section(&crate::doc::man_page(), "EXIT STATUS"));
        for want in [
            "Ctrl-C, SIGTERM",
            "-c",
            "stdout closed",
            "cut at its end",
            "tracing could not start",
            "an output failed",
            "corrupt before its end",
            "a usage error (unknown option, bad value)",
            "diff(1)",
        ] {
            assert!(help.contains(want), "--help lacks {want:?}: {help}");
            assert!(readme.contains(want), "README lacks {want:?}: {readme}");
            assert!(man.contains(want), "the man page lacks {want:?}: {man}");
        }
        // The man page states --help's rule whole: every line of it, codes as tags.
        for line in crate::doc::help_section("Exit status:").unwrap().lines() {
            let text = line.trim();
            let text = text.split_once("  ").map_or(text, |(_, t)| t.trim());
            assert!(
                man.contains(&words(text)),
                "the man page lacks {text:?}: {man}"
            );
        }
    }

    /// The text of a man page section as `man` shows it, roughly: requests dropped, fonts
    /// and escaped hyphens undone.
    fn man_section(page: &str, name: &str) -> String {
        let start = page
            .find(&format!(".SH \"{name}\""))
            .or_else(|| page.find(&format!(".SH {name}\n")))
            .unwrap_or_else(|| panic!("no {name} section"));
        let rest = &page[start..];
        let rest = &rest[..rest[1..].find("\n.SH ").map_or(rest.len(), |i| i + 1)];
        rest.lines()
            .filter(|l| !l.starts_with('.'))
            .collect::<Vec<_>>()
            .join(" ")
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fR", "")
    }
}
