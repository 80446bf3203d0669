//! [`PluginManager`]: the plugins of a process, their states and their contributions.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::Value;

use super::manifest::{MANIFEST_FILE, Manifest, OnError, Runtime};
use super::resolve::{Node, ResolveError, resolve};
use super::{NativePlugin, Plugin, PluginContext, ToolSpec, failure_output};
use crate::events::{Event, EventBus, EventKind, Outcome, Subscription};
use crate::extension::CustomType;
use crate::hooks::HookEvent;
use crate::mcp::{SdkMcpServer, SdkTool, ToolError};
use crate::middleware::QueryLayer;

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginState {
    /// Its manifest was read.
    Discovered,
    /// Its dependencies are there, in matching versions.
    Resolved,
    /// `initialize` runs.
    Initializing,
    /// Serving.
    Active,
    /// Parsing, resolving or initializing failed (see [`PluginInfo::error`]).
    Failed,
    /// `cleanup` runs.
    Unloading,
    /// Gone (its contributions are removed).
    Unloaded,
}

impl PluginState {
    /// `"discovered"`, `"resolved"`, …
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Discovered => "discovered",
            PluginState::Resolved => "resolved",
            PluginState::Initializing => "initializing",
            PluginState::Active => "active",
            PluginState::Failed => "failed",
            PluginState::Unloading => "unloading",
            PluginState::Unloaded => "unloaded",
        }
    }
}

/// What [`PluginManager::list`] shows of one plugin.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its runtime.
    pub runtime: Runtime,
    /// Its state.
    pub state: PluginState,
    /// Its dependencies: name and requirement.
    pub depends: Vec<(String, String)>,
    /// The hook events it answers (while active).
    pub hooks: Vec<String>,
    /// Its MCP tools (while active).
    pub tools: Vec<String>,
    /// Whether it has a `can_use_tool` permission policy (while active).
    pub permission_policy: bool,
    /// Its custom message types, `type` or `type/subtype` (while active).
    pub message_types: Vec<String>,
    /// The frame types it handles as a protocol extension (while active).
    pub frame_types: Vec<String>,
    /// Whether it contributes a query layer (while active).
    pub query_layer: bool,
    /// Its directory.
    pub dir: Option<PathBuf>,
    /// The last error: why it failed, or why its last reload or call failed.
    pub error: Option<String>,
    /// Calls that failed (script errors, limits, a coprocessor down or timing out).
    pub failures: u64,
}

/// One problem `conduit plugins check` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckProblem {
    /// The file.
    pub file: PathBuf,
    /// The line (1 when the whole file is meant).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CheckProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// One initialized version of a plugin.
pub(crate) struct Version {
    pub(crate) plugin: Arc<dyn Plugin>,
    pub(crate) manifest: Manifest,
    hooks: Vec<HookEvent>,
    tools: Vec<ToolSpec>,
    /// It has a `can_use_tool` policy.
    pub(crate) permission: bool,
    /// Its custom message types (the manifest's `[[messages]]`, then the plugin's own).
    pub(crate) custom_types: Vec<CustomType>,
    /// The frame types it handles.
    pub(crate) frame_types: Vec<String>,
    /// Its query layer.
    pub(crate) layer: Option<QueryLayer>,
    /// Its hook handlers on the bus.
    subs: Vec<Subscription>,
    /// Handlers it registered itself (native plugins, [`PluginContext::on`]).
    ctx_subs: Arc<Mutex<Vec<Subscription>>>,
}

impl Version {
    fn remove_handlers(&self) {
        for s in &self.subs {
            s.remove();
        }
        for s in lock(&self.ctx_subs).iter() {
            s.remove();
        }
    }
}

/// What bus handlers and tools hold of a plugin: its current version, swapped on reload.
pub(crate) struct Live {
    pub(crate) name: String,
    current: RwLock<Option<Arc<Version>>>,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Live {
    pub(crate) fn current(&self) -> Option<Arc<Version>> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn swap(&self, v: Option<Arc<Version>>) -> Option<Arc<Version>> {
        match self.current.write() {
            Ok(mut c) => std::mem::replace(&mut *c, v),
            Err(p) => std::mem::replace(&mut *p.into_inner(), v),
        }
    }

    pub(crate) fn failed(&self, what: &str, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "claude_conduit::plugin",
            plugin = %self.name,
            call = what,
            %error,
            "plugin call failed"
        );
        *lock(&self.last_error) = Some(format!("{what}: {error}"));
    }
}

struct Loaded {
    manifest: Manifest,
    dir: Option<PathBuf>,
    state: PluginState,
    error: Option<String>,
    live: Arc<Live>,
    /// What the plugin's directory held when it was loaded (hot reload compares).
    fingerprint: u64,
}

struct Inner {
    bus: EventBus,
    natives: Mutex<HashMap<String, Arc<dyn NativePlugin>>>,
    configs: Mutex<HashMap<String, Value>>,
    table: Mutex<BTreeMap<String, Loaded>>,
    /// Serialises load, unload and reload.
    ops: tokio::sync::Mutex<()>,
}

/// The plugins of a process: load, resolve, initialize, reload, unload; cheap to clone.
#[derive(Clone)]
pub struct PluginManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field(
                "plugins",
                &lock(&self.inner.table).keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for PluginManager {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A hash of every file under `dir` (names and contents), for hot reload.
pub(crate) fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => files.push(p),
                _ => {}
            }
        }
    }
    files.sort();
    for f in files {
        f.hash(&mut h);
        std::fs::read(&f).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// The plugin directories under `dir` (each with a `plugin.toml`), sorted.
pub(crate) fn plugin_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(MANIFEST_FILE).is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Validate `config` against the manifest's schema.
fn check_config(manifest: &Manifest, config: &Value) -> Result<(), String> {
    let Some(schema) = manifest.config_schema() else {
        return Ok(());
    };
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| format!("the `config` schema does not compile: {e}"))?;
    match crate::extension::schema_error(&validator, config) {
        None => Ok(()),
        Some(e) => Err(format!(
            "configuration of `{}` is invalid at `{}`: {}",
            manifest.name,
            if e.path.is_empty() { "/" } else { &e.path },
            e.message
        )),
    }
}

impl PluginManager {
    /// No plugins, a new bus.
    pub fn new() -> Self {
        Self::with_bus(EventBus::new())
    }

    /// No plugins; hook handlers go on `bus` (share it with your own handlers).
    pub fn with_bus(bus: EventBus) -> Self {
        PluginManager {
            inner: Arc::new(Inner {
                bus,
                natives: Mutex::new(HashMap::new()),
                configs: Mutex::new(HashMap::new()),
                table: Mutex::new(BTreeMap::new()),
                ops: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The bus the plugins' handlers are on (give it to sessions, or use
    /// [`OptionsBuilder::plugins`](crate::options::OptionsBuilder::plugins)).
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// Register a native plugin under `name` (a manifest's `entry` names it).
    pub fn register_native(&self, name: impl Into<String>, plugin: impl NativePlugin) {
        lock(&self.inner.natives).insert(name.into(), Arc::new(plugin));
    }

    /// The configuration of plugin `name` (validated against its manifest's schema at init;
    /// default `{}`). Set it before loading; it applies from the next load or reload.
    pub fn set_config(&self, name: impl Into<String>, config: Value) {
        lock(&self.inner.configs).insert(name.into(), config);
    }

    fn config_of(&self, name: &str) -> Value {
        lock(&self.inner.configs)
            .get(name)
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()))
    }

    async fn transition(&self, name: &str, state: PluginState, error: Option<String>) {
        let version = {
            let mut table = lock(&self.inner.table);
            let Some(l) = table.get_mut(name) else { return };
            l.state = state;
            if error.is_some() || state == PluginState::Active {
                l.error = error.clone();
            }
            l.manifest.version.to_string()
        };
        if let Some(e) = &error {
            tracing::warn!(target: "claude_conduit::plugin", plugin = %name, state = state.as_str(), error = %e, "plugin");
        } else {
            tracing::info!(target: "claude_conduit::plugin", plugin = %name, state = state.as_str(), "plugin");
        }
        self.inner
            .bus
            .emit(Event::Plugin {
                name: name.to_owned(),
                version,
                state: state.as_str(),
                error,
            })
            .await;
    }

    /// Every plugin in `dir` (each subdirectory with a `plugin.toml`): parsed, resolved,
    /// configured and initialized in dependency order. Returns every problem; the plugins
    /// without one are active.
    pub async fn load_dir(&self, dir: &Path) -> Vec<String> {
        let dirs = match plugin_dirs(dir) {
            Ok(d) => d,
            Err(e) => return vec![format!("{}: cannot read: {e}", dir.display())],
        };
        let mut problems = Vec::new();
        let mut manifests = Vec::new();
        for d in dirs {
            match Manifest::load(&d) {
                Ok(m) => manifests.push((m, Some(d))),
                Err(e) => problems.push(e.to_string()),
            }
        }
        problems.extend(self.load(manifests).await);
        problems
    }

    /// Load plugins from manifests (with their directories, if any): resolved together with the
    /// active ones, then initialized in dependency order. Returns every problem.
    pub async fn load(&self, plugins: Vec<(Manifest, Option<PathBuf>)>) -> Vec<String> {
        let _ops = self.inner.ops.lock().await;
        let mut problems = Vec::new();
        let mut new_names = Vec::new();
        for (manifest, dir) in plugins {
            let name = manifest.name.clone();
            {
                let mut table = lock(&self.inner.table);
                if table
                    .get(&name)
                    .is_some_and(|l| l.state == PluginState::Active)
                {
                    problems.push(format!(
                        "plugin `{name}` is already active (reload it instead)"
                    ));
                    continue;
                }
                let fingerprint = dir.as_deref().map_or(0, fingerprint);
                table.insert(
                    name.clone(),
                    Loaded {
                        live: Arc::new(Live {
                            name: name.clone(),
                            current: RwLock::new(None),
                            failures: AtomicU64::new(0),
                            last_error: Mutex::new(None),
                        }),
                        manifest,
                        dir,
                        state: PluginState::Discovered,
                        error: None,
                        fingerprint,
                    },
                );
            }
            new_names.push(name.clone());
            self.transition(&name, PluginState::Discovered, None).await;
        }
        let (order, errors) = self.resolve_table(None);
        for e in errors {
            for p in e.plugins() {
                if new_names.iter().any(|n| n == p) {
                    self.transition(p, PluginState::Failed, Some(e.to_string()))
                        .await;
                }
            }
            problems.push(e.to_string());
        }
        for name in order.iter().filter(|n| new_names.contains(n)) {
            // A dependency that failed to initialize fails its dependants.
            let next = {
                let table = lock(&self.inner.table);
                let Some(l) = table.get(name) else { continue };
                if l.state == PluginState::Failed {
                    continue;
                }
                let failed_dep = l.manifest.depends.keys().find(|d| {
                    table
                        .get(d.as_str())
                        .is_none_or(|x| x.state != PluginState::Active)
                });
                match failed_dep {
                    Some(dep) => Err(ResolveError::DependencyFailed {
                        plugin: name.clone(),
                        dependency: dep.clone(),
                    }
                    .to_string()),
                    None => Ok((l.manifest.clone(), l.dir.clone(), l.live.clone())),
                }
            };
            let (manifest, dir, live) = match next {
                Ok(x) => x,
                Err(e) => {
                    problems.push(e.clone());
                    self.transition(name, PluginState::Failed, Some(e)).await;
                    continue;
                }
            };
            self.transition(name, PluginState::Resolved, None).await;
            self.transition(name, PluginState::Initializing, None).await;
            match self.start(&manifest, dir.as_deref(), &live).await {
                Ok(version) => {
                    live.swap(Some(version));
                    self.transition(name, PluginState::Active, None).await;
                }
                Err(e) => {
                    problems.push(format!("plugin `{name}`: {e}"));
                    self.transition(name, PluginState::Failed, Some(e)).await;
                }
            }
        }
        problems
    }

    /// Resolve the table's non-failed, non-unloaded plugins (with `replace` standing in for its
    /// name's entry).
    fn resolve_table(&self, replace: Option<&Manifest>) -> (Vec<String>, Vec<ResolveError>) {
        let table = lock(&self.inner.table);
        let manifests: Vec<&Manifest> = table
            .values()
            .filter(|l| {
                !matches!(
                    l.state,
                    PluginState::Failed | PluginState::Unloaded | PluginState::Unloading
                )
            })
            .map(|l| match replace {
                Some(r) if r.name == l.manifest.name => r,
                _ => &l.manifest,
            })
            .collect();
        let nodes: Vec<Node<'_>> = manifests
            .iter()
            .map(|m| Node {
                name: &m.name,
                version: &m.version,
                depends: &m.depends,
            })
            .collect();
        resolve(&nodes)
    }

    /// Initialize one version: config check, the runtime's init (bounded), the declared
    /// contributions, then its hook handlers on the bus.
    async fn start(
        &self,
        manifest: &Manifest,
        dir: Option<&Path>,
        live: &Arc<Live>,
    ) -> Result<Arc<Version>, String> {
        let config = self.config_of(&manifest.name);
        check_config(manifest, &config)?;
        let ctx_subs = Arc::new(Mutex::new(Vec::new()));
        let ctx = PluginContext {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            config,
            dir: dir.map(Path::to_owned),
            bus: self.inner.bus.owned(&manifest.name),
            subs: ctx_subs.clone(),
        };
        let init = async {
            match manifest.runtime {
                Runtime::Native => {
                    let entry = manifest.entry.split().0;
                    let native = lock(&self.inner.natives).get(entry).cloned();
                    match native {
                        Some(n) => n.init(ctx).await,
                        None => Err(format!("no native plugin is registered as `{entry}`")),
                    }
                }
                Runtime::Rhai => {
                    #[cfg(feature = "rhai")]
                    {
                        super::script::start(manifest, dir, ctx).map(|p| p as Arc<dyn Plugin>)
                    }
                    #[cfg(not(feature = "rhai"))]
                    {
                        let _ = ctx;
                        Err("Rhai plugins need the `rhai` cargo feature".to_owned())
                    }
                }
                Runtime::Process => super::process::start(manifest, dir, ctx)
                    .await
                    .map(|p| p as Arc<dyn Plugin>),
            }
        };
        let plugin = match tokio::time::timeout(manifest.init_timeout(), init).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                for s in lock(&ctx_subs).iter() {
                    s.remove();
                }
                return Err(format!("initialize failed: {e}"));
            }
            Err(_) => {
                for s in lock(&ctx_subs).iter() {
                    s.remove();
                }
                return Err(format!(
                    "initialize timed out after {} ms",
                    manifest.init_timeout_ms
                ));
            }
        };
        let hooks = plugin.hook_events();
        let tools = plugin.tools();
        let permission = plugin.has_permission_policy();
        let frame_types = plugin.frame_types();
        let layer = plugin.query_layer();
        let custom_types = match message_types(manifest, dir) {
            Ok(mut declared) => {
                declared.extend(plugin.custom_types());
                declared
            }
            Err(e) => {
                cleanup(&plugin, manifest).await;
                return Err(e);
            }
        };
        let declared = &manifest.contributes;
        let missing: Vec<String> = manifest
            .contributes
            .hooks
            .iter()
            .filter(|h| !hooks.iter().any(|x| x.as_str() == h.as_str()))
            .cloned()
            .chain(
                manifest
                    .contributes
                    .tools
                    .iter()
                    .filter(|t| !tools.iter().any(|x| &x.name == *t))
                    .cloned(),
            )
            .chain((declared.can_use_tool && !permission).then(|| "can_use_tool".to_owned()))
            .chain(
                declared
                    .frames
                    .iter()
                    .filter(|t| !frame_types.contains(t))
                    .map(|t| format!("a handler for frames `{t}`")),
            )
            .collect();
        if !missing.is_empty() {
            cleanup(&plugin, manifest).await;
            return Err(format!(
                "declares {} in `contributes` but does not provide it",
                missing.join(", ")
            ));
        }
        let subs = hooks
            .iter()
            .map(|event| self.hook_handler(live, event.clone(), manifest.priority))
            .collect();
        Ok(Arc::new(Version {
            plugin,
            manifest: manifest.clone(),
            hooks,
            tools,
            permission,
            custom_types,
            frame_types,
            layer,
            subs,
            ctx_subs,
        }))
    }

    /// The bus handler of one plugin for one hook event: calls whatever version is current.
    fn hook_handler(&self, live: &Arc<Live>, event: HookEvent, priority: i32) -> Subscription {
        let live = live.clone();
        // Owned by the plugin: the bus's handler metrics carry its name (`owner` label).
        self.inner.bus.owned(&live.name).on_async(
            EventKind::Hook(event.clone()),
            priority,
            move |e| {
                let live = live.clone();
                let event = event.clone();
                async move {
                    let Event::Hook { input, tool_use_id } = e else {
                        return Ok(Outcome::Continue);
                    };
                    // A version replaced meanwhile still serves the calls that started on it.
                    let Some(version) = live.current() else {
                        return Ok(Outcome::Continue);
                    };
                    if !version.hooks.contains(&event) {
                        return Ok(Outcome::Continue);
                    }
                    match version.plugin.on_hook(input, tool_use_id).await {
                        Ok(Some(out)) => Ok(Outcome::Answer(out)),
                        Ok(None) => Ok(Outcome::Continue),
                        Err(error) => {
                            live.failed(event.as_str(), &error);
                            Ok(match version.manifest.on_error {
                                OnError::Deny => failure_output(&event, &live.name, &error)
                                    .map_or(Outcome::Continue, Outcome::Answer),
                                OnError::Ignore => Outcome::Continue,
                            })
                        }
                    }
                }
            },
        )
    }

    /// Unload `name`: refused while active plugins depend on it (the error lists them).
    /// Its handlers leave the bus; `cleanup` runs (bounded); calls in flight finish.
    pub async fn unload(&self, name: &str) -> Result<(), String> {
        let _ops = self.inner.ops.lock().await;
        self.unload_locked(name).await
    }

    async fn unload_locked(&self, name: &str) -> Result<(), String> {
        let live = {
            let table = lock(&self.inner.table);
            let Some(l) = table.get(name) else {
                return Err(format!("no plugin `{name}`"));
            };
            let dependants: Vec<&str> = table
                .values()
                .filter(|o| o.state == PluginState::Active && o.manifest.depends.contains_key(name))
                .map(|o| o.manifest.name.as_str())
                .collect();
            if !dependants.is_empty() {
                return Err(format!(
                    "cannot unload `{name}`: active plugins depend on it: {}",
                    dependants.join(", ")
                ));
            }
            l.live.clone()
        };
        self.transition(name, PluginState::Unloading, None).await;
        if let Some(v) = live.swap(None) {
            v.remove_handlers();
            cleanup(&v.plugin, &v.manifest).await;
        }
        self.transition(name, PluginState::Unloaded, None).await;
        Ok(())
    }

    /// Reload `name` from its directory (or with `manifest`, for plugins without one): the new
    /// version is parsed, resolved and initialized first, then swapped in for new calls; calls
    /// in flight finish on the old one. If anything fails the old version keeps serving and the
    /// error is returned, logged, put on the bus (`Event::Plugin`, state `active`) and shown by
    /// [`list`](Self::list).
    pub async fn reload(&self, name: &str, manifest: Option<Manifest>) -> Result<(), String> {
        let _ops = self.inner.ops.lock().await;
        let (dir, live, was_active) = {
            let table = lock(&self.inner.table);
            let Some(l) = table.get(name) else {
                return Err(format!("no plugin `{name}`"));
            };
            (
                l.dir.clone(),
                l.live.clone(),
                l.state == PluginState::Active,
            )
        };
        match self
            .reload_locked(name, manifest, dir.as_deref(), &live)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if was_active => {
                // Not retried until the files change again.
                if let Some(d) = &dir {
                    let print = fingerprint(d);
                    if let Some(l) = lock(&self.inner.table).get_mut(name) {
                        l.fingerprint = print;
                    }
                }
                let e = format!("reload failed, the old version keeps serving: {e}");
                *lock(&live.last_error) = Some(e.clone());
                self.transition(name, PluginState::Active, Some(e.clone()))
                    .await;
                Err(e)
            }
            Err(e) => {
                self.transition(name, PluginState::Failed, Some(e.clone()))
                    .await;
                Err(e)
            }
        }
    }

    async fn reload_locked(
        &self,
        name: &str,
        manifest: Option<Manifest>,
        dir: Option<&Path>,
        live: &Arc<Live>,
    ) -> Result<(), String> {
        let manifest = match (manifest, dir) {
            (Some(m), _) => m,
            (None, Some(d)) => Manifest::load(d).map_err(|e| e.to_string())?,
            (None, None) => return Err("no directory to reload from".into()),
        };
        if manifest.name != name {
            return Err(format!(
                "the manifest now names `{}`; a plugin cannot change its name",
                manifest.name
            ));
        }
        let (_, errors) = self.resolve_table(Some(&manifest));
        if let Some(e) = errors.first() {
            return Err(e.to_string());
        }
        let version = self.start(&manifest, dir, live).await?;
        let old = live.swap(Some(version));
        // A new version starts with a clean slate (its failures count on).
        *lock(&live.last_error) = None;
        {
            let mut table = lock(&self.inner.table);
            if let Some(l) = table.get_mut(name) {
                l.manifest = manifest;
                l.fingerprint = dir.map_or(0, fingerprint);
            }
        }
        if let Some(old) = old {
            old.remove_handlers();
            cleanup(&old.plugin, &old.manifest).await;
        }
        self.transition(name, PluginState::Active, None).await;
        Ok(())
    }

    /// Bring the table in line with `dir`: load new plugins, reload changed ones (their files
    /// changed), unload removed ones. Returns the problems. Hot reload runs this.
    pub async fn sync_dir(&self, dir: &Path) -> Vec<String> {
        let dirs = plugin_dirs(dir).unwrap_or_default();
        let mut problems = Vec::new();
        let mut on_disk: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut new = Vec::new();
        for d in &dirs {
            let known = {
                let table = lock(&self.inner.table);
                table
                    .values()
                    .find(|l| l.dir.as_deref() == Some(d.as_path()))
                    .map(|l| (l.manifest.name.clone(), l.fingerprint, l.state))
            };
            match known {
                Some((name, print, state)) => {
                    on_disk.insert(name.clone(), d.clone());
                    let changed = fingerprint(d) != print;
                    if changed && state == PluginState::Active {
                        if let Err(e) = self.reload(&name, None).await {
                            problems.push(format!("plugin `{name}`: {e}"));
                        }
                    } else if changed || state == PluginState::Unloaded {
                        // A failed or unloaded plugin gets a fresh load.
                        match Manifest::load(d) {
                            Ok(m) => {
                                on_disk.insert(m.name.clone(), d.clone());
                                new.push((m, Some(d.clone())));
                            }
                            Err(e) => {
                                problems.push(e.to_string());
                                let mut table = lock(&self.inner.table);
                                if let Some(l) = table.get_mut(&name) {
                                    l.fingerprint = fingerprint(d);
                                    l.error = Some(e.to_string());
                                }
                            }
                        }
                    }
                }
                None => match Manifest::load(d) {
                    Ok(m) => {
                        on_disk.insert(m.name.clone(), d.clone());
                        new.push((m, Some(d.clone())));
                    }
                    Err(e) => problems.push(e.to_string()),
                },
            }
        }
        if !new.is_empty() {
            problems.extend(self.load(new).await);
        }
        // Removed directories: unload, dependants first.
        let gone: Vec<String> = {
            let table = lock(&self.inner.table);
            table
                .values()
                .filter(|l| {
                    l.dir.as_deref().is_some_and(|d| d.starts_with(dir))
                        && !on_disk.contains_key(&l.manifest.name)
                        && l.state != PluginState::Unloaded
                })
                .map(|l| l.manifest.name.clone())
                .collect()
        };
        let mut pending = gone;
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for name in pending {
                let _ops = self.inner.ops.lock().await;
                if let Err(e) = self.unload_locked(&name).await {
                    still.push((name, e));
                }
            }
            if still.len() == before {
                problems.extend(still.into_iter().map(|(_, e)| e));
                break;
            }
            pending = still.into_iter().map(|(n, _)| n).collect();
        }
        problems
    }

    /// Every plugin the manager knows, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let table = lock(&self.inner.table);
        table
            .values()
            .map(|l| {
                let current = l.live.current();
                let last_call_error = lock(&l.live.last_error).clone();
                PluginInfo {
                    name: l.manifest.name.clone(),
                    version: current.as_ref().map_or_else(
                        || l.manifest.version.to_string(),
                        |v| v.manifest.version.to_string(),
                    ),
                    runtime: l.manifest.runtime,
                    state: l.state,
                    depends: l
                        .manifest
                        .depends
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                    hooks: current
                        .as_ref()
                        .map(|v| v.hooks.iter().map(|h| h.as_str().to_owned()).collect())
                        .unwrap_or_default(),
                    tools: current
                        .as_ref()
                        .map(|v| v.tools.iter().map(|t| t.name.clone()).collect())
                        .unwrap_or_default(),
                    permission_policy: current.as_ref().is_some_and(|v| v.permission),
                    message_types: current
                        .as_ref()
                        .map(|v| v.custom_types.iter().map(CustomType::name).collect())
                        .unwrap_or_default(),
                    frame_types: current
                        .as_ref()
                        .map(|v| v.frame_types.clone())
                        .unwrap_or_default(),
                    query_layer: current.as_ref().is_some_and(|v| v.layer.is_some()),
                    dir: l.dir.clone(),
                    error: l.error.clone().or(last_call_error),
                    failures: l.live.failures.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The active plugins' current versions, highest `priority` first (ties by name).
    pub(crate) fn active(&self) -> Vec<(Arc<Live>, Arc<Version>)> {
        let table = lock(&self.inner.table);
        let mut out: Vec<(Arc<Live>, Arc<Version>)> = table
            .values()
            .filter(|l| l.state == PluginState::Active)
            .filter_map(|l| l.live.current().map(|v| (l.live.clone(), v)))
            .collect();
        // Stable: equal priorities keep the table's (name) order.
        out.sort_by_key(|(_, v)| std::cmp::Reverse(v.manifest.priority));
        out
    }

    /// One plugin's state.
    pub fn state(&self, name: &str) -> Option<PluginState> {
        lock(&self.inner.table).get(name).map(|l| l.state)
    }

    /// The active plugins' MCP tools, one SDK MCP server per plugin named after it (the model
    /// sees `mcp__<plugin>__<tool>`). Each call goes to the plugin's current version. Taken when
    /// a session is built: tools of plugins loaded later reach later sessions.
    pub fn mcp_servers(&self) -> Vec<SdkMcpServer> {
        let table = lock(&self.inner.table);
        let mut out = Vec::new();
        for l in table.values().filter(|l| l.state == PluginState::Active) {
            let Some(v) = l.live.current() else { continue };
            if v.tools.is_empty() {
                continue;
            }
            let tools = v.tools.iter().map(|spec| {
                let live = l.live.clone();
                let tool = spec.name.clone();
                SdkTool::new(
                    spec.name.clone(),
                    spec.description.clone(),
                    spec.input_schema.clone(),
                    move |args: Value| {
                        let live = live.clone();
                        let tool = tool.clone();
                        async move {
                            let Some(v) = live.current() else {
                                return Err(ToolError::new(format!(
                                    "plugin `{}` is not loaded",
                                    live.name
                                )));
                            };
                            let r = v.plugin.call_tool(&tool, args).await;
                            if let Err(e) = &r {
                                live.failed(&format!("tool {tool}"), e.message());
                            }
                            r
                        }
                    },
                )
            });
            out.push(
                SdkMcpServer::builder(l.manifest.name.clone())
                    .version(l.manifest.version.to_string())
                    .tools(tools)
                    .build(),
            );
        }
        out
    }

    /// Unload every plugin (dependants first) and run their cleanups.
    pub async fn shutdown(&self) {
        loop {
            let names: Vec<String> = {
                let table = lock(&self.inner.table);
                table
                    .values()
                    .filter(|l| l.state == PluginState::Active)
                    .map(|l| l.manifest.name.clone())
                    .collect()
            };
            if names.is_empty() {
                return;
            }
            let mut progressed = false;
            for n in names {
                progressed |= self.unload(&n).await.is_ok();
            }
            if !progressed {
                return;
            }
        }
    }

    /// What `conduit plugins check` reports for `dir`: manifests that do not parse, plugins that
    /// do not resolve, configurations (from [`set_config`](Self::set_config)) that do not
    /// validate, scripts that do not compile, coprocessor programs that are not there.
    pub fn check_dir(&self, dir: &Path) -> Vec<CheckProblem> {
        let mut problems = Vec::new();
        let dirs = match plugin_dirs(dir) {
            Ok(d) => d,
            Err(e) => {
                return vec![CheckProblem {
                    file: dir.to_owned(),
                    line: 1,
                    message: format!("cannot read: {e}"),
                }];
            }
        };
        let mut manifests = Vec::new();
        for d in dirs {
            match Manifest::load(&d) {
                Ok(m) => manifests.push((m, d)),
                Err(e) => problems.push(CheckProblem {
                    file: e.file,
                    line: e.line,
                    message: e.message,
                }),
            }
        }
        let nodes: Vec<Node<'_>> = manifests
            .iter()
            .map(|(m, _)| Node {
                name: &m.name,
                version: &m.version,
                depends: &m.depends,
            })
            .collect();
        let (_, errors) = resolve(&nodes);
        for e in errors {
            let plugin = e
                .plugins()
                .first()
                .map(|s| (*s).to_owned())
                .unwrap_or_default();
            let dir = manifests
                .iter()
                .find(|(m, _)| m.name == plugin)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            let file = dir.join(MANIFEST_FILE);
            let line = line_of(&file, "[depends]");
            problems.push(CheckProblem {
                file,
                line,
                message: e.to_string(),
            });
        }
        for (m, d) in &manifests {
            let file = d.join(MANIFEST_FILE);
            if let Err(e) = check_config(m, &self.config_of(&m.name)) {
                problems.push(CheckProblem {
                    line: line_of(&file, "[config"),
                    file: file.clone(),
                    message: e,
                });
            }
            if let Err(message) = message_types(m, Some(d)) {
                problems.push(CheckProblem {
                    line: line_of(&file, "[[messages]]"),
                    file: file.clone(),
                    message,
                });
            }
            match m.runtime {
                Runtime::Rhai => {
                    #[cfg(feature = "rhai")]
                    if let Err((file, line, message)) = super::script::check(m, d) {
                        problems.push(CheckProblem {
                            file,
                            line,
                            message,
                        });
                    }
                    #[cfg(not(feature = "rhai"))]
                    problems.push(CheckProblem {
                        file: file.clone(),
                        line: line_of(&file, "runtime"),
                        message: "Rhai plugins need the `rhai` cargo feature".into(),
                    });
                }
                Runtime::Process => {
                    if let Err(message) = super::process::check(m, d) {
                        problems.push(CheckProblem {
                            line: line_of(&file, "entry"),
                            file: file.clone(),
                            message,
                        });
                    }
                }
                Runtime::Native => {
                    let entry = m.entry.split().0;
                    if !lock(&self.inner.natives).contains_key(entry) {
                        problems.push(CheckProblem {
                            line: line_of(&file, "entry"),
                            file: file.clone(),
                            message: format!(
                                "no native plugin is registered as `{entry}` in this program"
                            ),
                        });
                    }
                }
            }
        }
        problems
    }
}

/// The manifest's `[[messages]]` as custom types, each with its JSON Schema file compiled.
fn message_types(manifest: &Manifest, dir: Option<&Path>) -> Result<Vec<CustomType>, String> {
    let mut out = Vec::with_capacity(manifest.messages.len());
    for m in &manifest.messages {
        let mut t = CustomType::new::<Value>(m.type_.clone());
        if let Some(sub) = &m.subtype {
            t = t.subtype(sub.clone());
        }
        if let Some(file) = &m.schema {
            let path = dir.map_or_else(|| file.clone(), |d| d.join(file));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "`messages` `{}`: cannot read {}: {e}",
                    m.name(),
                    path.display()
                )
            })?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
            t = t
                .schema(&schema)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        out.push(t);
    }
    Ok(out)
}

/// The first line of `file` starting with `prefix` (1 if none).
fn line_of(file: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines()
                .position(|l| l.trim_start().starts_with(prefix))
                .map(|i| i + 1)
        })
        .unwrap_or(1)
}

async fn cleanup(plugin: &Arc<dyn Plugin>, manifest: &Manifest) {
    if tokio::time::timeout(manifest.cleanup_timeout(), plugin.cleanup())
        .await
        .is_err()
    {
        tracing::warn!(
            target: "claude_conduit::plugin",
            plugin = %manifest.name,
            after_ms = manifest.cleanup_timeout_ms,
            "plugin cleanup timed out"
        );
    }
}
