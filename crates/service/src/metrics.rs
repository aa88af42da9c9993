//! Prometheus metrics shared by the services: requests by route and status, and latency.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// The metrics of one service.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub requests: Family<RouteLabels, Counter>,
    pub latency: Histogram,
    /// Events or schemas refused, by reason (gateway: `invalid`, `oversized`, ...).
    pub rejected: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(prefix: &str) -> Self {
        let mut registry = Registry::with_prefix(prefix);
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register("request_seconds", "HTTP request latency", latency.clone());
        registry.register("rejected", "Refused inputs by reason", rejected.clone());
        Self {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            latency,
            rejected,
        }
    }

    /// Registers another metric.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .expect("not poisoned")
            .register(name, help, metric);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.registry.lock().expect("not poisoned"),
        )
        .expect("writing to a String");
        out
    }
}

/// Middleware counting requests and timing them.
pub async fn track(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    m.latency.observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RouteLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// `GET /metrics`.
pub async fn metrics(State(m): State<Metrics>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

/// Adds what every service has: `/health`, `/openapi.json` (the given document), `/metrics`,
/// and the request counting and timing around every route.
pub fn with_operations(api: Router, doc: utoipa::openapi::OpenApi, metrics: Metrics) -> Router {
    let doc = serde_json::to_value(doc).expect("an OpenAPI document serialises");
    with_health_and_metrics(
        api.route(
            "/openapi.json",
            get(move || async move { Json(doc.clone()) }),
        ),
        metrics,
    )
}

/// Adds `/health` and `/metrics`, and the request counting and timing around every route.
pub fn with_health_and_metrics(api: Router, metrics: Metrics) -> Router {
    api.route("/health", get(|| async { "ok" }))
        .route("/metrics", get(self::metrics).with_state(metrics.clone()))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}
