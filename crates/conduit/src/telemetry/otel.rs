//! OpenTelemetry export (feature `otel`).
