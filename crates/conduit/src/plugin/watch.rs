//! Hot reload: a directory watcher (notify + notify-debouncer-full) that loads new plugins,
//! reloads changed ones and unloads removed ones while sessions run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

use super::PluginManager;

/// A running watcher; dropping it (or [`stop`](Self::stop)) stops watching.
pub struct Watcher {
    _debouncer: Box<dyn std::any::Any + Send>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Stop watching.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PluginManager {
    /// Watch `dir` (recursively): after changes settle for `debounce`, bring the manager in
    /// line with the directory ([`sync_dir`](Self::sync_dir)); problems are logged (and shown
    /// by [`list`](Self::list) and on the bus). Needs a tokio runtime.
    pub fn watch(&self, dir: &Path, debounce: Duration) -> Result<Watcher, String> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut debouncer = new_debouncer(debounce, None, move |r: DebounceEventResult| match r {
            Ok(events) if !events.is_empty() => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(errors) => {
                for e in errors {
                    tracing::warn!(target: "claude_conduit::plugin", error = %e, "plugin directory watch error");
                }
            }
        })
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        debouncer
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        let manager = self.clone();
        let dir: PathBuf = dir.to_owned();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                while rx.try_recv().is_ok() {}
                for p in manager.sync_dir(&dir).await {
                    tracing::warn!(target: "claude_conduit::plugin", problem = %p, "plugin hot reload");
                }
            }
        });
        Ok(Watcher {
            _debouncer: Box::new(debouncer),
            task,
        })
    }
}
