//! The pinned `claude` CLI (install and locate it) and [`CliEnv`], a scratch environment for
//! running it against a [`FakeModel`](crate::fake_model::FakeModel).
//!
//! The CLI is installed with npm into
//! `${XDG_CACHE_HOME:-$HOME/.cache}/claude-conduit/cli/<PINNED_CLI_VERSION>`, the same layout as
//! `scripts/install-cli.sh`. Set `CONDUIT_CLAUDE_CLI=/path/to/claude` to use another binary
//! instead (no install, no version check).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The CLI version this project is tested against (keep in step with `scripts/install-cli.sh`).
pub const PINNED_CLI_VERSION: &str = "2.1.330";

/// The npm package of the CLI.
pub const CLI_NPM_PACKAGE: &str = "@anthropic-ai/claude-code";

/// Environment variable naming a `claude` binary to use instead of the pinned install.
pub const CLI_OVERRIDE_ENV: &str = "CONDUIT_CLAUDE_CLI";

/// How long `claude --version` may take before the binary is considered broken.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors while locating or installing the CLI, or preparing a [`CliEnv`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// `CONDUIT_CLAUDE_CLI` names a file that does not exist.
    #[error("{CLI_OVERRIDE_ENV} is set to {0}, which does not exist")]
    OverrideMissing(PathBuf),
    /// npm (or node) is not available.
    #[error(
        "cannot install the claude CLI: `npm` was not found or does not run ({0}); install Node.js and npm, or set {CLI_OVERRIDE_ENV}"
    )]
    NpmMissing(String),
    /// `npm install` failed.
    #[error("`npm install {package}` into {dir} failed ({status}): {output}")]
    InstallFailed {
        /// The package spec installed.
        package: String,
        /// The install directory.
        dir: PathBuf,
        /// The exit status of npm.
        status: String,
        /// The last lines of npm's output.
        output: String,
    },
    /// The binary is there but does not report the pinned version.
    #[error("{path} reports version {found:?}, expected {expected}")]
    VersionMismatch {
        /// The binary.
        path: PathBuf,
        /// What `--version` printed.
        found: String,
        /// The pinned version.
        expected: &'static str,
    },
    /// Some other I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/claude-conduit/cli/<PINNED_CLI_VERSION>`, resolved from the
/// **current** environment (resolve it before overriding `HOME` for a child). Falls back to the
/// system temporary directory when neither variable is set.
pub fn pinned_cli_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    cache
        .join("claude-conduit")
        .join("cli")
        .join(PINNED_CLI_VERSION)
}

/// Where the pinned binary lives inside [`pinned_cli_dir`].
fn bin_in(dir: &Path) -> PathBuf {
    dir.join("node_modules").join(".bin").join("claude")
}

/// The CLI to use, if it is already there: `CONDUIT_CLAUDE_CLI` when set (and the file exists),
/// else the pinned install when its binary exists. Does not install or run anything.
pub fn pinned_cli_path() -> Option<PathBuf> {
    if let Some(path) = override_path() {
        return path.exists().then_some(path);
    }
    let bin = bin_in(&pinned_cli_dir());
    bin.exists().then_some(bin)
}

fn override_path() -> Option<PathBuf> {
    std::env::var_os(CLI_OVERRIDE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Return the CLI to use, installing the pinned version with npm if needed.
///
/// * `CONDUIT_CLAUDE_CLI` set: that path, if it exists (no version check).
/// * Otherwise `<pinned_cli_dir>/node_modules/.bin/claude` when it reports
///   [`PINNED_CLI_VERSION`]; else `npm install --prefix <dir> --no-audit --no-fund
///   @anthropic-ai/claude-code@<version>` first (needs the npm registry).
///
/// Safe to call from many tests at once: a process-wide mutex plus a lock file
/// (`<cache>/claude-conduit/cli/<version>.lock`, shared with `scripts/install-cli.sh`) make
/// sure only one install runs. A verified path is remembered for the rest of the process.
/// This blocks; from async code you may wrap it in `tokio::task::spawn_blocking`.
pub fn ensure_pinned_cli() -> Result<PathBuf, CliError> {
    if let Some(path) = override_path() {
        return if path.exists() {
            Ok(path)
        } else {
            Err(CliError::OverrideMissing(path))
        };
    }
    static VERIFIED: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let dir = pinned_cli_dir();
    let verified = VERIFIED.get_or_init(|| Mutex::new(HashMap::new()));
    // Held for the whole check-and-install, so threads of this process queue up here.
    let mut verified = verified
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(bin) = verified.get(&dir)
        && bin.exists()
    {
        return Ok(bin.clone());
    }
    let bin = install_locked(&dir)?;
    verified.insert(dir, bin.clone());
    Ok(bin)
}

fn install_locked(dir: &Path) -> Result<PathBuf, CliError> {
    let bin = bin_in(dir);
    if has_pinned_version(&bin) {
        return Ok(bin);
    }
    let parent = dir.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    let lock_path = parent.join(format!("{PINNED_CLI_VERSION}.lock"));
    let lock_file: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(format!("opening {}", lock_path.display())))?;
    lock_file
        .lock()
        .map_err(io_err(format!("locking {}", lock_path.display())))?;
    // Another process may have finished the install while we waited for the lock.
    let result = if has_pinned_version(&bin) {
        Ok(bin.clone())
    } else {
        npm_install(dir).and_then(|()| check_version(&bin).map(|()| bin.clone()))
    };
    let _ = lock_file.unlock();
    result
}

fn has_pinned_version(bin: &Path) -> bool {
    bin.exists() && check_version(bin).is_ok()
}

/// Run `bin --version` and check it starts with the pinned version.
fn check_version(bin: &Path) -> Result<(), CliError> {
    let out = run_with_timeout(Command::new(bin).arg("--version"), VERSION_TIMEOUT)
        .map_err(io_err(format!("running {} --version", bin.display())))?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version_ok = found
        .split_whitespace()
        .next()
        .is_some_and(|v| v == PINNED_CLI_VERSION);
    if out.status.success() && version_ok {
        Ok(())
    } else {
        Err(CliError::VersionMismatch {
            path: bin.to_path_buf(),
            found,
            expected: PINNED_CLI_VERSION,
        })
    }
}

fn npm_install(dir: &Path) -> Result<(), CliError> {
    match run_with_timeout(Command::new("npm").arg("--version"), VERSION_TIMEOUT) {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(CliError::NpmMissing(format!(
                "`npm --version` exited with {}",
                out.status
            )));
        }
        Err(err) => return Err(CliError::NpmMissing(err.to_string())),
    }
    fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let package = format!("{CLI_NPM_PACKAGE}@{PINNED_CLI_VERSION}");
    tracing::info!(%package, dir = %dir.display(), "installing the pinned claude CLI with npm");
    let out = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(dir)
        .args(["--no-audit", "--no-fund"])
        .arg(&package)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("running npm install"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    Err(CliError::InstallFailed {
        package,
        dir: dir.to_path_buf(),
        status: out.status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// `Command::output` with a deadline (the child is killed when it passes).
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> std::io::Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("did not finish within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch environment for running the `claude` CLI against a fake API.
///
/// Owns a temporary `HOME` and a temporary working directory (both deleted on drop) and the
/// environment variables to give the CLI:
///
/// | variable | value |
/// |---|---|
/// | `HOME` | the scratch home |
/// | `XDG_CONFIG_HOME`, `XDG_CACHE_HOME`, `XDG_DATA_HOME`, `XDG_STATE_HOME` | `.config`, `.cache`, `.local/share`, `.local/state` under it |
/// | `ANTHROPIC_BASE_URL` | the fake's `http://127.0.0.1:PORT` |
/// | `ANTHROPIC_API_KEY` | `sk-test-fake` |
/// | `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` | `1` |
/// | `DISABLE_AUTOUPDATER` | `1` |
/// | `CLAUDE_CODE_MAX_RETRIES` | `0` (so injected API errors surface at once) |
///
/// Change any of them with [`set_var`](Self::set_var) / [`remove_var`](Self::remove_var).
/// Inherited `ANTHROPIC_*` and `CLAUDE*` variables of the test process should not leak into
/// the child: [`vars_to_remove`](Self::vars_to_remove) lists them, and
/// [`command`](Self::command) / [`tokio_command`](Self::tokio_command) remove them.
#[derive(Debug)]
pub struct CliEnv {
    home: tempfile::TempDir,
    cwd: tempfile::TempDir,
    cli_path: PathBuf,
    vars: BTreeMap<String, String>,
}

impl CliEnv {
    /// A fresh scratch environment for a fake at `base_url`, running `cli_path`.
    pub fn new(base_url: &str, cli_path: PathBuf) -> Result<CliEnv, CliError> {
        let home = tempfile::Builder::new()
            .prefix("conduit-home-")
            .tempdir()
            .map_err(io_err("creating the scratch HOME"))?;
        let cwd = tempfile::Builder::new()
            .prefix("conduit-cwd-")
            .tempdir()
            .map_err(io_err("creating the scratch working directory"))?;
        let h = home.path();
        let mut vars = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            vars.insert(k.to_string(), v);
        };
        set("HOME", h.display().to_string());
        set("XDG_CONFIG_HOME", h.join(".config").display().to_string());
        set("XDG_CACHE_HOME", h.join(".cache").display().to_string());
        set(
            "XDG_DATA_HOME",
            h.join(".local/share").display().to_string(),
        );
        set(
            "XDG_STATE_HOME",
            h.join(".local/state").display().to_string(),
        );
        set("ANTHROPIC_BASE_URL", base_url.to_string());
        set("ANTHROPIC_API_KEY", "sk-test-fake".to_string());
        set("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string());
        set("DISABLE_AUTOUPDATER", "1".to_string());
        set("CLAUDE_CODE_MAX_RETRIES", "0".to_string());
        Ok(CliEnv {
            home,
            cwd,
            cli_path,
            vars,
        })
    }

    /// The variables to set for the CLI, sorted by name.
    pub fn envs(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One variable's value.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// Set or override a variable (e.g. `CLAUDE_CODE_MAX_RETRIES`).
    pub fn set_var(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// Stop setting a variable.
    pub fn remove_var(&mut self, key: &str) -> &mut Self {
        self.vars.remove(key);
        self
    }

    /// Names of variables in the current process environment that start with `ANTHROPIC_` or
    /// `CLAUDE` and that this environment does not set: remove them from the child's environment
    /// so a developer's real credentials or settings cannot reach the test.
    pub fn vars_to_remove(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| {
                (k.starts_with("ANTHROPIC_") || k.starts_with("CLAUDE"))
                    && !self.vars.contains_key(k)
            })
            .collect()
    }

    /// The scratch working directory.
    pub fn cwd(&self) -> &Path {
        self.cwd.path()
    }

    /// The scratch `HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The CLI binary to run.
    pub fn cli_path(&self) -> PathBuf {
        self.cli_path.clone()
    }

    /// A `std::process::Command` for the CLI with this environment and working directory
    /// (inherited `ANTHROPIC_*` / `CLAUDE*` variables removed). Add the arguments yourself.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.cli_path);
        for key in self.vars_to_remove() {
            cmd.env_remove(key);
        }
        cmd.envs(
            self.vars
                .iter()
                .map(|(k, v)| (OsStr::new(k), OsStr::new(v))),
        )
        .current_dir(self.cwd());
        cmd
    }

    /// The same as [`command`](Self::command) for `tokio::process`, with `kill_on_drop(true)`.
    pub fn tokio_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(self.command());
        cmd.kill_on_drop(true);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_env_sets_the_documented_variables() -> Result<(), CliError> {
        let mut env = CliEnv::new("http://127.0.0.1:9", PathBuf::from("/bin/true"))?;
        assert_eq!(env.var("ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:9"));
        assert_eq!(env.var("CLAUDE_CODE_MAX_RETRIES"), Some("0"));
        assert_eq!(
            env.var("HOME").map(PathBuf::from).as_deref(),
            Some(env.home())
        );
        assert!(env.cwd().is_dir());
        env.set_var("CLAUDE_CODE_MAX_RETRIES", "2");
        assert_eq!(env.var("CLAUDE_CODE_MAX_RETRIES"), Some("2"));
        env.remove_var("DISABLE_AUTOUPDATER");
        assert!(env.envs().iter().all(|(k, _)| k != "DISABLE_AUTOUPDATER"));
        assert!(
            env.vars_to_remove()
                .iter()
                .all(|k| k != "ANTHROPIC_BASE_URL")
        );
        Ok(())
    }

    #[test]
    fn pinned_dir_ends_with_version() {
        assert!(
            pinned_cli_dir().ends_with(Path::new("claude-conduit/cli").join(PINNED_CLI_VERSION))
        );
    }
}
