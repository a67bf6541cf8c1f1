#!/usr/bin/env python3
# Attaches a do-nothing raw_tracepoint program (r0 = 0; exit) to each tracepoint named on the
# command line, writes /tmp/noop_ready, and holds them until SIGINT or SIGTERM: the cost of
# having any BPF program on those tracepoints, as a baseline for BENCHMARKS.md's TCP figure.
# Usage (root): python3 noop-tracepoints.py net_dev_queue consume_skb kfree_skb
import ctypes, os, sys, signal, struct
libc = ctypes.CDLL(None, use_errno=True)
NR_BPF = 321
insns = bytes.fromhex("b700000000000000" "9500000000000000")
ibuf = ctypes.create_string_buffer(insns, len(insns))
lic = ctypes.create_string_buffer(b"GPL")
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(NR_BPF, cmd, buf, 128)
    if r < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r
# BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version
attr = struct.pack("IIQQIIQI", 17, 2, ctypes.addressof(ibuf), ctypes.addressof(lic), 0, 0, 0, 0)
fds = []
for tp in sys.argv[1:]:
    pfd = bpf(5, attr)
    name = ctypes.create_string_buffer(tp.encode())
    fds.append((name, bpf(17, struct.pack("QI", ctypes.addressof(name), pfd))))
open("/tmp/noop_ready", "w").close()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
signal.sigwait([signal.SIGINT, signal.SIGTERM])
