//! Per-turn cost from the CLI's cumulative figures.
//!
//! `total_cost_usd` (and `modelUsage`) on a `result` frame are cumulative for the lifetime of
//! the CLI process, so summing them across the turns of one session over-counts. A
//! [`CostTracker`] turns them back into per-turn costs.

use super::result::ResultMessage;

/// Below this, a drop of the cumulative total is floating-point noise rather than a reset.
const EPSILON: f64 = 1e-9;

/// Turns the cumulative cost on `result` frames into the cost of each turn.
///
/// Feed it every `result` of one CLI process, in order. For each, [`observe`] returns that
/// turn's cost:
///
/// * the sum of `costUSD` in `model_usage_since_last_result`, when the CLI sends it (newer
///   CLIs);
/// * otherwise the growth of `total_cost_usd` since the previous observation. The first
///   observation counts from zero. If the total goes *down* (the CLI restarted its counters,
///   e.g. a new process or a `conversation_reset`), the new total is this turn's cost. The result
///   is never negative.
///
/// ```
/// use claude_conduit::message::{CostTracker, ResultMessage};
///
/// let mut tracker = CostTracker::new();
/// let mut r = ResultMessage::default();
/// r.total_cost_usd = Some(0.25);
/// assert_eq!(tracker.observe(&r), Some(0.25));
/// r.total_cost_usd = Some(0.75);
/// assert_eq!(tracker.observe(&r), Some(0.5));
/// assert_eq!(tracker.total(), 0.75);
/// ```
///
/// [`observe`]: CostTracker::observe
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostTracker {
    /// The last cumulative `total_cost_usd` seen.
    last_cumulative: Option<f64>,
    /// Sum of the per-turn costs returned so far.
    total: f64,
    /// Number of results that produced a cost.
    turns: u64,
}

impl CostTracker {
    /// A tracker for a fresh CLI process.
    pub fn new() -> Self {
        Self::default()
    }

    /// Account for one `result` and return the cost of its turn, or `None` when the frame
    /// carries no cost information at all.
    pub fn observe(&mut self, result: &ResultMessage) -> Option<f64> {
        let from_delta = result.cost_since_last_result();
        let from_total = result
            .total_cost_usd
            .filter(|c| c.is_finite())
            .map(|total| {
                let turn = match self.last_cumulative {
                    Some(prev) if total + EPSILON < prev => total, // counters restarted
                    Some(prev) => total - prev,
                    None => total,
                };
                self.last_cumulative = Some(total);
                turn
            });
        let turn = from_delta
            .filter(|c| c.is_finite())
            .or(from_total)?
            .max(0.0);
        self.total += turn;
        self.turns += 1;
        Some(turn)
    }

    /// Forget the last cumulative figure: the next result counts from zero. Call this when the
    /// CLI process is replaced.
    pub fn reset(&mut self) {
        self.last_cumulative = None;
    }

    /// The sum of all per-turn costs returned so far (survives resets).
    pub fn total(&self) -> f64 {
        self.total
    }

    /// How many results produced a cost.
    pub fn turns(&self) -> u64 {
        self.turns
    }

    /// The last cumulative `total_cost_usd` observed.
    pub fn last_cumulative(&self) -> Option<f64> {
        self.last_cumulative
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::message::ModelUsage;

    fn result(total: Option<f64>) -> ResultMessage {
        ResultMessage {
            total_cost_usd: total,
            ..ResultMessage::default()
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn differences_of_the_cumulative_total() {
        let mut t = CostTracker::new();
        assert!(close(t.observe(&result(Some(0.310715))), 0.310715));
        assert!(close(
            t.observe(&result(Some(0.386822))),
            0.386822 - 0.310715
        ));
        // No new spend: zero, not negative.
        assert!(close(t.observe(&result(Some(0.386822))), 0.0));
        assert!(close(Some(t.total()), 0.386822));
        assert_eq!(t.turns(), 3);
    }

    #[test]
    fn a_drop_means_the_counters_restarted() {
        let mut t = CostTracker::new();
        t.observe(&result(Some(1.0)));
        assert!(close(t.observe(&result(Some(0.2))), 0.2));
        assert!(close(t.observe(&result(Some(0.5))), 0.3));
        assert!(close(Some(t.total()), 1.5));
    }

    #[test]
    fn tiny_float_noise_is_not_a_reset() {
        let mut t = CostTracker::new();
        t.observe(&result(Some(0.3)));
        let turn = t.observe(&result(Some(0.3 - 1e-15)));
        assert!(close(turn, 0.0), "{turn:?}");
    }

    #[test]
    fn explicit_reset_counts_from_zero() {
        let mut t = CostTracker::new();
        t.observe(&result(Some(2.0)));
        t.reset();
        assert!(close(t.observe(&result(Some(2.5))), 2.5));
        assert_eq!(t.last_cumulative(), Some(2.5));
    }

    #[test]
    fn model_usage_since_last_result_wins() {
        let mut t = CostTracker::new();
        t.observe(&result(Some(1.0)));
        let mut r = result(Some(5.0));
        let mut m = BTreeMap::new();
        for (name, cost) in [("opus", 0.25), ("haiku", 0.05)] {
            m.insert(
                name.to_owned(),
                ModelUsage {
                    cost_usd: cost,
                    ..ModelUsage::default()
                },
            );
        }
        r.model_usage_since_last_result = Some(m);
        assert!(close(t.observe(&r), 0.30));
        // The cumulative figure is still tracked, for results without the per-turn map.
        assert!(close(t.observe(&result(Some(5.5))), 0.5));
    }

    #[test]
    fn no_cost_information() {
        let mut t = CostTracker::new();
        assert_eq!(t.observe(&result(None)), None);
        assert_eq!(t.observe(&result(Some(f64::NAN))), None);
        assert_eq!(t.turns(), 0);
        assert!(close(t.observe(&result(Some(0.1))), 0.1));
    }
}
