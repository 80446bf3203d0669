//! [`HookMatcher`], the [`Hooks`] registry, its [`HookRegistration`], and answering
//! `hook_callback` requests.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{self, BoxFuture};
use serde_json::{Map, Value};

use super::callback::fallible;
use super::{HookCallback, HookEvent, HookInput, HookOutput};

/// One matcher of an event: a pattern, the callbacks it runs, and the CLI-side timeout.
///
/// The CLI evaluates the pattern; the SDK only sends it. [`matches`](Self::matches) mirrors the
/// CLI's rules for display and tests.
#[derive(Clone, Default)]
pub struct HookMatcher {
    /// `matcher`: `None` (sent as `null`), `""` or `"*"` match everything.
    pub matcher: Option<String>,
    /// The callbacks; the CLI runs the callbacks of all matching matchers concurrently.
    pub callbacks: Vec<Arc<dyn HookCallback>>,
    /// `timeout`, enforced by the CLI (sent in seconds; the CLI's default is 60 s).
    pub timeout: Option<Duration>,
}

impl fmt::Debug for HookMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookMatcher")
            .field("matcher", &self.matcher)
            .field("callbacks", &self.callbacks.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HookMatcher {
    /// A matcher for `pattern`: a tool name (`"Bash"`), a list (`"Write|Edit"`) or a regular
    /// expression (`"mcp__memory__.*"`, `"^Notebook"`), compared against the event's
    /// [`matcher_field`](HookEvent::matcher_field).
    pub fn new(pattern: impl Into<String>) -> Self {
        HookMatcher {
            matcher: Some(pattern.into()),
            ..Default::default()
        }
    }

    /// A matcher that matches everything (sent as `"matcher": null`).
    pub fn all() -> Self {
        HookMatcher::default()
    }

    /// Adds an async closure `|input, tool_use_id| async move { … HookOutput }`.
    pub fn callback<F, Fut>(self, f: F) -> Self
    where
        F: Fn(HookInput, Option<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookOutput> + Send + 'static,
    {
        self.hook(f)
    }

    /// Adds an async closure that can fail: `Err(e)` is answered with a control error response
    /// carrying `e.to_string()` (see [`fallible`]).
    pub fn try_callback<F, Fut, E>(self, f: F) -> Self
    where
        F: Fn(HookInput, Option<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HookOutput, E>> + Send + 'static,
        E: fmt::Display,
    {
        self.hook(fallible(f))
    }

    /// Adds any [`HookCallback`].
    pub fn hook(self, callback: impl HookCallback) -> Self {
        self.hook_arc(Arc::new(callback))
    }

    /// Adds a shared [`HookCallback`].
    pub fn hook_arc(mut self, callback: Arc<dyn HookCallback>) -> Self {
        self.callbacks.push(callback);
        self
    }

    /// Sets the CLI-side timeout for these callbacks.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the CLI would run this matcher for `subject` (a tool name, `notification_type`,
    /// … see [`HookInput::matcher_subject`]).
    ///
    /// CLI rules: no pattern, `""` or `"*"` match everything; a pattern of only letters, digits,
    /// `_` and `|` is an exact name or `|`-separated list of names; anything else is an
    /// unanchored, case-sensitive regular expression. The CLI evaluates JavaScript regexes; here
    /// they are evaluated with the [`regex`](https://docs.rs/regex) crate in ASCII mode (`\w`,
    /// `\d`, `\b` are ASCII, as in JavaScript), in time linear in the subject. A pattern the
    /// crate does not accept (look-around, back-references, …) matches nothing here (see
    /// [`is_supported_pattern`](Self::is_supported_pattern)), although the CLI may match it.
    ///
    /// ```
    /// use claude_conduit::hooks::HookMatcher;
    ///
    /// assert!(HookMatcher::all().matches("Bash"));
    /// assert!(HookMatcher::new("Write|Edit").matches("Edit"));
    /// assert!(!HookMatcher::new("Edit").matches("MultiEdit"));
    /// assert!(HookMatcher::new("mcp__memory__.*").matches("mcp__memory__store"));
    /// assert!(HookMatcher::new("^Notebook").matches("NotebookEdit"));
    /// ```
    pub fn matches(&self, subject: &str) -> bool {
        self.matcher
            .as_deref()
            .is_none_or(|pattern| pattern_matches(pattern, subject))
    }

    /// Whether [`matches`](Self::matches) can evaluate this pattern faithfully.
    pub fn is_supported_pattern(&self) -> bool {
        self.matcher
            .as_deref()
            .is_none_or(|p| is_name_list(p) || compile(p).is_some())
    }
}

/// `""`, `"*"`, or only letters, digits, `_` and `|`: names compared exactly, not a regex.
fn is_name_list(pattern: &str) -> bool {
    pattern.is_empty()
        || pattern == "*"
        || pattern
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'|')
}

/// A matcher pattern as a regex (ASCII classes, like JavaScript's), or `None` when the `regex`
/// crate does not accept it. Compiled size is bounded: patterns come from code, but a huge one
/// should fail, not eat memory.
fn compile(pattern: &str) -> Option<regex::bytes::Regex> {
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(1 << 20)
        .build()
        .ok()
}

fn pattern_matches(pattern: &str, subject: &str) -> bool {
    if pattern.is_empty() || pattern == "*" {
        return true;
    }
    if is_name_list(pattern) {
        return pattern.split('|').any(|name| name == subject);
    }
    compile(pattern).is_some_and(|re| re.is_match(subject.as_bytes()))
}

/// The hooks of a session: matchers per event, each with callbacks.
///
/// Cheap to clone (shared). Events keep the order of their first registration, matchers and
/// callbacks the order they were added; [`registration`](Self::registration) numbers callbacks
/// in that order.
///
/// ```
/// use claude_conduit::hooks::{HookEvent, HookMatcher, HookOutput, Hooks};
/// use std::time::Duration;
///
/// let hooks = Hooks::new()
///     .on(
///         HookEvent::PreToolUse,
///         HookMatcher::new("Bash")
///             .callback(|_input, _id| async { HookOutput::default() })
///             .callback(|_input, _id| async { HookOutput::default() })
///             .timeout(Duration::from_secs(30)),
///     )
///     .on(HookEvent::PreToolUse, HookMatcher::new("Write|Edit").callback(|_input, _id| async {
///         HookOutput::deny_tool("read-only")
///     }))
///     .on("SomeFutureEvent", HookMatcher::all().callback(|_input, _id| async { HookOutput::default() }));
/// assert_eq!(hooks.matchers(&HookEvent::PreToolUse).len(), 2);
/// assert_eq!(hooks.registration().callbacks.len(), 4);
/// ```
#[derive(Clone, Default)]
pub struct Hooks {
    events: Arc<Vec<(HookEvent, Vec<HookMatcher>)>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.events
                    .iter()
                    .map(|(event, matchers)| (event, matchers)),
            )
            .finish()
    }
}

impl Hooks {
    /// No hooks.
    pub fn new() -> Self {
        Hooks::default()
    }

    /// Adds `matcher` to `event` (builder style).
    pub fn on(mut self, event: impl Into<HookEvent>, matcher: HookMatcher) -> Self {
        self.add(event, matcher);
        self
    }

    /// Adds `matcher` to `event`.
    pub fn add(&mut self, event: impl Into<HookEvent>, matcher: HookMatcher) {
        let event = event.into();
        let events = Arc::make_mut(&mut self.events);
        match events.iter_mut().find(|(known, _)| *known == event) {
            Some((_, matchers)) => matchers.push(matcher),
            None => events.push((event, vec![matcher])),
        }
    }

    /// Whether no callback is registered (then the initialize request's `hooks` is `null`).
    pub fn is_empty(&self) -> bool {
        self.events
            .iter()
            .all(|(_, matchers)| matchers.iter().all(|m| m.callbacks.is_empty()))
    }

    /// The events with matchers, with their matchers, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&HookEvent, &[HookMatcher])> {
        self.events
            .iter()
            .map(|(event, matchers)| (event, matchers.as_slice()))
    }

    /// The matchers of `event`.
    pub fn matchers(&self, event: &HookEvent) -> &[HookMatcher] {
        self.events
            .iter()
            .find(|(known, _)| known == event)
            .map_or(&[], |(_, matchers)| matchers.as_slice())
    }

    /// The matchers of `input`'s event that the CLI would run for it (by the rules of
    /// [`HookMatcher::matches`]; events that ignore matchers run them all).
    pub fn matching<'a>(&'a self, input: &'a HookInput) -> impl Iterator<Item = &'a HookMatcher> {
        let subject = input.matcher_subject();
        let ignores_matchers = input.context().hook_event_name.matcher_field().is_none();
        self.matchers(&input.context().hook_event_name)
            .iter()
            .filter(move |m| ignores_matchers || m.matches(subject.unwrap_or("")))
    }

    /// Numbers the callbacks `hook_0`, `hook_1`, … (events in registration order, then
    /// matchers, then callbacks) and builds the initialize request's `hooks` field.
    ///
    /// Matchers without callbacks are left out. Deterministic: calling it again gives the same
    /// ids (send the same registration with every `initialize`).
    pub fn registration(&self) -> HookRegistration {
        let mut config = Map::new();
        let mut callbacks = HashMap::new();
        for (event, matchers) in self.events.iter() {
            let mut entries = Vec::new();
            for matcher in matchers.iter().filter(|m| !m.callbacks.is_empty()) {
                let ids = matcher
                    .callbacks
                    .iter()
                    .map(|callback| {
                        let id = format!("hook_{}", callbacks.len());
                        callbacks.insert(id.clone(), Arc::clone(callback));
                        Value::String(id)
                    })
                    .collect();
                let mut entry = Map::new();
                entry.insert(
                    "matcher".to_owned(),
                    matcher.matcher.clone().map_or(Value::Null, Value::String),
                );
                entry.insert("hookCallbackIds".to_owned(), Value::Array(ids));
                if let Some(timeout) = matcher.timeout {
                    entry.insert("timeout".to_owned(), seconds(timeout));
                }
                entries.push(Value::Object(entry));
            }
            if !entries.is_empty() {
                config.insert(event.as_str().to_owned(), Value::Array(entries));
            }
        }
        HookRegistration {
            config: if config.is_empty() {
                Value::Null
            } else {
                Value::Object(config)
            },
            callbacks,
        }
    }
}

/// A timeout in seconds: an integer when whole, else a fraction.
fn seconds(timeout: Duration) -> Value {
    if timeout.subsec_nanos() == 0 {
        Value::from(timeout.as_secs())
    } else {
        Value::from(timeout.as_secs_f64())
    }
}

/// The result of [`Hooks::registration`]: what the initialize request sends, and the callbacks
/// by id for answering `hook_callback` requests.
#[derive(Clone, Default)]
pub struct HookRegistration {
    /// The initialize request's `hooks` field:
    /// `{"PreToolUse":[{"matcher":"Bash","hookCallbackIds":["hook_0"],"timeout":60}]}` (`timeout`
    /// only when set, in seconds), or `null` when no callback is registered.
    pub config: Value,
    /// The callbacks by id (`hook_0`, …).
    pub callbacks: HashMap<String, Arc<dyn HookCallback>>,
}

impl fmt::Debug for HookRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.callbacks.keys().collect();
        ids.sort();
        f.debug_struct("HookRegistration")
            .field("config", &self.config)
            .field("callbacks", &ids)
            .finish()
    }
}

impl HookRegistration {
    /// Whether no callback is registered.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }
}

/// Answers a `hook_callback` request body (`callback_id`, `input`, `tool_use_id`): runs the
/// callback and returns its output in wire form, for a success control response.
///
/// `Err` (for an error control response) when `callback_id` is missing or unknown
/// (``unknown hook callback id `X`: …``) or when the callback fails.
pub async fn answer(
    callbacks: &HashMap<String, Arc<dyn HookCallback>>,
    body: &Map<String, Value>,
) -> Result<Option<Value>, String> {
    dispatch(callbacks, body).await
}

/// [`answer`] as a `'static` future: looks the callback up now and does the rest (parsing the
/// input, running the callback) when polled. For routers that spawn the answer on its own task.
pub fn dispatch(
    callbacks: &HashMap<String, Arc<dyn HookCallback>>,
    body: &Map<String, Value>,
) -> BoxFuture<'static, Result<Option<Value>, String>> {
    run(callbacks, body, |body| {
        body.get("input").cloned().unwrap_or(Value::Null)
    })
}

/// [`dispatch`] taking the request body by value, so the input (which can hold a large
/// `tool_response`) is moved rather than copied.
pub fn dispatch_owned(
    callbacks: &HashMap<String, Arc<dyn HookCallback>>,
    mut body: Map<String, Value>,
) -> BoxFuture<'static, Result<Option<Value>, String>> {
    let input = body.remove("input").unwrap_or(Value::Null);
    run(callbacks, &body, move |_| input)
}

fn run(
    callbacks: &HashMap<String, Arc<dyn HookCallback>>,
    body: &Map<String, Value>,
    input: impl FnOnce(&Map<String, Value>) -> Value,
) -> BoxFuture<'static, Result<Option<Value>, String>> {
    let Some(id) = body.get("callback_id").and_then(Value::as_str) else {
        return future::ready(Err(
            "hook_callback request without a string `callback_id`".to_owned()
        ))
        .boxed();
    };
    let Some(callback) = callbacks.get(id) else {
        return future::ready(Err(format!(
            "unknown hook callback id `{id}`: no hook with this id is registered"
        )))
        .boxed();
    };
    let callback = Arc::clone(callback);
    let id = id.to_owned();
    let input = input(body);
    let tool_use_id = body
        .get("tool_use_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    async move {
        let input = HookInput::from_wire(input);
        tracing::debug!(callback_id = %id, event = %input.event(), "hook callback");
        let output = callback.call(input, tool_use_id).await?;
        Ok(Some(output.to_wire()))
    }
    .boxed()
}
