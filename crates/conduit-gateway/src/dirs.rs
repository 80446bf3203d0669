//! Directories a client names (its working directory, `--add-dir`): checked against the cwd roots
//! without touching the filesystem first, then opened **once**, and that opened directory is what
//! the CLI gets.
//!
//! 1. Lexical check: the path must be absolute; `.` and `..` are resolved on the string; the
//!    result must lie under a root (as configured, or its canonical form). A path outside every
//!    root is refused before any system call, so the answer says nothing about what exists on
//!    the host.
//! 2. Linux: the root is opened (`O_PATH`), and the rest of the path is opened from it with
//!    `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: no component may be a symbolic link
//!    and nothing may leave the root, whatever another process renames meanwhile. The gateway
//!    keeps that `O_PATH` descriptor and spawns the CLI with `current_dir("/proc/self/fd/N")`:
//!    the child changes into the directory the descriptor holds (not into whatever the name
//!    means by then) before it executes the CLI. `--add-dir` gets the directory's path as the
//!    kernel reports it for the descriptor (`/proc/self/fd/N` would not survive the CLI's
//!    exec, the descriptor being close-on-exec so that no other session inherits it).
//! 3. Elsewhere (macOS has no `openat2`), and on Linux kernels older than 5.6: the canonical
//!    path (symlinks resolved) is checked against the canonical roots and passed by name; a
//!    directory swapped for a symlink between the check and the spawn is not caught there.

use std::path::{Component, Path, PathBuf};

use crate::GatewayError;

fn refuse(message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidOptions(message.into())
}

/// A directory opened under a root, kept open until the CLI has started.
#[derive(Debug)]
pub(crate) struct PinnedDir {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
    real: PathBuf,
}

impl PinnedDir {
    /// The directory's path as the kernel reports it for the open descriptor (or canonical).
    pub(crate) fn real_path(&self) -> &Path {
        &self.real
    }

    /// What to give `Command::current_dir`: `/proc/self/fd/N` on Linux (the descriptor, not
    /// the name), the canonical path elsewhere.
    pub(crate) fn spawn_path(&self) -> PathBuf {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            use std::os::fd::AsRawFd;
            return PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        }
        self.real.clone()
    }
}

/// `path` with `.` and `..` resolved on the string (`None` unless absolute).
pub(crate) fn normalize(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Check `dir` (what the client sent for `what`: `cwd` or `--add-dir`) against `roots` and open
/// it. Errors name only what the client sent and the rule, never anything about the host.
pub(crate) fn open_under(
    roots: &[PathBuf],
    what: &str,
    dir: &str,
) -> Result<PinnedDir, GatewayError> {
    if roots.is_empty() {
        return Err(refuse(format!(
            "`{what}` cannot be set on this gateway (no cwd roots configured)"
        )));
    }
    let norm = normalize(Path::new(dir))
        .ok_or_else(|| refuse(format!("`{what}` must be an absolute path, not `{dir}`")))?;
    let outside = || {
        refuse(format!(
            "`{what}` {dir} is outside the directories this gateway allows"
        ))
    };
    // Lexically under a root as configured, or under its canonical form (roots are the
    // operator's paths: resolving them reveals nothing to the client).
    let (root, rest) = roots
        .iter()
        .filter_map(|r| normalize(r))
        .find_map(|r| {
            let rest = norm.strip_prefix(&r).ok()?.to_path_buf();
            Some((r, rest))
        })
        .or_else(|| {
            roots.iter().find_map(|r| {
                let c = std::fs::canonicalize(r).ok()?;
                let rest = norm.strip_prefix(&c).ok()?.to_path_buf();
                Some((c, rest))
            })
        })
        .ok_or_else(outside)?;
    open_beneath(&root, &rest, what, dir)
}

#[cfg(target_os = "linux")]
fn open_beneath(
    root: &Path,
    rest: &Path,
    what: &str,
    dir: &str,
) -> Result<PinnedDir, GatewayError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    use std::os::fd::AsRawFd;

    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root_fd = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| {
        tracing::warn!(root = %root.display(), error = %e, "a cwd root cannot be opened");
        refuse(format!("`{what}` {dir} cannot be used on this gateway"))
    })?;
    let rel: &Path = if rest.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rest
    };
    let opened = rustix::fs::openat2(
        &root_fd,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    );
    let fd = match opened {
        Ok(fd) => fd,
        // No openat2 (Linux < 5.6, some seccomp filters): the canonical-path check.
        Err(Errno::NOSYS) => return canonical_under(root, rest, what, dir),
        Err(Errno::NOENT | Errno::NOTDIR) => {
            return Err(refuse(format!(
                "`{what}` {dir} does not exist or is not a directory"
            )));
        }
        Err(Errno::LOOP | Errno::XDEV) => {
            return Err(refuse(format!(
                "`{what}` {dir} goes through a symbolic link (not allowed on this gateway)"
            )));
        }
        Err(e) => {
            tracing::info!(error = %e, "a client directory cannot be opened");
            return Err(refuse(format!("`{what}` {dir} cannot be opened")));
        }
    };
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
        tracing::warn!(error = %e, "reading /proc/self/fd failed");
        refuse(format!("`{what}` {dir} cannot be opened"))
    })?;
    Ok(PinnedDir { fd: Some(fd), real })
}

#[cfg(not(target_os = "linux"))]
fn open_beneath(
    root: &Path,
    rest: &Path,
    what: &str,
    dir: &str,
) -> Result<PinnedDir, GatewayError> {
    canonical_under(root, rest, what, dir)
}

/// The fallback: canonical path under the canonical root, passed by name.
fn canonical_under(
    root: &Path,
    rest: &Path,
    what: &str,
    dir: &str,
) -> Result<PinnedDir, GatewayError> {
    let missing = || {
        refuse(format!(
            "`{what}` {dir} does not exist or is not a directory"
        ))
    };
    let root = std::fs::canonicalize(root).map_err(|_| missing())?;
    let real = std::fs::canonicalize(root.join(rest)).map_err(|_| missing())?;
    if !real.starts_with(&root) {
        return Err(refuse(format!(
            "`{what}` {dir} is outside the directories this gateway allows"
        )));
    }
    if !real.is_dir() {
        return Err(missing());
    }
    Ok(PinnedDir {
        #[cfg(target_os = "linux")]
        fd: None,
        real,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("relative")), None);
        assert_eq!(
            normalize(Path::new("/a/./b/../c")),
            Some(PathBuf::from("/a/c"))
        );
        assert_eq!(normalize(Path::new("/../..")), Some(PathBuf::from("/")));
    }

    #[test]
    fn outside_paths_are_refused_without_touching_the_filesystem() {
        let root = tempfile::tempdir().unwrap();
        let roots = vec![root.path().to_path_buf()];
        // Existing and missing host paths get the same answer.
        let a = open_under(&roots, "cwd", "/root/.ssh")
            .unwrap_err()
            .to_string();
        let b = open_under(&roots, "cwd", "/nonexistent-x/y")
            .unwrap_err()
            .to_string();
        assert_eq!(
            a.replace("/root/.ssh", "P"),
            b.replace("/nonexistent-x/y", "P")
        );
        assert!(a.contains("outside"), "{a}");
        let escape = format!("{}/../../etc", root.path().display());
        assert!(
            open_under(&roots, "cwd", &escape)
                .unwrap_err()
                .to_string()
                .contains("outside")
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn opens_under_the_root_and_refuses_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("p");
        std::fs::create_dir(&inside).unwrap();
        let roots = vec![root.path().to_path_buf()];
        let d = open_under(&roots, "cwd", inside.to_str().unwrap()).unwrap();
        assert_eq!(d.real_path(), std::fs::canonicalize(&inside).unwrap());
        assert!(d.spawn_path().is_dir());
        let link = root.path().join("l");
        std::os::unix::fs::symlink(&inside, &link).unwrap();
        let m = open_under(&roots, "cwd", link.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(m.contains("symbolic link") || m.contains("outside"), "{m}");
    }
}
