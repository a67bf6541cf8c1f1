//! Creating the files arp-trace writes (`-w`, `--pcap`, `--ready-file`) safely as root on a
//! host others share: a link planted at the name is refused, not followed; a new file is
//! 0600 (a trace names processes and addresses) and belongs to the user behind sudo; an
//! existing file is overwritten only if it is a regular file that user owns; and no output is
//! the same file (device and inode, whatever the spelling) as an input or another output.
//! Rotated `-w` files are created the same way, later in the run, through a clone of the run's
//! [`Files`].

use std::cell::RefCell;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Context, Result};

/// Mode of every file arp-trace creates.
const MODE: u32 = 0o600;

/// The user on whose behalf arp-trace runs: the one behind sudo (`SUDO_UID`, `SUDO_GID`) when
/// running as root, else the real user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invoker {
    pub uid: u32,
    /// The group new files get, when sudo says which.
    pub gid: Option<u32>,
}

impl Invoker {
    pub fn current() -> Invoker {
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
        // SAFETY: geteuid/getuid cannot fail.
        let (euid, uid) = unsafe { (libc::geteuid(), libc::getuid()) };
        Invoker::from(euid, uid, num("SUDO_UID"), num("SUDO_GID"))
    }

    fn from(euid: u32, uid: u32, sudo_uid: Option<u32>, sudo_gid: Option<u32>) -> Invoker {
        match sudo_uid {
            Some(s) if euid == 0 => Invoker {
                uid: s,
                gid: sudo_gid,
            },
            _ => Invoker { uid, gid: None },
        }
    }
}

/// A file by device and inode: what makes two names the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    /// The file an open descriptor refers to.
    pub fn of_file(f: &File) -> io::Result<FileId> {
        f.metadata().map(|m| FileId::of(&m))
    }
}

/// Removes `path` if the name still is the file `id` (an old rotated trace of this run), never
/// whatever replaced it since; true when it was removed.
pub fn remove_if_same(path: &Path, id: FileId) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if FileId::of(&m) == id => std::fs::remove_file(path).map(|_| true),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `/dev/null` takes any output and loses nothing of anyone's: the one existing file that is
/// neither regular nor the user's that an output may be.
fn is_null_device(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3)
}

fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a FIFO"
    } else {
        "a regular file"
    }
}

/// The files of one run: inputs and outputs, so no output can be one of them. Clones share
/// the list, so a file rotated in later is checked against everything in use by then.
#[derive(Clone)]
pub struct Files {
    invoker: Invoker,
    /// Each file in use, with how the command line named it (`-r t.jsonl`).
    taken: Rc<RefCell<Vec<(FileId, String)>>>,
}

impl Default for Files {
    fn default() -> Self {
        Files::new(Invoker::current())
    }
}

impl Files {
    pub fn new(invoker: Invoker) -> Files {
        Files {
            invoker,
            taken: Rc::default(),
        }
    }

    /// Notes an input (`-r FILE`; `-` is standard input, when that is a file).
    pub fn input(&mut self, option: &str, path: &Path) {
        let m = if path.as_os_str() == "-" {
            use std::os::fd::FromRawFd;
            // SAFETY: fd 0 stays open; ManuallyDrop keeps this File from closing it.
            let stdin = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
            stdin.metadata()
        } else {
            std::fs::metadata(path)
        };
        if let Ok(m) = m {
            if m.file_type().is_file() {
                self.note(FileId::of(&m), option, path);
            }
        }
    }

    fn note(&mut self, id: FileId, option: &str, path: &Path) {
        self.taken
            .borrow_mut()
            .push((id, format!("{option} {}", path.display())));
    }

    /// Forgets an output the run has closed (a rotated-out trace), so a later file may reuse
    /// its name as tcpdump's `-W` ring does.
    pub fn forget(&mut self, id: FileId) {
        self.taken.borrow_mut().retain(|(t, _)| *t != id);
    }

    fn refuse_taken(&self, id: FileId, option: &str, path: &Path) -> Result<()> {
        if let Some((_, other)) = self.taken.borrow().iter().find(|(t, _)| *t == id) {
            bail!(
                "{option} {}: the same file as {other}; write to another file",
                path.display()
            );
        }
        Ok(())
    }

    /// Whether an existing file may be replaced by an output: the invoking user's own regular
    /// file (or FIFO, which is written, not replaced), and no other name of anything in use.
    fn check_existing(&self, m: &Metadata, option: &str, path: &Path, links: bool) -> Result<()> {
        let p = path.display();
        if m.file_type().is_symlink() {
            bail!(
                "{option} {p}: is a symbolic link; arp-trace does not write through links \
                 (give the file's own path, or remove the link)"
            );
        }
        self.refuse_taken(FileId::of(m), option, path)?;
        if !m.file_type().is_file() && !m.file_type().is_fifo() {
            bail!(
                "{option} {p}: exists and is {}, not a regular file; give a new file name",
                kind(m)
            );
        }
        if m.uid() != self.invoker.uid {
            bail!(
                "{option} {p}: exists and belongs to uid {}, not to you (uid {}); arp-trace \
                 overwrites only your own files: remove it or give a new file name",
                m.uid(),
                self.invoker.uid
            );
        }
        if links && m.file_type().is_file() && m.nlink() > 1 {
            bail!(
                "{option} {p}: has {} names (hard links) and overwriting it would change the \
                 others too; remove it or give a new file name",
                m.nlink()
            );
        }
        Ok(())
    }

    /// A new file, 0600, the invoking user's; `None` if the name exists.
    fn create_new(&self, path: &Path) -> io::Result<Option<File>> {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => {
                self.give_to_invoker(&f)?;
                Ok(Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Created as root through sudo, the file is the user's, so they can read their trace and
    /// a later run may overwrite it.
    fn give_to_invoker(&self, f: &File) -> io::Result<()> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 || self.invoker.uid == 0 {
            return Ok(());
        }
        // Without SUDO_GID, -1: the group stays.
        let gid = self.invoker.gid.unwrap_or(u32::MAX);
        // SAFETY: fchown on a descriptor we own.
        if unsafe { libc::fchown(f.as_raw_fd(), self.invoker.uid, gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Opens an output for `option` (`-w`, `--pcap`): created new, or an existing file of the
    /// invoking user's emptied; never through a link, never a file already in use.
    pub fn create(&mut self, option: &str, path: &Path) -> Result<File> {
        let p = path.display();
        let cannot = || format!("{option} {p}: cannot create");
        // Twice at most: the name can appear between looking and creating.
        for _ in 0..2 {
            let m = match std::fs::symlink_metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match self.create_new(path).with_context(cannot)? {
                        Some(f) => {
                            let m = f.metadata().with_context(cannot)?;
                            self.note(FileId::of(&m), option, path);
                            return Ok(f);
                        }
                        None => continue,
                    }
                }
                Err(e) => return Err(e).with_context(cannot),
            };
            if is_null_device(&m) {
                return OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(cannot);
            }
            self.check_existing(&m, option, path, true)?;
            let regular = m.file_type().is_file();
            // O_NONBLOCK: whatever replaced the file since it was looked at, opening it must
            // not hang; a FIFO waits for its reader as it always did.
            let nonblock = if regular { libc::O_NONBLOCK } else { 0 };
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | nonblock)
                .open(path)
                .with_context(cannot)?;
            let now = f.metadata().with_context(cannot)?;
            if FileId::of(&now) != FileId::of(&m) {
                bail!("{option} {p}: was replaced while being opened; try again");
            }
            if regular {
                f.set_len(0).with_context(cannot)?;
                // SAFETY: fcntl/fchmod on a descriptor we own.
                unsafe {
                    let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
                    libc::fchmod(f.as_raw_fd(), MODE);
                }
            }
            self.note(FileId::of(&now), option, path);
            return Ok(f);
        }
        bail!("{option} {p}: the name keeps appearing and vanishing; try again")
    }

    /// Writes the ready file: whole (a watcher never sees it half-written), under a temporary
    /// name nobody can guess and plant a link at, renamed over `path`. The file is removed
    /// when the returned guard goes, on every way out of the run.
    pub fn ready_file(&mut self, path: &Path, contents: &str) -> Result<ReadyFile> {
        let p = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(m) => self.check_existing(&m, "--ready-file", path, false)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("--ready-file {p}: cannot create")),
        }
        let name = path
            .file_name()
            .with_context(|| format!("--ready-file {p}: not a file name"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let (tmp, mut f) = loop {
            let tmp = dir.join(format!(".{}.{:016x}", name.to_string_lossy(), random()?));
            if let Some(f) = self
                .create_new(&tmp)
                .with_context(|| format!("--ready-file {p}: cannot create {}", tmp.display()))?
            {
                break (tmp, f);
            }
        };
        let done = f
            .write_all(contents.as_bytes())
            .and_then(|_| f.metadata())
            .and_then(|m| std::fs::rename(&tmp, path).map(|_| FileId::of(&m)));
        match done {
            Ok(id) => {
                self.note(id, "--ready-file", path);
                Ok(ReadyFile {
                    path: path.to_path_buf(),
                    id,
                    _open: f,
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e).with_context(|| format!("--ready-file {p}: cannot create"))
            }
        }
    }
}

/// 64 random bits from the kernel.
fn random() -> Result<u64> {
    let mut b = [0u8; 8];
    // SAFETY: getrandom into an 8-byte buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(io::Error::last_os_error()).context("getrandom");
    }
    Ok(u64::from_ne_bytes(b))
}

/// The ready file while the run lasts: removed on drop if the name still holds the file
/// written (whatever replaced it since is not ours to remove).
pub struct ReadyFile {
    path: PathBuf,
    id: FileId,
    /// Held open so its inode number cannot pass to another file while `id` names it.
    _open: File,
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if FileId::of(&m) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir()
                .join(format!("arp-trace-outfile-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn me() -> Invoker {
        // SAFETY: getuid cannot fail.
        Invoker::from(0, unsafe { libc::getuid() }, None, None)
    }

    #[test]
    fn the_invoker_is_the_user_behind_sudo_only_for_root() {
        assert_eq!(
            Invoker::from(0, 0, Some(1000), Some(100)),
            Invoker {
                uid: 1000,
                gid: Some(100)
            }
        );
        assert_eq!(Invoker::from(0, 0, None, None).uid, 0);
        // A user's own SUDO_UID (set by hand, or left over) changes nothing.
        assert_eq!(Invoker::from(1000, 1000, Some(0), None).uid, 1000);
    }

    #[test]
    fn new_outputs_are_0600_and_links_are_refused() {
        let d = Dir::new("new");
        let mut files = Files::new(me());
        let out = d.0.join("t.jsonl");
        files.create("-w", &out).unwrap();
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let victim = d.0.join("victim");
        std::fs::write(&victim, "secret").unwrap();
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = format!("{:#}", files.create("--pcap", &link).unwrap_err());
        assert!(e.contains("is a symbolic link"), "{e}");
        // A dangling link is a link too: nothing is created at its target.
        let dangling = d.0.join("dangling");
        std::os::unix::fs::symlink(d.0.join("nowhere"), &dangling).unwrap();
        assert!(files.create("-w", &dangling).is_err());
        assert!(!d.0.join("nowhere").exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
    }

    #[test]
    fn own_files_are_emptied_others_and_odd_ones_refused() {
        let d = Dir::new("existing");
        let f = d.0.join("old.jsonl");
        std::fs::write(&f, "old contents").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        Files::new(me()).create("-w", &f).unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.len(), m.permissions().mode() & 0o777), (0, 0o600));

        let stranger = Invoker {
            uid: me().uid + 1,
            gid: None,
        };
        std::fs::write(&f, "kept").unwrap();
        let e = format!("{:#}", Files::new(stranger).create("-w", &f).unwrap_err());
        assert!(e.contains("belongs to uid"), "{e}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "kept");

        let e = format!("{:#}", Files::new(me()).create("-w", &d.0).unwrap_err());
        assert!(e.contains("is a directory, not a regular file"), "{e}");
        Files::new(stranger)
            .create("--pcap", Path::new("/dev/null"))
            .unwrap();
    }

    #[test]
    fn the_same_file_is_refused_by_inode_not_by_name() {
        let d = Dir::new("same");
        let input = d.0.join("in.jsonl");
        std::fs::write(&input, "trace").unwrap();
        let spelled = d.0.join(".").join("in.jsonl");
        let mut files = Files::new(me());
        files.input("-r", &input);
        let e = format!("{:#}", files.create("-w", &spelled).unwrap_err());
        assert!(e.contains("the same file as -r"), "{e}");
        let hard = d.0.join("hard.jsonl");
        std::fs::hard_link(&input, &hard).unwrap();
        let e = format!("{:#}", files.create("--pcap", &hard).unwrap_err());
        assert!(e.contains("the same file as -r"), "{e}");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "trace");
        // Two outputs under one name: the second finds the first.
        let out = d.0.join("out");
        files.create("-w", &out).unwrap();
        let e = format!(
            "{:#}",
            files.create("--pcap", &d.0.join("./out")).unwrap_err()
        );
        assert!(e.contains("the same file as -w"), "{e}");
        // A file with other names is not emptied through one of them.
        let mut other = Files::new(me());
        let e = format!("{:#}", other.create("-w", &hard).unwrap_err());
        assert!(e.contains("hard links"), "{e}");
    }

    #[test]
    fn the_ready_file_is_whole_unguessable_and_removed() {
        let d = Dir::new("ready");
        let p = d.0.join("r.ready");
        let mut files = Files::new(me());
        let guard = files.ready_file(&p, "pid=1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "pid=1\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Only the ready file is left: the temporary name was renamed, and held no pid.
        let names: Vec<_> = std::fs::read_dir(&d.0).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        drop(guard);
        assert!(!p.exists());
        // A name that is not the guard's file any more is left alone.
        let guard = files.ready_file(&p, "x").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "someone else's").unwrap();
        drop(guard);
        assert!(p.exists());
        assert!(files
            .ready_file(Path::new("/nonexistent/dir/ready"), "x")
            .is_err());
        assert_ne!(random().unwrap(), random().unwrap());
    }
}
