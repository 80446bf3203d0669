//! One recorder per process: the collector, the Prometheus exposition, or both (fanned out).

use std::sync::OnceLock;

use super::collector::{CollectorConfig, MetricsCollector};

/// What [`TelemetryBuilder::install`] installed.
#[derive(Debug, Clone)]
pub struct Telemetry {
    collector: Option<MetricsCollector>,
    #[cfg(feature = "prometheus")]
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// Another recorder (not installed by this SDK) is the process's recorder already.
    #[error("another metrics recorder is installed in this process")]
    OtherRecorder,
    /// Nothing to install (neither the collector nor Prometheus was asked for).
    #[error("nothing to install: ask for the collector or the Prometheus exposition")]
    Nothing,
}

/// Chooses what to install. See [`Telemetry::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TelemetryBuilder {
    collector: Option<CollectorConfig>,
    prometheus: bool,
}

static INSTALLED: OnceLock<Telemetry> = OnceLock::new();

impl Telemetry {
    /// Choose what to install: `.collector(config)`, `.prometheus()`, then `.install()`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use claude_conduit::telemetry::{AlertRule, CollectorConfig, Telemetry};
    /// let telemetry = Telemetry::builder().collector(CollectorConfig::default()).install()?;
    /// let collector = telemetry.collector().unwrap();
    /// collector.add_rule(AlertRule::above("busy", "conduit_process_children", 8.0, std::time::Duration::from_secs(30)));
    /// collector.on_alert(|e| async move { eprintln!("{} {:?}", e.rule, e.state) });
    /// collector.spawn();
    /// # Ok(()) }
    /// ```
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// What this process installed, if it did.
    pub fn installed() -> Option<&'static Telemetry> {
        INSTALLED.get()
    }

    /// The collector, when installed.
    pub fn collector(&self) -> Option<&MetricsCollector> {
        self.collector.as_ref()
    }

    /// The Prometheus text exposition of every metric (`None` when it was not installed).
    pub fn render_prometheus(&self) -> Option<String> {
        #[cfg(feature = "prometheus")]
        {
            self.prometheus.as_ref().map(|h| h.render())
        }
        #[cfg(not(feature = "prometheus"))]
        {
            None
        }
    }
}

impl TelemetryBuilder {
    /// Install a [`MetricsCollector`] with `config`.
    pub fn collector(mut self, config: CollectorConfig) -> Self {
        self.collector = Some(config);
        self
    }

    /// Install the Prometheus exposition ([`Telemetry::render_prometheus`]).
    #[cfg(feature = "prometheus")]
    pub fn prometheus(mut self) -> Self {
        self.prometheus = true;
        self
    }

    /// Install the recorder as the process's global one. Once per process: a second call
    /// returns what the first installed (whatever it asked for), so libraries (the gateway)
    /// and applications can both call it. Also registers every metric's description.
    pub fn install(self) -> Result<&'static Telemetry, InstallError> {
        if let Some(t) = INSTALLED.get() {
            return Ok(t);
        }
        if self.collector.is_none() && !self.prometheus {
            return Err(InstallError::Nothing);
        }
        let collector = self.collector.map(MetricsCollector::new);
        let mut fanout = metrics_util::layers::FanoutBuilder::default();
        if let Some(c) = &collector {
            fanout = fanout.add_recorder(c.recorder());
        }
        #[cfg(feature = "prometheus")]
        let prometheus = if self.prometheus {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            fanout = fanout.add_recorder(recorder);
            Some(handle)
        } else {
            None
        };
        let telemetry = Telemetry {
            collector,
            #[cfg(feature = "prometheus")]
            prometheus,
        };
        // Racing installs: the loser finds the winner's value.
        let mut ours = false;
        let t = INSTALLED.get_or_init(|| {
            ours = true;
            telemetry
        });
        if !ours {
            return Ok(t);
        }
        if metrics::set_global_recorder(fanout.build()).is_err() {
            return Err(InstallError::OtherRecorder);
        }
        super::names::describe();
        #[cfg(feature = "prometheus")]
        if let Some(h) = t.prometheus.clone() {
            // Histograms buffer values until upkeep folds them in: bound that buffer even if
            // nobody scrapes.
            let spawned = std::thread::Builder::new()
                .name("conduit-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        h.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("metrics upkeep thread not started: {e}");
            }
        }
        Ok(t)
    }
}
