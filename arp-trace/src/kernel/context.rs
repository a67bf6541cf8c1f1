//! How the programs tell a softirq from the sender's task on this kernel: where this CPU's
//! preempt count lies from `current`'s runqueue, for `Config::ctx_preempt`, or nowhere, and
//! then the softirq tracepoints keep a flag. The loader and `doctor` both ask it.

use arp_trace_common::{Config, CTX_WINDOW};

use super::btf::Btf;

/// Sets up `Config::ctx_preempt` where this kernel allows it; elsewhere the softirq
/// tracepoints keep their flag. Two hook runs per softirq were ~150 ns of a request's
/// ~2.2 µs, and ran for every softirq of the host. The error says why not.
pub fn preempt_context(btf: &Btf, cfg: &mut Config) -> Result<(), String> {
    // Other architectures keep the preempt count elsewhere (arm64: in thread_info).
    if !cfg!(target_arch = "x86_64") {
        return Err("not x86-64".into());
    }
    // PREEMPT_RT serves softirqs in threads and counts them in the task instead.
    if btf.field("task_struct", "softirq_disable_cnt").is_ok() {
        return Err("a PREEMPT_RT kernel".into());
    }
    let (Ok(se_cfs_rq), Ok(cfs_rq_rq)) = (
        btf.field("task_struct", "se.cfs_rq"),
        btf.field("cfs_rq", "rq"),
    ) else {
        return Err("no task_struct.se.cfs_rq or cfs_rq.rq (CONFIG_FAIR_GROUP_SCHED)".into());
    };
    let Some(rq) = btf.percpu_var("runqueues") else {
        return Err("no runqueues in the BTF of .data..percpu".into());
    };
    // 6.2 to 6.14 keep both in `pcpu_hot`; before and since, each is a variable of its own.
    let var = |name: &str, member: &str| {
        btf.percpu_var(name).or_else(|| {
            Some(btf.percpu_var("pcpu_hot")? + btf.field("pcpu_hot", member).ok()?.offset)
        })
    };
    let (Some(task), Some(count)) = (
        var("current_task", "current_task"),
        var("__preempt_count", "preempt_count"),
    ) else {
        return Err("no current_task or __preempt_count in the BTF of .data..percpu".into());
    };
    let lo = task.min(count);
    let (task_at, count_at) = (task - lo, count - lo);
    if task_at as usize + 8 > CTX_WINDOW || count_at as usize + 4 > CTX_WINDOW {
        return Err(format!(
            "current_task and __preempt_count are {} bytes apart, more than one read",
            task.abs_diff(count)
        ));
    }
    let Ok(window) = i32::try_from(lo as i64 - rq as i64) else {
        return Err("the per-CPU section is too large".into());
    };
    cfg.ctx_preempt = 1;
    cfg.task_se_cfs_rq = se_cfs_rq.offset;
    cfg.cfs_rq_rq = cfs_rq_rq.offset;
    cfg.ctx_window = window;
    cfg.ctx_task_at = task_at;
    cfg.ctx_count_at = count_at;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel's scheduler and per-CPU section as the preempt-count context needs them:
    /// `task_struct.se.cfs_rq` at 192 + 128, `cfs_rq.rq` at 64, `runqueues` at `rq`, and
    /// `current_task` and the preempt count either as variables or inside `pcpu_hot`.
    fn sched_btf(rq: u32, vars: &[(&str, u32)], hot: Option<u32>, rt: bool) -> Btf {
        let mut b = crate::kernel::btf::tests::Builder::new();
        let int = b.int("int", 4);
        let rq_ty = b.strukt("rq", 4096, false, &[("nr_running", int, 0)]);
        let rq_ptr = b.ptr(rq_ty);
        let cfs_rq = b.strukt("cfs_rq", 512, false, &[("rq", rq_ptr, 64 * 8)]);
        let cfs_ptr = b.ptr(cfs_rq);
        let se = b.strukt("sched_entity", 256, false, &[("cfs_rq", cfs_ptr, 128 * 8)]);
        let mut task_members = vec![("se", se, 192 * 8)];
        if rt {
            task_members.push(("softirq_disable_cnt", int, 1024 * 8));
        }
        b.strukt("task_struct", 4096, false, &task_members);
        let mut sec = vec![(b.var("runqueues", rq_ty), rq, 4096)];
        for (name, off) in vars {
            sec.push((b.var(name, int), *off, 4));
        }
        if let Some(off) = hot {
            let hot_ty = b.strukt(
                "pcpu_hot",
                64,
                false,
                &[("current_task", int, 0), ("preempt_count", int, 8 * 8)],
            );
            sec.push((b.var("pcpu_hot", hot_ty), off, 64));
        }
        b.datasec(".data..percpu", 300_000, &sec);
        Btf::parse(&b.build()).unwrap()
    }

    fn ctx(btf: &Btf) -> Config {
        let mut c = Config::UNSET;
        let _ = preempt_context(btf, &mut c);
        c
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_preempt_count_is_found_from_the_runqueue_in_each_layout() {
        // 6.15 on: variables of their own (the running 6.18's offsets).
        let c = ctx(&sched_btf(
            195_456,
            &[("current_task", 86_040), ("__preempt_count", 86_064)],
            None,
            false,
        ));
        assert_eq!(c.ctx_preempt, 1);
        assert_eq!((c.task_se_cfs_rq, c.cfs_rq_rq), (192 + 128, 64));
        assert_eq!(c.ctx_window, 86_040 - 195_456);
        assert_eq!((c.ctx_task_at, c.ctx_count_at), (0, 24));
        // 6.2 to 6.14: both inside `pcpu_hot`, the count 8 bytes in.
        let c = ctx(&sched_btf(100_000, &[], Some(4_096), false));
        assert_eq!(c.ctx_preempt, 1);
        assert_eq!(c.ctx_window, 4_096 - 100_000);
        assert_eq!((c.ctx_task_at, c.ctx_count_at), (0, 8));
        // The count before `current_task`: the window starts at the count.
        let c = ctx(&sched_btf(
            50,
            &[("current_task", 2_016), ("__preempt_count", 2_000)],
            None,
            false,
        ));
        assert_eq!(c.ctx_window, 2_000 - 50);
        assert_eq!((c.ctx_task_at, c.ctx_count_at), (16, 0));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_softirq_tracepoints_stay_where_the_count_cannot_be_found() {
        let vars = [("current_task", 86_040), ("__preempt_count", 86_064)];
        // PREEMPT_RT counts softirqs in the task.
        assert_eq!(ctx(&sched_btf(195_456, &vars, None, true)).ctx_preempt, 0);
        // Too far apart for one read; 6.1's 64 bytes are not.
        let far = [("current_task", 0), ("__preempt_count", 4_096)];
        let v61 = [("current_task", 1_024), ("__preempt_count", 1_088)];
        let c = ctx(&sched_btf(195_456, &v61, None, false));
        assert_eq!((c.ctx_preempt, c.ctx_task_at, c.ctx_count_at), (1, 0, 64));
        assert_eq!(ctx(&sched_btf(195_456, &far, None, false)).ctx_preempt, 0);
        // No preempt count in the per-CPU section at all.
        let none = [("current_task", 0)];
        assert_eq!(ctx(&sched_btf(195_456, &none, None, false)).ctx_preempt, 0);
        assert_eq!(ctx(&sched_btf(195_456, &vars, None, false)).ctx_preempt, 1);
    }
}
