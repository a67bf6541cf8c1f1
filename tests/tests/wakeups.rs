//! End-to-end: a record the programs commit without waking the reader is still read. The
//! programs wake user space at most once per `WAKE_GAP_NS` and leave later records to the
//! reader's short polling after a wakeup; a record whose commit comes after that polling
//! stopped (its CPU preempted or its vCPU descheduled between the record's time and its commit)
//! woke nobody, and sat in the ring until some other record came. In a test, that is a
//! `wait_for` timing out after 15 s (CI, the IPv6 `neigh_failed` of the schema test).
//!
//! Alone in its binary: any other test's ARP in those seconds would wake the reader.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use arp_trace_e2e::*;

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> libc::c_long {
    // SAFETY: `attr` is a zeroed union bpf_attr larger than any of these commands read.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    }
}

/// The tracer's `.bss` map (8 bytes: the time of the last wakeup), found among the maps its
/// file descriptors hold.
fn tracer_bss(pid: i32) -> OwnedFd {
    let mut ids: Vec<u32> = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    for id in ids {
        let mut attr = [0u64; 16];
        attr[0] = id as u64; // map_id
        let fd = bpf(BPF_MAP_GET_FD_BY_ID, &mut attr);
        assert!(fd >= 0, "map {id}: {}", std::io::Error::last_os_error());
        // SAFETY: a descriptor the kernel just gave this process.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, name[16].
        let mut info = [0u8; 128];
        let mut attr = [0u64; 16];
        use std::os::fd::AsRawFd;
        attr[0] = fd.as_raw_fd() as u64 | ((info.len() as u64) << 32); // bpf_fd, info_len
        attr[1] = info.as_mut_ptr() as u64;
        assert_eq!(
            bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr),
            0,
            "info of map {id}"
        );
        let value_size = u32::from_ne_bytes(info[12..16].try_into().unwrap());
        if info[24..29] == *b".bss\0" && value_size == 8 {
            return fd;
        }
    }
    panic!("the tracer (pid {pid}) holds no 8-byte .bss map");
}

/// Writes `now` into the programs' last-wakeup time, over and over, so that every record made
/// meanwhile falls within the wake gap and is committed without a wakeup.
fn hold_wakeups(bss: OwnedFd, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    use std::os::fd::AsRawFd;
    thread::spawn(move || {
        let key = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid timespec; bpf_ktime_get_ns() is CLOCK_MONOTONIC.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            let mut attr = [0u64; 16];
            attr[0] = bss.as_raw_fd() as u64; // map_fd
            attr[1] = &key as *const u32 as u64;
            attr[2] = &now as *const u64 as u64;
            assert_eq!(bpf(BPF_MAP_UPDATE_ELEM, &mut attr), 0, "update .bss");
            thread::sleep(Duration::from_micros(200));
        }
    })
}

#[test]
fn a_record_committed_without_a_wakeup_is_still_read() {
    // No IPv6: duplicate address detection's solicitations would wake the reader.
    let ns = lone_ipv4_only("wk");
    let t = Tracer::start(&["--json", "--netns", ns.name()]);
    let stop = Arc::new(AtomicBool::new(false));
    let holder = hold_wakeups(tracer_bss(t.pid()), stop.clone());
    // Past the reader's polling after any earlier wakeup.
    thread::sleep(Duration::from_millis(100));
    // Nobody answers: a request, two retransmits 1 s apart and the failure, all made while
    // the wakeups are held. Each is read within the reader's one-second tick (and a bit).
    ns.send_udp(None, udp("198.51.100.99"));
    let first = t.wait_for(is_request, Duration::from_secs(3));
    assert_eq!(first[0]["target_ip"], "198.51.100.99");
    let failed = t.wait_for(
        |v| v["type"] == "neigh_failed" && v["target_ip"] == "198.51.100.99",
        Duration::from_secs(6),
    );
    assert_eq!(failed.len(), 1);
    stop.store(true, Ordering::Relaxed);
    holder.join().unwrap();
    let requests = t.matching(|v| is_request(v) && v["target_ip"] == "198.51.100.99");
    assert_eq!(requests.len(), 3, "{:?}", t.lines());
    let (status, _, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
}
