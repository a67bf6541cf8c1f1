//! The do-nothing program of figure 1e: `r0 = 0; exit` as a raw tracepoint program on each
//! tracepoint arp-trace hooks for all traffic, held by xtask itself. Its run time per call is
//! the floor any program on that tracepoint pays (the trampoline, the run-time accounting),
//! so a hook's cost above it is what the hook's own code adds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

use super::tcp::ProgStat;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// `mov r0, 0; exit`: two 8-byte instructions, opcode first; every other field is zero, so
/// the bytes read the same on either byte order.
const INSNS: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD; the rest stays zero, as the
/// kernel requires of fields it knows but the caller does not set.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct RawTracepointOpenAttr {
    name: u64,
    prog_fd: u32,
    pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<OwnedFd> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr prefix of the given size; the
    // kernel reads only that many bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One do-nothing program per tracepoint, detached when dropped (closing the link fd).
pub(super) struct Noop {
    /// (tracepoint, program, link).
    progs: Vec<(String, OwnedFd, OwnedFd)>,
}

impl Noop {
    pub(super) fn attach(tracepoints: &[&str]) -> Result<Noop> {
        let license = c"GPL";
        let mut progs = Vec::new();
        for tp in tracepoints {
            let mut name = [0u8; 16];
            name[..9].copy_from_slice(b"bench_nop");
            let mut load = ProgLoadAttr {
                prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
                insn_cnt: (INSNS.len() / 8) as u32,
                insns: INSNS.as_ptr() as u64,
                license: license.as_ptr() as u64,
                prog_name: name,
                ..Default::default()
            };
            let prog = bpf(BPF_PROG_LOAD, &mut load).context("load the do-nothing program")?;
            let tp_c = std::ffi::CString::new(*tp)?;
            let mut open = RawTracepointOpenAttr {
                name: tp_c.as_ptr() as u64,
                prog_fd: prog.as_raw_fd() as u32,
                ..Default::default()
            };
            let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut open)
                .with_context(|| format!("attach the do-nothing program to {tp}"))?;
            progs.push((tp.to_string(), prog, link));
        }
        Ok(Noop { progs })
    }

    /// Each program's counters, named by its tracepoint.
    pub(super) fn read(&self) -> Result<Vec<ProgStat>> {
        self.progs
            .iter()
            .map(|(tp, prog, _)| {
                let path = format!("/proc/self/fdinfo/{}", prog.as_raw_fd());
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
                let (run_cnt, run_time_ns) = fdinfo_counters(&text)
                    .with_context(|| format!("no run_cnt or run_time_ns in {path}"))?;
                Ok(ProgStat {
                    name: tp.clone(),
                    run_cnt,
                    run_time_ns,
                })
            })
            .collect()
    }
}

/// `(run_cnt, run_time_ns)` of a program descriptor's fdinfo.
pub(super) fn fdinfo_counters(text: &str) -> Option<(u64, u64)> {
    let field = |k: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(k)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("run_cnt")?, field("run_time_ns")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_program_descriptors_counters() {
        let t = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nprog_type:\t17\n\
                 prog_jited:\t1\nprog_tag:\t3b185187f1855c4c\nmemlock:\t4096\nprog_id:\t28630\n\
                 run_time_ns:\t123456\nrun_cnt:\t789\nrecursion_misses:\t0\nverified_insns:\t2\n";
        assert_eq!(fdinfo_counters(t), Some((789, 123456)));
        // A link descriptor has no counters.
        assert_eq!(
            fdinfo_counters("link_type:\traw_tracepoint\nprog_id:\t5\ntp_name:\tx\n"),
            None
        );
        // `run_cnt_x` is not `run_cnt`.
        assert_eq!(fdinfo_counters("run_cnt_x:\t1\nrun_time_ns:\t2\n"), None);
    }
}
