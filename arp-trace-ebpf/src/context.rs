//! `tp_btf/softirq_entry` and `tp_btf/softirq_exit`: a per-CPU flag saying whether this CPU is
//! running a softirq, so the other programs know whether `current` is the task that sent the
//! packet without unwinding the kernel stack (bpf_get_stack() cost more than everything else
//! a request takes, BENCHMARKS.md). The kernel's own preempt count would say the same, but it
//! is a per-CPU variable a program can only reach through a ksym, and kernels built without
//! CONFIG_KALLSYMS_ALL (this project's own) do not resolve those.
//!
//! Softirqs do not nest on a CPU, and `handle_softirqs()` brackets every handler with these
//! two tracepoints, whether it runs at interrupt exit, from `local_bh_enable()` or in
//! ksoftirqd: so one flag is exact. (Threaded NAPI polls outside softirq, in a kernel thread
//! that is then `current`; the stack walk this replaces could not tell that either.)

use arp_trace_common::{CONTEXT_SOFTIRQ, CONTEXT_TASK, CONTEXT_UNKNOWN, NAME_LEN};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
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

/// `CONTEXT_*` of the program running now.
#[inline(always)]
pub(crate) fn current_context() -> u32 {
    match IN_SOFTIRQ.get(0) {
        Some(0) => CONTEXT_TASK,
        Some(_) => CONTEXT_SOFTIRQ,
        None => CONTEXT_UNKNOWN,
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
