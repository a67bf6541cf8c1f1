//! Scratch files for the tests: a private directory, a small tmpfs to fill (a full disk that
//! is only ever the test's own), and hand-made traces.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A private directory for one test's files, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let d =
            std::env::temp_dir().join(format!("arp-trace-scratch-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(d)
    }
    /// The path of `name` in it.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted and removed on drop (also when
/// the test fails), so a full disk is only ever this one.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn new(tag: &str, size: &str) -> Tmpfs {
        let d = std::env::temp_dir().join(format!("arp-trace-tmpfs-{}-{tag}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (src, dir, fs, opts) = (
            c("tmpfs"),
            c(d.to_str().unwrap()),
            c("tmpfs"),
            c(&format!("size={size},mode=0755")),
        );
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dir.as_ptr(),
                fs.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            d.display(),
            std::io::Error::last_os_error()
        );
        Tmpfs(d)
    }
    /// The path of `name` in it.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
    /// Takes every free byte left.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..1]).is_ok() {}
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: umount2(2) on the directory this guard mounted.
        unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

const HEADER: &str = r#"{"type":"header","format_version":2,"hooks":"x","netns_names":{"4026532281":"srv"},"snapshot":{}}"#;
const EVENT: &str = r#"{"type":"arp","op":"request","time":"2026-11-28T19:31:02.000000000Z","netns":4026532281,"netns_name":"srv","ifindex":2,"ifname":"eth3","sender_ip":"198.51.100.10","sender_mac":"02:00:00:00:00:01","target_ip":"198.51.100.20","target_mac":"00:00:00:00:00:00","unicast":false,"eth_dst":"ff:ff:ff:ff:ff:ff","frame":"00","trigger":null,"neigh_state":null,"attempt":null,"queued":null}"#;

/// A whole trace of `n` requests on srv/eth3, trailer included.
pub fn write_trace(path: &str, n: usize) {
    let mut s = String::with_capacity((n + 2) * (EVENT.len() + 1));
    s.push_str(HEADER);
    s.push('\n');
    for _ in 0..n {
        s.push_str(EVENT);
        s.push('\n');
    }
    s.push_str(&format!(
        r#"{{"type":"summary","final":true,"requests":{n},"events":{n}}}"#
    ));
    s.push('\n');
    std::fs::write(path, s).unwrap();
}
