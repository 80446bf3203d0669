//! [`MetricsCollector`]: a `metrics` recorder whose values are read back from code, snapshotted
//! on an interval into a bounded history, with percentiles and alert rules.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use metrics_util::storage::Summary;
use tokio::time::Instant;

use super::alert::{AlertEngine, AlertEvent, AlertRule};
use crate::events::EventBus;

/// How a collector keeps its history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CollectorConfig {
    /// Snapshots kept (oldest dropped first). Default 1000.
    pub history: usize,
    /// Interval of [`MetricsCollector::spawn`]. Default 10 s.
    pub interval: Duration,
    /// Also sample `/proc` (the `conduit_process_*` gauges) at each snapshot. Default true.
    pub process: bool,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            history: 1000,
            interval: Duration::from_secs(10),
            process: true,
        }
    }
}

impl CollectorConfig {
    /// Keep `n` snapshots (at least 1).
    pub fn history(mut self, n: usize) -> Self {
        self.history = n.max(1);
        self
    }
    /// Snapshot every `d` (at least 1 ms).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d.max(Duration::from_millis(1));
        self
    }
    /// Sample `/proc` at each snapshot or not.
    pub fn process(mut self, on: bool) -> Self {
        self.process = on;
        self
    }
}

/// A metric's name and labels, as the exposition writes them:
/// `conduit_transport_frames_total{direction="in",wire="ws"}` (labels sorted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricId {
    /// The metric name.
    pub name: String,
    /// The labels, sorted by key.
    pub labels: Vec<(String, String)>,
}

impl MetricId {
    fn of(key: &Key) -> Self {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        Self {
            name: key.name().to_owned(),
            labels,
        }
    }
    /// Whether this series has every `(key, value)` of `labels`.
    pub fn has_labels(&self, labels: &[(String, String)]) -> bool {
        labels.iter().all(|l| self.labels.contains(l))
    }
}

impl std::fmt::Display for MetricId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// The distribution of a histogram since the collector started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct HistogramSummary {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Median (DDSketch estimate, 1 % relative error).
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

/// One metric's value in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum MetricValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram's distribution so far.
    Histogram(HistogramSummary),
}

impl MetricValue {
    /// The value as one number: the total, the gauge, or a histogram's count.
    pub fn as_f64(&self) -> f64 {
        match self {
            MetricValue::Counter(n) => *n as f64,
            MetricValue::Gauge(g) => *g,
            MetricValue::Histogram(h) => h.count as f64,
        }
    }
}

/// Every metric's value at one moment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// When (monotonic; tokio's clock, so paused time in tests moves it).
    pub at: Instant,
    /// When (wall clock).
    pub wall: SystemTime,
    /// The values, by series.
    pub metrics: BTreeMap<MetricId, MetricValue>,
}

impl Snapshot {
    /// The series of `name` (every label set).
    pub fn series<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a MetricId, &'a MetricValue)> + 'a {
        self.metrics.iter().filter(move |(id, _)| id.name == name)
    }
    /// The sum of a counter or gauge over the series of `name` that carry `labels`
    /// (`None` if there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut found = None;
        for (id, v) in self.series(name) {
            if id.has_labels(&want) {
                *found.get_or_insert(0.0) += v.as_f64();
            }
        }
        found
    }
    /// The histogram of `name` with exactly `labels` (sorted or not).
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<HistogramSummary> {
        self.series(name).find_map(|(id, v)| match v {
            MetricValue::Histogram(h)
                if id.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| id.labels.iter().any(|(a, b)| a == k && b == v)) =>
            {
                Some(*h)
            }
            _ => None,
        })
    }
}

type AlertCallback =
    Arc<dyn Fn(AlertEvent) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

struct Inner {
    registry: Registry<Key, AtomicStorage>,
    summaries: Mutex<HashMap<Key, Summary>>,
    history: Mutex<VecDeque<Arc<Snapshot>>>,
    config: CollectorConfig,
    alerts: Mutex<AlertEngine>,
    callbacks: Mutex<Vec<AlertCallback>>,
    buses: Mutex<Vec<EventBus>>,
}

/// A `metrics` recorder that keeps every value readable from code: snapshots into a bounded
/// history (default 1000), p50/p95/p99 of histograms, alert rules evaluated at each snapshot.
///
/// Cloning is cheap (shared state). Install it as the process's recorder with
/// [`Telemetry::builder`](super::Telemetry::builder) (alone or next to the Prometheus
/// exposition), or use [`MetricsCollector::recorder`] with `metrics::with_local_recorder`.
///
/// ```
/// use claude_conduit::telemetry::{CollectorConfig, MetricsCollector};
///
/// let collector = MetricsCollector::new(CollectorConfig::default().process(false));
/// metrics::with_local_recorder(&collector.recorder(), || {
///     metrics::counter!("conduit_turns_total").increment(3);
///     for ms in 1..=100 {
///         metrics::histogram!("conduit_turn_seconds").record(f64::from(ms) / 1000.0);
///     }
/// });
/// let snap = collector.snapshot();
/// assert_eq!(snap.sum("conduit_turns_total", &[]), Some(3.0));
/// let turn = snap.histogram("conduit_turn_seconds", &[]).unwrap();
/// assert_eq!(turn.count, 100);
/// assert!((turn.p50 - 0.050).abs() < 0.002 && (turn.p99 - 0.099).abs() < 0.002);
/// assert_eq!(collector.latest().unwrap().at, snap.at);
/// ```
#[derive(Clone)]
pub struct MetricsCollector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MetricsCollector {
    /// A collector with an empty history.
    pub fn new(config: CollectorConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Registry::atomic(),
                summaries: Mutex::new(HashMap::new()),
                history: Mutex::new(VecDeque::new()),
                config,
                alerts: Mutex::new(AlertEngine::default()),
                callbacks: Mutex::new(Vec::new()),
                buses: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The recorder that feeds this collector.
    pub fn recorder(&self) -> CollectorRecorder {
        CollectorRecorder {
            collector: self.clone(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CollectorConfig {
        &self.inner.config
    }

    /// Take a snapshot now: read every series, add it to the history (dropping the oldest past
    /// the bound), evaluate the alert rules, and return it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        if self.inner.config.process {
            self.set_gauges(super::process::record);
        }
        let mut metrics = BTreeMap::new();
        self.inner.registry.visit_counters(|key, c| {
            metrics.insert(
                MetricId::of(key),
                MetricValue::Counter(c.load(Ordering::Relaxed)),
            );
        });
        self.inner.registry.visit_gauges(|key, g| {
            let v = f64::from_bits(g.load(Ordering::Relaxed));
            metrics.insert(MetricId::of(key), MetricValue::Gauge(v));
        });
        {
            let mut summaries = lock(&self.inner.summaries);
            self.inner.registry.visit_histograms(|key, bucket| {
                let s = summaries
                    .entry(key.clone())
                    .or_insert_with(Summary::with_defaults);
                bucket.clear_with(|values| values.iter().for_each(|v| s.add(*v)));
                let q = |x| s.quantile(x).unwrap_or(0.0);
                let h = HistogramSummary {
                    count: s.count() as u64,
                    sum: s.sum().unwrap_or(0.0),
                    p50: q(0.5),
                    p95: q(0.95),
                    p99: q(0.99),
                    max: if s.is_empty() { 0.0 } else { s.max() },
                };
                metrics.insert(MetricId::of(key), MetricValue::Histogram(h));
            });
        }
        let mut snap = Snapshot {
            at: Instant::now(),
            wall: SystemTime::now(),
            metrics,
        };
        let previous = lock(&self.inner.history).back().cloned();
        let events = lock(&self.inner.alerts).evaluate(&snap, previous.as_deref());
        for e in events {
            // The snapshot shows the state after this evaluation.
            let id = MetricId {
                name: super::names::ALERTS_FIRING.to_owned(),
                labels: vec![("rule".to_owned(), e.rule.clone())],
            };
            let firing = matches!(e.state, super::AlertState::Firing);
            snap.metrics
                .insert(id, MetricValue::Gauge(if firing { 1.0 } else { 0.0 }));
            self.deliver(e);
        }
        let snap = Arc::new(snap);
        let mut h = lock(&self.inner.history);
        h.push_back(snap.clone());
        while h.len() > self.inner.config.history {
            h.pop_front();
        }
        drop(h);
        snap
    }

    fn deliver(&self, event: AlertEvent) {
        let firing = matches!(event.state, super::AlertState::Firing);
        self.set_gauges(|| {
            metrics::gauge!(super::names::ALERTS_FIRING, "rule" => event.rule.clone())
                .set(if firing { 1.0 } else { 0.0 });
        });
        match event.state {
            super::AlertState::Firing => {
                tracing::warn!(target: "claude_conduit::alert", rule = %event.rule, value = event.value, "alert firing")
            }
            super::AlertState::Resolved => {
                tracing::info!(target: "claude_conduit::alert", rule = %event.rule, value = event.value, "alert resolved")
            }
        }
        let callbacks = lock(&self.inner.callbacks).clone();
        let buses = lock(&self.inner.buses).clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(target: "claude_conduit::alert", "no tokio runtime: alert callbacks not run");
            return;
        };
        for cb in callbacks {
            rt.spawn(cb(event.clone()));
        }
        for bus in buses {
            let e = event.clone();
            rt.spawn(async move { bus.emit(crate::events::Event::Alert(e)).await });
        }
    }

    /// Run `set` (gauge sets only: they are idempotent) against the installed recorder and
    /// against this collector, which may or may not be part of it.
    fn set_gauges(&self, set: impl Fn()) {
        set();
        metrics::with_local_recorder(&self.recorder(), &set);
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        lock(&self.inner.history).back().cloned()
    }

    /// The snapshots taken within `range` (of [`Snapshot::at`]), oldest first. `..` is the
    /// whole history.
    pub fn history(&self, range: impl RangeBounds<Instant>) -> Vec<Arc<Snapshot>> {
        let inside = |at: &Instant| {
            (match range.start_bound() {
                Bound::Included(s) => at >= s,
                Bound::Excluded(s) => at > s,
                Bound::Unbounded => true,
            }) && (match range.end_bound() {
                Bound::Included(e) => at <= e,
                Bound::Excluded(e) => at < e,
                Bound::Unbounded => true,
            })
        };
        lock(&self.inner.history)
            .iter()
            .filter(|s| inside(&s.at))
            .cloned()
            .collect()
    }

    /// Add an alert rule (a rule with the same name replaces the old one and its state).
    pub fn add_rule(&self, rule: AlertRule) {
        lock(&self.inner.alerts).add(rule);
    }

    /// The rules.
    pub fn rules(&self) -> Vec<AlertRule> {
        lock(&self.inner.alerts).rules()
    }

    /// The names of the rules firing now.
    pub fn firing(&self) -> Vec<String> {
        lock(&self.inner.alerts).firing()
    }

    /// Run `callback` (as its own task) for every alert that fires or resolves.
    pub fn on_alert<F, Fut>(&self, callback: F)
    where
        F: Fn(AlertEvent) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        lock(&self.inner.callbacks).push(Arc::new(move |e| Box::pin(callback(e))));
    }

    /// Emit [`Event::Alert`](crate::events::Event::Alert) on `bus` for every alert that fires
    /// or resolves.
    pub fn attach_bus(&self, bus: &EventBus) {
        lock(&self.inner.buses).push(bus.clone());
    }

    /// Snapshot every [`CollectorConfig::interval`] until the returned task is aborted (or the
    /// runtime ends). The first snapshot is taken one interval from now.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run())
    }

    /// Snapshot every interval on a thread of its own (with its own single-threaded runtime,
    /// on which alert callbacks run) for the life of the process: for a process-wide collector
    /// that must not depend on one runtime staying alive.
    pub fn spawn_thread(&self) -> std::io::Result<()> {
        let me = self.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        std::thread::Builder::new()
            .name("conduit-metrics".into())
            .spawn(move || runtime.block_on(me.run()))
            .map(drop)
    }

    async fn run(self) {
        let period = self.inner.config.interval;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.snapshot();
        }
    }
}

/// The [`Recorder`] of a [`MetricsCollector`].
#[derive(Debug, Clone)]
pub struct CollectorRecorder {
    collector: MetricsCollector,
}

impl Recorder for CollectorRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let r = &self.collector.inner.registry;
        r.get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let r = &self.collector.inner.registry;
        r.get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let r = &self.collector.inner.registry;
        r.get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}
