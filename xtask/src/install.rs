//! `cargo xtask install`: the binary, its man page and its shell completions, each where
//! `man` and the shells look under a prefix (FHS and the shells' own conventions), with
//! DESTDIR for staging. The man page and completions come from the binary itself
//! (`arp-trace --generate ...`), so they describe exactly the options it has; `cargo xtask
//! deb` ships the same.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::provision::output;

/// Options of `cargo xtask install`.
#[derive(clap::Args, Debug, Clone)]
pub struct Opts {
    /// Install under this prefix: PREFIX/bin, PREFIX/share/man, ... (/usr/local is on man's
    /// and the shells' search paths).
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Stage the files under DIR as if it were / (for packaging): DIR/PREFIX/bin/arp-trace.
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Install this arp-trace binary instead of building the release one.
    #[arg(long)]
    pub bin: Option<PathBuf>,
}

/// One installed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Binary,
    Man,
    Bash,
    Zsh,
    Fish,
}

impl Part {
    pub const ALL: [Part; 5] = [Part::Binary, Part::Man, Part::Bash, Part::Zsh, Part::Fish];

    /// `arp-trace --generate` argument that prints this part.
    pub fn generate(self) -> Option<&'static str> {
        match self {
            Part::Binary => None,
            Part::Man => Some("man"),
            Part::Bash => Some("complete-bash"),
            Part::Zsh => Some("complete-zsh"),
            Part::Fish => Some("complete-fish"),
        }
    }

    /// Where under a prefix it goes. zsh's `site-functions` is the prefix's own directory
    /// (Debian's packages use `vendor-completions` under /usr instead: see deb.rs).
    pub fn path(self) -> &'static str {
        match self {
            Part::Binary => "bin/arp-trace",
            Part::Man => "share/man/man1/arp-trace.1",
            Part::Bash => "share/bash-completion/completions/arp-trace",
            Part::Zsh => "share/zsh/site-functions/_arp-trace",
            Part::Fish => "share/fish/vendor_completions.d/arp-trace.fish",
        }
    }

    fn mode(self) -> u32 {
        match self {
            Part::Binary => 0o755,
            _ => 0o644,
        }
    }
}

/// Every file and where it lands: DESTDIR/PREFIX/path.
pub fn layout(prefix: &Path, destdir: Option<&Path>) -> Result<Vec<(Part, PathBuf)>> {
    if !prefix.is_absolute() {
        bail!(
            "--prefix {}: give an absolute directory, e.g. --prefix /usr/local",
            prefix.display()
        );
    }
    let root = match destdir {
        Some(d) => d.join(prefix.strip_prefix("/").unwrap_or(prefix)),
        None => prefix.to_path_buf(),
    };
    Ok(Part::ALL
        .iter()
        .map(|p| (*p, root.join(p.path())))
        .collect())
}

/// What `bin --generate WHAT` prints.
pub fn generated(bin: &Path, what: &str) -> Result<String> {
    output(Command::new(bin).args(["--generate", what])).with_context(|| {
        format!(
            "{} cannot print `--generate {what}`: is it an arp-trace from this tree?",
            bin.display()
        )
    })
}

/// Writes `part` of `bin` to `dst` with its mode.
pub fn put(bin: &Path, part: Part, dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    match part.generate() {
        None => {
            // A running binary cannot be overwritten in place (ETXTBSY): replace it.
            let _ = std::fs::remove_file(dst);
            std::fs::copy(bin, dst)
                .with_context(|| format!("cannot copy {} to {}", bin.display(), dst.display()))?;
        }
        Some(what) => std::fs::write(dst, generated(bin, what)?)
            .with_context(|| format!("cannot write {}", dst.display()))?,
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(part.mode()))
        .with_context(|| format!("cannot set the mode of {}", dst.display()))
}

/// Installs `bin` and what it generates; returns the files written.
pub fn install(bin: &Path, opts: &Opts) -> Result<Vec<PathBuf>> {
    let files = layout(&opts.prefix, opts.destdir.as_deref())?;
    for (part, dst) in &files {
        put(bin, *part, dst)?;
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_where_man_and_the_shells_look_under_the_prefix() {
        let l = layout(Path::new("/usr/local"), None).unwrap();
        let paths: Vec<&str> = l.iter().map(|(_, p)| p.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/usr/local/bin/arp-trace",
                "/usr/local/share/man/man1/arp-trace.1",
                "/usr/local/share/bash-completion/completions/arp-trace",
                "/usr/local/share/zsh/site-functions/_arp-trace",
                "/usr/local/share/fish/vendor_completions.d/arp-trace.fish",
            ]
        );
        let l = layout(Path::new("/opt/at"), Some(Path::new("/tmp/stage"))).unwrap();
        assert_eq!(l[0].1, Path::new("/tmp/stage/opt/at/bin/arp-trace"));
        assert_eq!(
            l[1].1,
            Path::new("/tmp/stage/opt/at/share/man/man1/arp-trace.1")
        );
        let e = layout(Path::new("usr"), None).unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
    }
}
