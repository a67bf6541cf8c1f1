//! Whether `current` is the task that sent a packet: the context a program runs in, without
//! unwinding the kernel stack (bpf_get_stack() cost more than everything else a request
//! takes, BENCHMARKS.md).
//!
//! Where the loader could set it up (`Config::ctx_preempt`), from the kernel's preempt
//! count, read once per record (`preempt_context`). Elsewhere from a per-CPU flag that
//! `tp_btf/softirq_entry` and `tp_btf/softirq_exit` keep: softirqs do not nest on a CPU, and
//! `handle_softirqs()` brackets every handler with these two tracepoints, whether it runs at
//! interrupt exit, from `local_bh_enable()` or in ksoftirqd, so one flag is exact; but the
//! two run for every softirq of the host. (Threaded NAPI polls outside softirq, in a kernel
//! thread that is then `current`; neither way can tell that, nor could the stack walk.)

use crate::shared::{Btf, Mem, CONFIG};
use arp_trace_common::{CONTEXT_SOFTIRQ, CONTEXT_TASK, CONTEXT_UNKNOWN, CTX_WINDOW, NAME_LEN};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf, generated::bpf_get_current_task_btf,
    },
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};

/// 1 while this CPU runs a softirq handler.
#[map]
static IN_SOFTIRQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[btf_tracepoint(function = "softirq_entry")]
pub fn softirq_entry(_ctx: BtfTracePointContext) -> i32 {
    set(1);
    0
}

#[btf_tracepoint(function = "softirq_exit")]
pub fn softirq_exit(_ctx: BtfTracePointContext) -> i32 {
    set(0);
    0
}

#[inline(always)]
fn set(v: u32) {
    if let Some(p) = IN_SOFTIRQ.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot, and nothing else on this CPU runs meanwhile.
        unsafe { *p = v };
    }
}

/// What a caller passes for a context it does not know: [`context`] then reads it.
pub(crate) const ASK: u32 = CONTEXT_UNKNOWN;

/// `known`, or the context read now when the caller passes [`ASK`]. A hook that only ever
/// fires in one context (a timer callback's) saves the read.
#[inline(always)]
pub(crate) fn context(known: u32) -> u32 {
    if known != ASK {
        known
    } else {
        current_context()
    }
}

/// `CONTEXT_*` of the program running now.
#[inline(always)]
pub(crate) fn current_context() -> u32 {
    // SAFETY: a plain read of frozen .rodata.
    if unsafe { core::ptr::read_volatile(&CONFIG.ctx_preempt) } != 0 {
        return unsafe { preempt_context() };
    }
    match IN_SOFTIRQ.get(0) {
        Some(0) => CONTEXT_TASK,
        Some(_) => CONTEXT_SOFTIRQ,
        None => CONTEXT_UNKNOWN,
    }
}

/// `SOFTIRQ_OFFSET | HARDIRQ_MASK | NMI_MASK`: any of them set, `current` did not send.
/// (`SOFTIRQ_DISABLE_OFFSET`, which `local_bh_disable()` adds in a task, is not among them.)
const NOT_TASK: u32 = 0x0000_0100 | 0x000f_0000 | 0x00f0_0000;

/// The context from this CPU's preempt count, the kernel's own `in_task()` (see
/// `Config::ctx_preempt`). The per-CPU copy is found from `current`'s runqueue, which is this
/// CPU's, and read with `current_task` beside it: where that is not `current`, the layout is
/// not what the loader took it for, and the context is unknown (nobody is named) rather
/// than wrong.
#[inline(always)]
unsafe fn preempt_context() -> u32 {
    let task = bpf_get_current_task_btf() as *const u8;
    let cfs_rq: *const u8 = Btf::get(task, core::ptr::read_volatile(&CONFIG.task_se_cfs_rq));
    if cfs_rq.is_null() {
        return CONTEXT_UNKNOWN;
    }
    let rq: *const u8 = Btf::get(cfs_rq, core::ptr::read_volatile(&CONFIG.cfs_rq_rq));
    if rq.is_null() {
        return CONTEXT_UNKNOWN;
    }
    let window = core::ptr::read_volatile(&CONFIG.ctx_window) as isize;
    let mut buf = core::mem::MaybeUninit::<[u64; CTX_WINDOW / 8]>::uninit();
    let src = (rq as *const u8).wrapping_offset(window);
    if bpf_probe_read_kernel_buf(src, &mut *(buf.as_mut_ptr() as *mut [u8; CTX_WINDOW])).is_err() {
        return CONTEXT_UNKNOWN;
    }
    let bytes = buf.as_ptr() as *const u8;
    // The loader keeps both within the window; the checks only tell the verifier so.
    let task_at = core::ptr::read_volatile(&CONFIG.ctx_task_at) as usize;
    let count_at = core::ptr::read_volatile(&CONFIG.ctx_count_at) as usize;
    if task_at > CTX_WINDOW - 8 || count_at > CTX_WINDOW - 4 {
        return CONTEXT_UNKNOWN;
    }
    let copy_task = core::ptr::read_unaligned(bytes.add(task_at) as *const u64);
    let count = core::ptr::read_unaligned(bytes.add(count_at) as *const u32);
    if copy_task != task as u64 {
        return CONTEXT_UNKNOWN;
    }
    if count & NOT_TASK != 0 {
        CONTEXT_SOFTIRQ
    } else {
        CONTEXT_TASK
    }
}

/// A record's `pid_tgid` and `comm` for the program running in `context`: `current`'s in a
/// task, zeros in a softirq, where `current` is whichever task the softirq interrupted and
/// user space never reads them (only `CONTEXT_TASK` names a sender). A failing entry's timer
/// record runs there, and `bpf_get_current_comm()` was ~36 ns a call.
#[inline(always)]
pub(crate) unsafe fn task_fields(context: u32, pid_tgid: *mut u64, comm: *mut [u8; NAME_LEN]) {
    if context == CONTEXT_SOFTIRQ {
        no_task(pid_tgid, comm);
        return;
    }
    *pid_tgid = bpf_get_current_pid_tgid();
    crate::shared::current_comm(comm);
}

/// Zeros for a record's `pid_tgid` and `comm`: no task is named.
#[inline(always)]
pub(crate) unsafe fn no_task(pid_tgid: *mut u64, comm: *mut [u8; NAME_LEN]) {
    const _: () = assert!(NAME_LEN == 16);
    // Volatile words: plain zero stores would become a memset call (`zero_words`). Every
    // record keeps `comm` 8-aligned.
    core::ptr::write_volatile(pid_tgid, 0);
    let w = comm as *mut u64;
    core::ptr::write_volatile(w, 0);
    core::ptr::write_volatile(w.add(1), 0);
}
