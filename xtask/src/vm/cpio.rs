//! The guest's initramfs: an in-memory cpio "newc" archive, and what goes in it for one run
//! (busybox, the payload, the kernel's modules, `/init` and its environment).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::kernels::{module_load_order, module_name, read_module, Kernel};
use super::payload::{ldd, Payload};

/// Modules the guest loads (the tests build veth pairs, VRFs and bridges).
const MODULES: &[&str] = &["veth", "vrf", "bridge"];

/// The harness multiplies its waits by ARP_TRACE_TIMEOUT_SCALE; software emulation runs the
/// tests about 3-5 times slower than the host, and the host may be busy too. The host's own
/// ARP_TRACE_TIMEOUT_SCALE, if set, wins.
const GUEST_TIMEOUT_SCALE: &str = "5";

enum Node {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// An in-memory newc archive. Parents are added automatically; entries are written sorted,
/// so every directory precedes its contents as the kernel's unpacker requires.
#[derive(Default)]
pub struct Cpio {
    nodes: BTreeMap<String, Node>,
}

impl Cpio {
    fn add(&mut self, path: &str, node: Node) {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.nodes
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Node::Dir);
            parent = p.parent();
        }
        self.nodes.insert(path, node);
    }

    pub fn dir(&mut self, path: &str) {
        self.add(path, Node::Dir);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add(path, Node::File { data, mode });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(path, Node::Symlink(target.into()));
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path.trim_start_matches('/'))
    }

    /// A host file at `guest` (symlinks followed), mode kept.
    fn host_file(&mut self, host: &Path, guest: &str) -> Result<()> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = std::fs::metadata(host)?.permissions().mode() & 0o7777;
        self.file(guest, data, mode);
        Ok(())
    }

    /// A binary plus every library it links, each at its host path.
    fn binary_with_libs(&mut self, host: &Path, guest: &str) -> Result<()> {
        self.host_file(host, guest)?;
        for lib in ldd(host)? {
            let g = lib.to_string_lossy().into_owned();
            if !self.contains(&g) {
                self.host_file(&lib, &g)?;
            }
        }
        Ok(())
    }

    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut ino = 1u32;
        let mut entry = |w: &mut dyn Write, name: &str, mode: u32, data: &[u8]| {
            let namesize = name.len() + 1;
            let header = format!(
                "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
                0, 0, if mode & 0o170000 == 0o040000 { 2 } else { 1 }, 0,
                data.len(), 0, 0, 0, 0, 0
            );
            ino += 1;
            w.write_all(header.as_bytes())?;
            w.write_all(name.as_bytes())?;
            w.write_all(&[0])?;
            w.write_all(&[0; 3][..pad4(110 + namesize)])?;
            w.write_all(data)?;
            w.write_all(&[0; 3][..pad4(data.len())])
        };
        for (name, node) in &self.nodes {
            match node {
                Node::Dir => entry(w, name, 0o040755, &[])?,
                Node::File { data, mode } => entry(w, name, 0o100000 | mode, data)?,
                Node::Symlink(t) => entry(w, name, 0o120777, t.as_bytes())?,
            }
        }
        entry(w, "TRAILER!!!", 0, &[])
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// `arg` quoted for a POSIX shell.
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

const INIT: &str = r#"#!/bin/sh
# Guest init: mount what the tracer and the tests need, run each test binary, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
. /etc/arp-trace-vm.env
for m in $VM_MODULES; do
    insmod "/lib/modules/$m" || echo "@@ARP-TRACE-VM@@ ERROR insmod $m"
done
ip link set lo up
echo "@@ARP-TRACE-VM@@ BOOTED $(uname -r) $(cut -d' ' -f1 /proc/uptime)"
eval "set -- $VM_TEST_ARGS"
# A second boot after the guest kernel died resumes at the binary that was running.
from=$(sed -n 's/.*arp_trace_vm_from=\([^ ]*\).*/\1/p' /proc/cmdline)
for t in $VM_TESTS; do
    if [ -n "$from" ]; then
        [ "$t" = "$from" ] || continue
        from=
    fi
    echo "@@ARP-TRACE-VM@@ BEGIN $t"
    "/tests/$t" "$@"
    rc=$?
    echo
    echo "@@ARP-TRACE-VM@@ END $t $rc"
done
echo "@@ARP-TRACE-VM@@ DONE"
poweroff -f
"#;

/// The initramfs for one guest run.
pub(super) fn initramfs(
    p: &Payload,
    k: &Kernel,
    hooks: Option<&str>,
    tests: &[String],
    args: &[String],
) -> Result<Cpio> {
    let mut c = Cpio::default();
    for d in [
        "proc", "sys", "dev", "run", "tmp", "root", "etc", "sbin", "usr/sbin", "var",
    ] {
        c.dir(d);
    }
    c.host_file(Path::new("/bin/busybox"), "/bin/busybox")?;
    let mut tool_names = BTreeSet::new();
    for t in &p.tools {
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        c.binary_with_libs(t, &format!("/usr/bin/{name}"))?;
        tool_names.insert(name);
    }
    let applets = Command::new("/bin/busybox").arg("--list").output()?;
    for a in String::from_utf8_lossy(&applets.stdout).lines() {
        // The real tools win: busybox `ip` cannot create veth pairs.
        if !a.is_empty() && a != "busybox" && !tool_names.contains(a) {
            c.symlink(&format!("/bin/{a}"), "busybox");
        }
    }
    c.file("/usr/bin/arp-trace", p.tracer.clone(), 0o755);
    for lib in &p.libs {
        let g = lib.to_string_lossy().into_owned();
        if !c.contains(&g) {
            c.host_file(lib, &g)?;
        }
    }
    for (name, data) in &p.tests {
        c.file(&format!("/tests/{name}"), data.clone(), 0o755);
    }
    let dep = std::fs::read_to_string(k.modules_dir().join("modules.dep"))
        .with_context(|| format!("reading modules.dep of {}", k.release))?;
    let mut modules = Vec::new();
    for m in MODULES {
        for rel in module_load_order(&dep, m)? {
            let name = format!("{}.ko", module_name(&rel));
            if !modules.contains(&name) {
                c.file(
                    &format!("/lib/modules/{name}"),
                    read_module(&k.modules_dir().join(&rel))?,
                    0o644,
                );
                modules.push(name);
            }
        }
    }
    c.file("/init", INIT.as_bytes().to_vec(), 0o755);
    let mut env = String::new();
    writeln!(env, "VM_MODULES={}", shell_quote(&modules.join(" "))).unwrap();
    writeln!(env, "VM_TESTS={}", shell_quote(&tests.join(" "))).unwrap();
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    writeln!(env, "VM_TEST_ARGS={}", shell_quote(&quoted.join(" "))).unwrap();
    writeln!(env, "export ARP_TRACE_BIN=/usr/bin/arp-trace").unwrap();
    let scale = std::env::var("ARP_TRACE_TIMEOUT_SCALE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| GUEST_TIMEOUT_SCALE.to_string());
    writeln!(
        env,
        "export ARP_TRACE_TIMEOUT_SCALE={}",
        shell_quote(&scale)
    )
    .unwrap();
    if let Some(h) = hooks {
        writeln!(env, "export ARP_TRACE_HOOKS={}", shell_quote(h)).unwrap();
    }
    c.file("/etc/arp-trace-vm.env", env.into_bytes(), 0o644);
    c.file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
            .to_vec(),
        0o644,
    );
    c.file(
        "/etc/group",
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        0o644,
    );
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn cpio_is_valid_newc() {
        let mut c = Cpio::default();
        c.file("/usr/bin/x", b"hello".to_vec(), 0o755);
        c.symlink("/bin/sh", "busybox");
        let mut out = Vec::new();
        c.write_to(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        // Parents first, then children; the system cpio agrees it is a valid archive.
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("cpio")
            .args(["-i", "-d", "--quiet"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(dir.join("usr/bin/x")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read_link(dir.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quoting_survives_the_shell() {
        let args = ["a b", "it's", "--exact"];
        let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let script = format!(
            "V={}; eval \"set -- $V\"; printf '%s\\n' \"$@\"",
            shell_quote(&quoted.join(" "))
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\nit's\n--exact\n");
    }
}
