//! What every program shares: the loader's globals (`OFFSETS`, `CONFIG`), the maps, the
//! per-CPU request slots that carry a request's number from `net_dev_queue` to the neighbour
//! tracepoints, and the kernel-read helper. One module because every hook writes or reads
//! them, and the loader finds them by these names, whichever module uses them.

use arp_trace_common::{Config, Offsets, NAME_LEN, SETTING_QUEUE_TRIGGER, WAKE_GAP_NS};
use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};

/// Set by the loader from the running kernel's BTF before the programs are loaded.
#[no_mangle]
pub(crate) static OFFSETS: Offsets = Offsets::UNSET;

#[no_mangle]
pub(crate) static CONFIG: Config = Config::UNSET;

/// An ARP request or neighbour solicitation transmitted on this CPU that no neighbour record
/// has claimed yet.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Req {
    pub(crate) seq: u64,
    /// Owner of the entry's newest queued packet, caught before a reply flushed the queue.
    pub(crate) sk: u64,
    pub(crate) sk_ino: u64,
    pub(crate) netns: u32,
    pub(crate) ifindex: u32,
    /// IPv4 in the first 4 bytes (the rest zero), or IPv6: neighbour keys of both tables
    /// compare as two words (a 16-byte compare is 16 branches for the verifier to walk).
    pub(crate) target: [u64; 2],
    /// `arp_queue.qlen` when the entry was first updated after the request (`NO_QLEN`: not yet).
    pub(crate) qlen: u32,
    pub(crate) owner_flags: u32,
}

/// A neighbour key as two words, for comparing.
#[inline(always)]
pub(crate) fn key(target: [u8; 16]) -> [u64; 2] {
    // SAFETY: any 16 bytes are two u64s.
    unsafe { core::mem::transmute::<[u8; 16], [u64; 2]>(target) }
}

impl Req {
    /// A request just transmitted, with nothing caught of its entry yet.
    #[inline(always)]
    pub(crate) fn pending(seq: u64, netns: u32, ifindex: u32, target: [u8; 16]) -> Req {
        let mut r = core::mem::MaybeUninit::<Req>::uninit();
        // SAFETY: set_pending() writes every field, and Req has no padding.
        unsafe {
            (*r.as_mut_ptr()).set_pending(seq, netns, ifindex, key(target));
            r.assume_init()
        }
    }

    /// Makes this slot a new pending request in place. The zeros are volatile stores: this
    /// BPF backend turns neighbouring zero stores into a call to a byte-at-a-time `memset`
    /// (see [`zero_words`]).
    #[inline(always)]
    pub(crate) fn set_pending(&mut self, seq: u64, netns: u32, ifindex: u32, target: [u64; 2]) {
        self.seq = seq;
        unsafe {
            core::ptr::write_volatile(&mut self.sk, 0);
            core::ptr::write_volatile(&mut self.sk_ino, 0);
            core::ptr::write_volatile(&mut self.owner_flags, 0);
        }
        self.netns = netns;
        self.ifindex = ifindex;
        self.target = target;
        self.qlen = NO_QLEN;
    }
}

pub(crate) const NO_QLEN: u32 = u32::MAX;
/// Requests in flight per CPU. `neigh_probe()` runs `arp_solicit()`, which transmits the
/// request; the neighbour tracepoint follows once bottom halves are enabled again, and
/// softirqs run in between may send requests of their own (a peer resolving us back, on
/// veth), so one slot is not enough.
pub(crate) const PENDING: usize = 4;

#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Slot {
    pub(crate) next_seq: u64,
    pub(crate) next: u32,
    /// NEIGH_FAILED drops on this CPU since its last neighbour record of the same family:
    /// `[IPv4, IPv6]`.
    pub(crate) failed_drops: [u32; 2],
    /// The entry an update on this CPU is failing (`neigh_update` to NUD_FAILED of an
    /// INCOMPLETE or PROBE entry), for `neigh_update_done` to report; 0 when none.
    pub(crate) failing: u64,
    /// That update's netlink port.
    pub(crate) failing_pid: u32,
    pub(crate) _pad: u32,
    pub(crate) reqs: [Req; PENDING],
}

#[map]
pub(crate) static SLOT: PerCpuArray<Slot> = PerCpuArray::with_max_entries(1, 0);

/// Default size; the loader may resize it (`--buffer-size`).
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// `SETTING_*` flags, written by the loader once it has chosen the solicit path. A map, not
/// .rodata: the path is known only after the object is loaded and programs are tried.
#[map]
pub(crate) static SETTINGS: Array<u32> = Array::with_max_entries(1, 0);

/// Zeroes `words` 8-byte words from `p` (8-aligned) with volatile stores. Plain zero stores
/// and `[0; N]` are merged by LLVM into a `memset`, which this BPF backend emits as a call to
/// a loop writing one byte per turn: 232 bytes of an ARP record's address lists were ~1,200
/// instructions per frame, more than the rest of `net_dev_queue`.
#[inline(always)]
pub(crate) unsafe fn zero_words(p: *mut u8, words: usize) {
    let w = p as *mut u64;
    let mut i = 0;
    while i < words {
        core::ptr::write_volatile(w.add(i), 0);
        i += 1;
    }
}

/// The current task's name written straight into `dst`. aya's `bpf_get_current_comm()` zeroes
/// a copy on the stack first, which becomes a byte-at-a-time `memset` call (see
/// [`zero_words`]); on failure the kernel zeroes `dst` itself.
#[inline(always)]
pub(crate) unsafe fn current_comm(dst: *mut [u8; NAME_LEN]) {
    aya_ebpf::helpers::generated::bpf_get_current_comm(dst as *mut _, NAME_LEN as u32);
}

#[inline(always)]
pub(crate) fn queue_trigger() -> bool {
    SETTINGS
        .get(0)
        .is_some_and(|s| s & SETTING_QUEUE_TRIGGER != 0)
}

/// When a record last woke the ring buffer's reader (`bpf_ktime_get_ns()`), for all CPUs:
/// racy between CPUs, which at worst costs one wakeup more or fewer. A global (.bss), not a
/// map: no lookup and no null branch, which the 6.1 verifier could not afford in
/// net_dev_queue (E2BIG).
static mut WOKE: u64 = 0;

/// `bpf_ringbuf_submit()` flags for a record made at `now`: see `WAKE_GAP_NS`.
#[inline(always)]
pub(crate) fn wake_flags(now: u64) -> u64 {
    // SAFETY: a plain u64 in the object's .bss; a torn race between CPUs is harmless.
    unsafe {
        let p = &raw mut WOKE;
        if now.wrapping_sub(core::ptr::read_volatile(p)) < WAKE_GAP_NS {
            return BPF_RB_NO_WAKEUP as u64;
        }
        core::ptr::write_volatile(p, now);
    }
    BPF_RB_FORCE_WAKEUP as u64
}

/// Events that could not be delivered because the ring buffer was full, per CPU.
#[map]
pub(crate) static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub(crate) fn offsets() -> Offsets {
    // Volatile so the compiler cannot fold the placeholder values the loader overwrites.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

#[inline(always)]
pub(crate) unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, i64> {
    bpf_probe_read_kernel(base.add(off as usize) as *const T).map_err(|e| e as i64)
}

/// An `OFFSETS` field read from frozen .rodata, which the verifier then knows as a constant:
/// what [`Mem::get`] on [`Btf`] needs.
macro_rules! off {
    ($field:ident) => {
        core::ptr::read_volatile(&$crate::shared::OFFSETS.$field)
    };
}
pub(crate) use off;

/// How a program reads kernel memory.
pub(crate) trait Mem {
    /// Whether reads are direct loads (which only reach what BTF types).
    const DIRECT: bool;
    /// The `T` at `base + off`, zero when it cannot be read.
    unsafe fn get<T: Copy>(base: *const u8, off: u32) -> T;
    /// The `T` at `base + off`, or the helper's error: for records that are discarded
    /// rather than sent with a field missing. A direct load cannot fail this way.
    unsafe fn try_get<T: Copy>(base: *const u8, off: u32) -> Result<T, i64>;
}

/// Direct loads through BTF-typed pointers: a `tp_btf`/`fentry` argument and pointers loaded
/// from one. The verifier checks each against the kernel's BTF and makes it one guarded load
/// (a fault reads zero), where `bpf_probe_read_kernel()` is a helper call of ~25 ns: a
/// request's records read ~80 fields (BENCHMARKS.md, issue 14). `off` must come from
/// [`off!`], and `base` must be such a pointer (container_of() arithmetic and pointers read
/// with the helper are not: those use [`Probe`]).
pub(crate) struct Btf;

impl Mem for Btf {
    const DIRECT: bool = true;
    #[inline(always)]
    unsafe fn get<T: Copy>(base: *const u8, off: u32) -> T {
        core::ptr::read_volatile(base.add(off as usize) as *const T)
    }
    #[inline(always)]
    unsafe fn try_get<T: Copy>(base: *const u8, off: u32) -> Result<T, i64> {
        Ok(Self::get(base, off))
    }
}

/// `bpf_probe_read_kernel()`: any address, such as a kprobe's arguments.
pub(crate) struct Probe;

impl Mem for Probe {
    const DIRECT: bool = false;
    #[inline(always)]
    unsafe fn get<T: Copy>(base: *const u8, off: u32) -> T {
        bpf_probe_read_kernel(base.add(off as usize) as *const T).unwrap_or(core::mem::zeroed())
    }
    #[inline(always)]
    unsafe fn try_get<T: Copy>(base: *const u8, off: u32) -> Result<T, i64> {
        read(base, off)
    }
}

pub(crate) fn count_lost() {
    if let Some(p) = LOST.get_ptr_mut(0) {
        unsafe { *p += 1 };
    }
}

/// Records reserved and then discarded because a kernel read failed, per CPU: counted like
/// ring-buffer loss, so nothing goes missing uncounted.
#[map]
pub(crate) static DISCARDED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

pub(crate) fn count_discarded() {
    if let Some(p) = DISCARDED.get_ptr_mut(0) {
        unsafe { *p += 1 };
    }
}
