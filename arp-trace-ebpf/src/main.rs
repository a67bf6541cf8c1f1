//! eBPF programs of arp-trace. They only copy what they see into the ring buffer; all
//! decoding and reasoning happens in user space where it can be tested without a kernel.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Built for the host only so `cargo clippy --workspace` works; the programs exist for BPF only.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

use core::ffi::c_void;

use arp_trace_common::{
    ArpXmitEvent, Offsets, EVENT_ARP_XMIT, FRAME_CAP, HOOK_NET_DEV_QUEUE, NAME_LEN, NO_MAC_HEADER,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf,
    },
    macros::{btf_tracepoint, map},
    maps::{PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};

/// Set by the loader from the running kernel's BTF before the programs are loaded.
#[no_mangle]
static OFFSETS: Offsets = Offsets::UNSET;

/// Default size; the loader may resize it (`--buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Events that could not be delivered because the ring buffer was full, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const ETH_P_ARP_BE: u16 = 0x0806u16.to_be();

#[inline(always)]
fn offsets() -> Offsets {
    // Volatile so the compiler cannot fold the placeholder values the loader overwrites.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

#[inline(always)]
unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, i64> {
    bpf_probe_read_kernel(base.add(off as usize) as *const T).map_err(|e| e as i64)
}

fn count_lost() {
    if let Some(p) = LOST.get_ptr_mut(0) {
        unsafe { *p += 1 };
    }
}

#[btf_tracepoint(function = "net_dev_queue")]
pub fn net_dev_queue(ctx: BtfTracePointContext) -> i32 {
    let skb: *const c_void = ctx.arg(0);
    if let Err(e) = unsafe { try_net_dev_queue(skb as *const u8) } {
        // Only a kernel whose layout the loader misread gets here; say so once per event.
        aya_log_ebpf::debug!(&ctx, "net_dev_queue: kernel read failed: {}", e);
    }
    0
}

unsafe fn try_net_dev_queue(skb: *const u8) -> Result<(), i64> {
    let o = offsets();
    let proto: u16 = read(skb, o.skb_protocol)?;
    if proto != ETH_P_ARP_BE {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<ArpXmitEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    match fill_xmit(&mut *ev, skb, &o) {
        Ok(()) => entry.submit(0),
        Err(e) => {
            entry.discard(0);
            return Err(e);
        }
    }
    Ok(())
}

#[inline(always)]
unsafe fn fill_xmit(ev: &mut ArpXmitEvent, skb: *const u8, o: &Offsets) -> Result<(), i64> {
    ev.kind = EVENT_ARP_XMIT;
    ev.hook = HOOK_NET_DEV_QUEUE;
    ev.ts_ns = bpf_ktime_get_ns();
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev.pid_tgid = bpf_get_current_pid_tgid();
    ev.comm = bpf_get_current_comm().unwrap_or([0; NAME_LEN]);
    ev._pad = 0;

    ev.skb_len = read(skb, o.skb_len)?;
    ev.mark = read(skb, o.skb_mark)?;
    ev.iif = read(skb, o.skb_iif)?;

    let dev: *const u8 = read(skb, o.skb_dev)?;
    ev.ifindex = read(dev, o.dev_ifindex)?;
    ev.ifname = read(dev, o.dev_name)?;
    let net: *const u8 = read(dev, o.dev_nd_net)?;
    ev.netns = if net.is_null() {
        0
    } else {
        read(net, o.net_ns_inum)?
    };

    let head: *const u8 = read(skb, o.skb_head)?;
    let mac: u16 = read(skb, o.skb_mac_header)?;
    let nh: u16 = read(skb, o.skb_network_header)?;
    let start = if mac != NO_MAC_HEADER && mac <= nh {
        ev.mac_len = nh - mac;
        head.add(mac as usize)
    } else {
        ev.mac_len = NO_MAC_HEADER;
        head.add(nh as usize)
    };
    // Copy a fixed size (the verifier wants constants); the frame may end before FRAME_CAP
    // inside a small allocation, so fall back to the bare Ethernet ARP size.
    if bpf_probe_read_kernel_buf(start, &mut ev.frame).is_ok() {
        ev.caplen = FRAME_CAP as u16;
    } else {
        bpf_probe_read_kernel_buf(start, &mut ev.frame[..42]).map_err(|e| e as i64)?;
        ev.caplen = 42;
    }
    Ok(())
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
