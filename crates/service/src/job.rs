//! The metrics of a running job (`silt run --follow --metrics ADDR`): what its committed
//! micro-batches read, dropped, rejected and wrote, and how far behind the stream it is, in
//! Prometheus' text format at `/metrics` (with `/health`), for a job that runs as a service.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::atomic::AtomicU64;

use crate::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

/// A job's metrics; the job runner updates them as each micro-batch commits.
#[derive(Clone, Debug)]
pub struct JobMetrics {
    /// The registry they are rendered from, with the endpoint's own request counts; its
    /// `rejected` counts the records rejected, by reason code (`bad_body`, ...).
    pub base: Metrics,
    pub batches: Counter,
    pub records_read: Counter,
    pub duplicates: Counter,
    pub late: Counter,
    pub rows_written: Family<TableLabels, Counter>,
    pub files_written: Counter,
    pub bytes_written: Counter,
    /// Small files (of closed hours, or of partitions without hours) merged into larger ones.
    pub files_compacted: Counter,
    pub source_retries: Counter,
    /// Seconds from a micro-batch's start to its commit.
    pub batch_seconds: Histogram,
    /// At the last commit: its time minus the arrival of the newest record it read; 0 once a
    /// following run finds nothing new.
    pub lag_seconds: Gauge<f64, AtomicU64>,
    /// When the last micro-batch was committed (seconds since the epoch; none is while the
    /// stream has nothing new and closed hours are compacted).
    pub last_commit_seconds: Gauge<f64, AtomicU64>,
}

impl JobMetrics {
    pub fn new() -> Self {
        let base = Metrics::new("silt_job");
        let m = Self {
            base,
            batches: Counter::default(),
            records_read: Counter::default(),
            duplicates: Counter::default(),
            late: Counter::default(),
            rows_written: Family::default(),
            files_written: Counter::default(),
            bytes_written: Counter::default(),
            files_compacted: Counter::default(),
            source_retries: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            lag_seconds: Gauge::default(),
            last_commit_seconds: Gauge::default(),
        };
        let b = &m.base;
        for (name, help, counter) in [
            ("batches", "Micro-batches committed", &m.batches),
            ("records_read", "Stream records read", &m.records_read),
            ("duplicates", "Repeated events dropped", &m.duplicates),
            ("late", "Events older than the dedup window", &m.late),
            ("files_written", "Parquet files written", &m.files_written),
            ("bytes_written", "Parquet bytes written", &m.bytes_written),
            (
                "files_compacted",
                "Small files (of closed hours, or of partitions without hours) merged into larger ones",
                &m.files_compacted,
            ),
            (
                "source_retries",
                "Throttled or failed source calls retried",
                &m.source_retries,
            ),
        ] {
            b.register(name, help, counter.clone());
        }
        b.register(
            "rows_written",
            "Rows written, by table",
            m.rows_written.clone(),
        );
        b.register(
            "batch_seconds",
            "Seconds from a micro-batch's start to its commit",
            m.batch_seconds.clone(),
        );
        b.register(
            "lag_seconds",
            "At the last commit, its time minus the arrival of the newest record read; 0 once the job finds nothing new",
            m.lag_seconds.clone(),
        );
        b.register(
            "last_commit_timestamp_seconds",
            "When the last micro-batch was committed (none is while the stream has nothing new and closed hours are compacted)",
            m.last_commit_seconds.clone(),
        );
        m
    }
}

impl Default for JobMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `/metrics` and `/health` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: JobMetrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let app = crate::metrics::with_health_and_metrics(axum::Router::new(), metrics.base);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
