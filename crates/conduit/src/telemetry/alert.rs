//! Alert rules: a metric, a threshold and a duration. A rule fires once the condition has held
//! for its duration and resolves once it has been false for its resolve duration; in between
//! it fires once (no storms).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::collector::{MetricValue, Snapshot};

/// Which number of a metric a rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stat {
    /// Counters and gauges: the value, summed over the matching series; histograms: the count.
    #[default]
    Value,
    /// Per second since the previous snapshot (counters: events per second).
    Rate,
    /// A histogram's median (the largest over the matching series).
    P50,
    /// A histogram's 95th percentile.
    P95,
    /// A histogram's 99th percentile.
    P99,
}

/// Above or below the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Comparison {
    /// Fire while the value is greater than the threshold.
    #[default]
    Above,
    /// Fire while the value is less than the threshold.
    Below,
}

/// One rule. In the gateway's TOML file:
///
/// ```toml
/// [[alerts]]
/// name = "slow-turns"
/// metric = "conduit_turn_seconds"
/// stat = "p95"            # value (default) | rate | p50 | p95 | p99
/// above = 30.0            # or: below = …
/// for_secs = 60           # fire after 60 s above
/// resolve_secs = 120      # resolve after 120 s below (default: for_secs)
/// labels = { wire = "ws" } # optional: only these series
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AlertRule {
    /// Unique name (the `rule` label of `conduit_alerts_firing`).
    pub name: String,
    /// The metric's name.
    pub metric: String,
    /// Only the series with these labels (all of them); empty = every series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Which number of the metric.
    #[serde(default)]
    pub stat: Stat,
    /// Fire while greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fire while less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// How long the condition must hold before the rule fires, seconds.
    #[serde(default)]
    pub for_secs: u64,
    /// How long it must be false before the rule resolves, seconds (default: `for_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_secs: Option<u64>,
}

impl AlertRule {
    /// A rule firing when `metric` is above `threshold` for `duration` (and resolving after as
    /// long below).
    pub fn above(
        name: impl Into<String>,
        metric: impl Into<String>,
        threshold: f64,
        duration: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            metric: metric.into(),
            labels: BTreeMap::new(),
            stat: Stat::Value,
            above: Some(threshold),
            below: None,
            for_secs: duration.as_secs(),
            resolve_secs: None,
        }
    }
    /// A rule firing when `metric` is below `threshold` for `duration`.
    pub fn below(
        name: impl Into<String>,
        metric: impl Into<String>,
        threshold: f64,
        duration: Duration,
    ) -> Self {
        Self {
            above: None,
            below: Some(threshold),
            ..Self::above(name, metric, 0.0, duration)
        }
    }
    /// Compare this number of the metric.
    pub fn stat(mut self, stat: Stat) -> Self {
        self.stat = stat;
        self
    }
    /// Only series with this label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// Resolve after `d` below (default: the firing duration).
    pub fn resolve_after(mut self, d: Duration) -> Self {
        self.resolve_secs = Some(d.as_secs());
        self
    }
    /// Check the rule: a name, a metric, exactly one of `above`/`below`, finite.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.metric.trim().is_empty() {
            return Err("an alert rule needs a name and a metric".into());
        }
        match (self.above, self.below) {
            (Some(t), None) | (None, Some(t)) if t.is_finite() => Ok(()),
            (Some(_), Some(_)) | (None, None) => Err(format!(
                "alert rule {:?}: set exactly one of `above` and `below`",
                self.name
            )),
            _ => Err(format!(
                "alert rule {:?}: the threshold is not a number",
                self.name
            )),
        }
    }
    fn comparison(&self) -> (Comparison, f64) {
        match (self.above, self.below) {
            (_, Some(b)) => (Comparison::Below, b),
            (a, None) => (Comparison::Above, a.unwrap_or(f64::INFINITY)),
        }
    }
    fn value(&self, now: &Snapshot, previous: Option<&Snapshot>) -> Option<f64> {
        let labels: Vec<(String, String)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sum = |s: &Snapshot| -> Option<f64> {
            let mut out = None;
            for (id, v) in s.series(&self.metric) {
                if !id.has_labels(&labels) {
                    continue;
                }
                let x = match (self.stat, v) {
                    (Stat::P50, MetricValue::Histogram(h)) => h.p50,
                    (Stat::P95, MetricValue::Histogram(h)) => h.p95,
                    (Stat::P99, MetricValue::Histogram(h)) => h.p99,
                    (Stat::Value | Stat::Rate, v) => v.as_f64(),
                    _ => continue,
                };
                out = Some(match (self.stat, out) {
                    (Stat::P50 | Stat::P95 | Stat::P99, Some(o)) => f64::max(o, x),
                    (_, o) => o.unwrap_or(0.0) + x,
                });
            }
            out
        };
        let v = sum(now)?;
        if self.stat != Stat::Rate {
            return Some(v);
        }
        let prev = previous?;
        let secs = now.at.saturating_duration_since(prev.at).as_secs_f64();
        (secs > 0.0).then(|| (v - sum(prev).unwrap_or(0.0)) / secs)
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertState {
    /// The condition held for the rule's duration.
    Firing,
    /// It was false for the resolve duration.
    Resolved,
}

/// An alert firing or resolving, as callbacks and the event bus see it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: String,
    /// The metric.
    pub metric: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// The value at this snapshot.
    pub value: f64,
    /// The threshold.
    pub threshold: f64,
    /// When (the snapshot's time).
    pub at: Instant,
}

#[derive(Debug, Default)]
struct RuleState {
    firing: bool,
    /// Since when the condition has been the opposite of `firing` (the state is changing).
    changing_since: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct AlertEngine {
    rules: Vec<(AlertRule, RuleState)>,
}

impl AlertEngine {
    pub(crate) fn add(&mut self, rule: AlertRule) {
        self.rules.retain(|(r, _)| r.name != rule.name);
        self.rules.push((rule, RuleState::default()));
    }
    pub(crate) fn rules(&self) -> Vec<AlertRule> {
        self.rules.iter().map(|(r, _)| r.clone()).collect()
    }
    pub(crate) fn firing(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|(_, s)| s.firing)
            .map(|(r, _)| r.name.clone())
            .collect()
    }
    /// Evaluate every rule against `now`; the state changes.
    pub(crate) fn evaluate(
        &mut self,
        now: &Snapshot,
        previous: Option<&Snapshot>,
    ) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        for (rule, state) in &mut self.rules {
            let (cmp, threshold) = rule.comparison();
            // A metric not recorded yet counts as "condition false" (nothing to alert on).
            let value = rule.value(now, previous);
            let holds = value.is_some_and(|v| match cmp {
                Comparison::Above => v > threshold,
                Comparison::Below => v < threshold,
            });
            if holds == state.firing {
                state.changing_since = None;
                continue;
            }
            let since = *state.changing_since.get_or_insert(now.at);
            let need = Duration::from_secs(if state.firing {
                rule.resolve_secs.unwrap_or(rule.for_secs)
            } else {
                rule.for_secs
            });
            if now.at.saturating_duration_since(since) >= need {
                state.firing = holds;
                state.changing_since = None;
                out.push(AlertEvent {
                    rule: rule.name.clone(),
                    metric: rule.metric.clone(),
                    state: if holds {
                        AlertState::Firing
                    } else {
                        AlertState::Resolved
                    },
                    value: value.unwrap_or(0.0),
                    threshold,
                    at: now.at,
                });
            }
        }
        out
    }
}
