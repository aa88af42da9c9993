//! `silt gateway serve`: SPEC 5's "dumb waiter" (the "Gatekeeper"), which checks every event
//! against its subject's schema and puts only good requests on the stream.
//!
//! | method and path | takes | answers |
//! |---|---|---|
//! | `PUT /streams/{streamId}/events/{guid}` | one event: a JSON object, or an envelope (SPEC 2) | 202 `{accepted: 1}` |
//! | `POST /streams/{streamId}/events` | a JSON array (or one object), or an Avro object container file | 202 `{accepted: n}` |
//!
//! Refusals: 400 `{error, errors: [{index, path, reason}]}` when any event is invalid (nothing
//! of the request is put); 404 for a stream with no registered schema; 413 for an event over
//! 1 MiB (or a body over the request limit); 503 with `Retry-After` when the in-flight buffer is full or the stream has not taken
//! the events in time; 429 with `Retry-After` when the stream throttles after its retries.
//!
//! The request's format is told by its first bytes, whatever its `Content-Type`: `Obj\x01` is an
//! object container file, `0x81` an envelope, anything else JSON. A body sent compressed says
//! so in `Content-Encoding` (`gzip` or `zstd`), is read decompressed, and is held to the request
//! limit decompressed; another encoding is refused with 415.
//!
//! One path for every format: each event becomes an Avro body (JSON through
//! [`JsonEncoder`]), the body is checked with the writer's [`BodyCheck`] (which also pulls out
//! the uuid), the uuid must be a version-1 TimeUuid, and the body goes in an envelope with
//! the writer's fingerprint. Only when every event passed is the request handed to the sink,
//! as one keyed put (partition key: the uuid). The answer waits for the sink; a bounded buffer
//! of events in flight turns a stalled stream into quick 503s instead of piling up memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use silt_ingest::Sink;
use silt_registry::{CachedRegistry, SchemaRegistry};
use silt_wire::json::JsonEncoder;
use silt_wire::{ocf, timeuuid, write_envelope, BodyCheck, Fingerprint, Framing, Schema};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use utoipa::{OpenApi, ToSchema};

use crate::metrics::{self, Metrics, ReasonLabels};

/// Largest event (envelope plus partition key), as Kinesis takes it.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// How the gateway behaves under load.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Events accepted into the gateway and not yet taken by the stream, at most.
    pub buffer_events: usize,
    /// How long a request waits for the stream before it is answered 503.
    pub put_timeout: Duration,
    /// How long a subject's latest schema is trusted before it is asked for again.
    pub schema_refresh: Duration,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// The `Retry-After` given with 429 and 503, in seconds.
    pub retry_after_secs: u64,
    /// How far ahead of the gateway's clock an event's time (its TimeUuid's) may be: a
    /// producer whose clock is further ahead is refused (jobs would reject its records as
    /// `future_event_time` anyway, by the same default).
    pub max_future: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            buffer_events: 200_000,
            put_timeout: Duration::from_secs(10),
            schema_refresh: Duration::from_secs(2),
            max_request_bytes: 64 << 20,
            retry_after_secs: 1,
            max_future: silt_ingest::DEFAULT_MAX_FUTURE,
        }
    }
}

/// Where each stream's events go.
pub trait SinkProvider: Send + Sync + 'static {
    /// The sink for `stream_id` (made on first use).
    fn sink(&self, stream_id: &str) -> Result<Arc<dyn Sink>, String>;
    /// For the start-up line.
    fn describe(&self) -> String;
}

/// `file://DIR`: one file stream per streamId, in `DIR/{streamId}/`, synced before 202.
#[derive(Debug)]
pub struct FileSinks {
    dir: std::path::PathBuf,
    shards: usize,
    sync: bool,
    open: Mutex<HashMap<String, Arc<dyn Sink>>>,
}

impl FileSinks {
    pub fn new(dir: impl Into<std::path::PathBuf>, shards: usize) -> Self {
        Self {
            dir: dir.into(),
            shards: shards.max(1),
            sync: true,
            open: Default::default(),
        }
    }

    /// Whether each put is `fsync`ed before it is acknowledged (on by default).
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }
}

impl SinkProvider for FileSinks {
    fn sink(&self, stream_id: &str) -> Result<Arc<dyn Sink>, String> {
        let mut open = self.open.lock().expect("not poisoned");
        if let Some(s) = open.get(stream_id) {
            return Ok(s.clone());
        }
        let dir = self.dir.join(stream_id);
        let exists = dir.is_dir();
        let stream = if exists {
            silt_ingest::FileStream::open(&dir)
        } else {
            silt_ingest::FileStream::create(&dir, self.shards)
        }
        .map_err(|e| e.to_string())?
        .with_sync(self.sync);
        let sink: Arc<dyn Sink> = Arc::new(stream);
        open.insert(stream_id.to_string(), sink.clone());
        Ok(sink)
    }

    fn describe(&self) -> String {
        format!("file streams in {}", self.dir.display())
    }
}

/// `kinesis:` (one Kinesis stream per streamId, named as it) or `kinesis://NAME` (every
/// streamId into one stream).
#[derive(Debug)]
pub struct KinesisSinks {
    client: aws_sdk_kinesis::Client,
    one: Option<String>,
    open: Mutex<HashMap<String, Arc<dyn Sink>>>,
}

impl KinesisSinks {
    pub fn new(client: aws_sdk_kinesis::Client, one_stream: Option<String>) -> Self {
        Self {
            client,
            one: one_stream,
            open: Default::default(),
        }
    }
}

impl SinkProvider for KinesisSinks {
    fn sink(&self, stream_id: &str) -> Result<Arc<dyn Sink>, String> {
        let name = self.one.as_deref().unwrap_or(stream_id);
        let mut open = self.open.lock().expect("not poisoned");
        Ok(open
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(silt_kinesis::KinesisSink::new(self.client.clone(), name)) as Arc<dyn Sink>
            })
            .clone())
    }

    fn describe(&self) -> String {
        match &self.one {
            Some(n) => format!("Kinesis stream `{n}` (every streamId)"),
            None => "one Kinesis stream per streamId".into(),
        }
    }
}

/// 202: every event of the request is on the stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedBody {
    pub accepted: u64,
}

/// One reason an event of a request was refused: an event wrong in several fields has one
/// entry per field, listed together.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EventError {
    /// The event's position in the request (0 for a single event).
    pub index: usize,
    /// JSON pointer to the field (`/productId`), or empty for the event as a whole.
    pub path: String,
    pub reason: String,
}

/// An error answer; `errors` lists every refused event with each of its wrong fields (400, 413).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GatewayErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<EventError>,
}

/// Totals for the summary at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Events taken by the stream.
    pub accepted: u64,
    /// Events refused (400, 404, 413).
    pub rejected: u64,
    /// Requests answered 429 or 503.
    pub throttled: u64,
    /// Records or calls the sink put again.
    pub retries: u64,
}

/// A writer schema compiled for checking.
struct Writer {
    schema: Arc<Schema>,
    check: BodyCheck,
    /// Why no event of this schema can be taken, if none can ([`Schema::not_an_event`]).
    not_an_event: Option<(String, String)>,
}

#[derive(Clone)]
struct GatewayMetrics {
    base: Metrics,
    accepted: Counter,
    /// Events refused, all reasons (the family counts them by reason).
    rejected_total: Counter,
    /// Requests answered 429 or 503, all reasons.
    throttled_total: Counter,
    throttled: Family<ReasonLabels, Counter>,
    retries: Counter,
    in_flight: Gauge,
}

struct Inner {
    registry: CachedRegistry<Arc<dyn SchemaRegistry>>,
    sinks: Arc<dyn SinkProvider>,
    options: GatewayOptions,
    buffer: Arc<Semaphore>,
    writers: Mutex<HashMap<Fingerprint, Arc<Writer>>>,
    tasks: TaskTracker,
    metrics: GatewayMetrics,
    /// When the stream's failures were last told on stderr, and how many came since.
    warned: Mutex<WarnLimit>,
}

/// The gateway: build it, take its [`Gateway::router`], serve, then [`Gateway::drain`].
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("sinks", &self.inner.sinks.describe())
            .field("options", &self.inner.options)
            .finish()
    }
}

/// A refusal before anything is put.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: String,
    errors: Vec<EventError>,
}

impl Refusal {
    fn one(status: StatusCode, index: usize, path: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Refusal {
            status,
            error: reason.clone(),
            errors: vec![EventError {
                index,
                path: path.into(),
                reason,
            }],
        }
    }
}

/// How many events `errors` refuse (an event may be refused for several fields; its
/// refusals are listed together, in event order).
fn refused_events(errors: &[EventError]) -> usize {
    errors
        .iter()
        .enumerate()
        .filter(|(k, e)| *k == 0 || errors[k - 1].index != e.index)
        .count()
}

/// Events ready for the stream: (partition key, envelope).
type Ready = Vec<(String, Vec<u8>)>;

impl Gateway {
    pub fn new(
        registry: Arc<dyn SchemaRegistry>,
        sinks: Arc<dyn SinkProvider>,
        options: GatewayOptions,
    ) -> Self {
        let base = Metrics::new("silt_gateway");
        let metrics = GatewayMetrics {
            accepted: Counter::default(),
            rejected_total: Counter::default(),
            throttled_total: Counter::default(),
            throttled: Family::default(),
            retries: Counter::default(),
            in_flight: Gauge::default(),
            base,
        };
        metrics.base.register(
            "accepted_events",
            "Events taken by the stream",
            metrics.accepted.clone(),
        );
        metrics.base.register(
            "throttled_requests",
            "Requests answered 429 or 503, by reason",
            metrics.throttled.clone(),
        );
        metrics.base.register(
            "put_retries",
            "Records or calls the sink put again",
            metrics.retries.clone(),
        );
        metrics.base.register(
            "in_flight_events",
            "Events accepted and not yet taken by the stream",
            metrics.in_flight.clone(),
        );
        let registry = CachedRegistry::new(registry).with_latest_ttl(options.schema_refresh);
        Self {
            inner: Arc::new(Inner {
                registry,
                sinks,
                buffer: Arc::new(Semaphore::new(options.buffer_events)),
                options,
                writers: Default::default(),
                tasks: TaskTracker::new(),
                metrics,
                warned: Mutex::new(WarnLimit::default()),
            }),
        }
    }

    /// The service's routes.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/streams/{streamId}/events", post(post_events))
            .route("/streams/{streamId}/events/{guid}", put(put_event))
            .with_state(self.clone())
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route", vec![]) })
            .method_not_allowed_fallback(|method: Method| async move {
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not allowed here"),
                    vec![],
                )
            })
            .layer(DefaultBodyLimit::max(self.inner.options.max_request_bytes));
        metrics::with_operations(api, openapi(), self.inner.metrics.base.clone())
    }

    /// What the gateway has done so far.
    pub fn stats(&self) -> GatewayStats {
        let m = &self.inner.metrics;
        GatewayStats {
            accepted: m.accepted.get(),
            rejected: m.rejected_total.get(),
            throttled: m.throttled_total.get(),
            retries: m.retries.get(),
        }
    }

    /// Waits until every put the gateway started has ended (taken or failed).
    pub async fn drain(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    async fn writer(&self, subject: &str, fp: &Fingerprint) -> Result<Arc<Writer>, String> {
        if let Some(w) = self.inner.writers.lock().expect("not poisoned").get(fp) {
            return Ok(w.clone());
        }
        let schema = self
            .inner
            .registry
            .schema(subject, fp)
            .await
            .map_err(|e| e.to_string())?;
        let w = Arc::new(Writer {
            check: BodyCheck::strict(&schema),
            not_an_event: schema.not_an_event(),
            schema,
        });
        self.inner
            .writers
            .lock()
            .expect("not poisoned")
            .insert(*fp, w.clone());
        Ok(w)
    }

    async fn latest(&self, stream_id: &str) -> Result<Arc<Writer>, Refusal> {
        // A subject is an Avro full name; anything else (a `/`, `..`) names no stream and
        // must not reach the sink's folder layout.
        let valid = !stream_id.is_empty()
            && stream_id.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !valid {
            return Err(Refusal {
                status: StatusCode::NOT_FOUND,
                error: format!("unknown stream {stream_id:?}: not a subject name"),
                errors: vec![],
            });
        }
        let schema = match self.inner.registry.latest(stream_id).await {
            Ok(s) => s,
            Err(silt_registry::Error::NotFound { .. }) => {
                return Err(Refusal {
                    status: StatusCode::NOT_FOUND,
                    error: format!(
                        "unknown stream `{stream_id}`: no schema is registered under that subject"
                    ),
                    errors: vec![],
                })
            }
            Err(e) => {
                return Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    error: format!("the schema registry did not answer: {e}"),
                    errors: vec![],
                })
            }
        };
        let w = self
            .writer(stream_id, &schema.fingerprint())
            .await
            .map_err(|e| Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: format!("the schema registry did not answer: {e}"),
                errors: vec![],
            })?;
        if let Some((path, reason)) = &w.not_an_event {
            return Err(Refusal::one(
                StatusCode::BAD_REQUEST,
                0,
                path,
                format!("the latest schema of `{stream_id}` cannot carry events (registered before the registry refused such schemas): {reason}"),
            ));
        }
        Ok(w)
    }

    /// Turns a request body into envelopes, or says every way in which it is wrong.
    async fn prepare(
        &self,
        stream_id: &str,
        body: &[u8],
        guid: Option<&str>,
    ) -> Result<Ready, Refusal> {
        let latest = self.latest(stream_id).await?;
        let mut ready = Vec::new();
        let mut errors = Vec::new();
        let mut oversized = false;
        let expected_guid = match guid {
            Some(g) => match timeuuid::parse_str(g) {
                Ok(u) => Some(u),
                Err(_) => {
                    return Err(Refusal::one(
                        StatusCode::BAD_REQUEST,
                        0,
                        "",
                        format!("the path's guid {g:?} is not a UUID"),
                    ))
                }
            },
            None => None,
        };
        let latest_allowed_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(i64::MAX, |d| {
                (d + self.inner.options.max_future).as_micros() as i64
            });
        let mut finish = |index: usize,
                          fp: &Fingerprint,
                          body: &[u8],
                          uuid: Option<[u8; 16]>,
                          errors: &mut Vec<EventError>| {
            let refuse = |path: &str, reason: String| EventError {
                index,
                path: path.into(),
                reason,
            };
            let Some(uuid) = uuid else {
                errors.push(refuse("/uuid", "the event has no uuid".into()));
                return;
            };
            let version = timeuuid::version(&uuid);
            if version != 1 {
                errors.push(refuse(
                    "/uuid",
                    format!(
                        "{} is a version-{version} UUID; events need a version-1 TimeUuid (its time is the event time)",
                        timeuuid::to_string(&uuid)
                    ),
                ));
                return;
            }
            if let Some(us) = timeuuid::unix_micros(&uuid).filter(|us| *us > latest_allowed_us) {
                errors.push(refuse(
                    "/uuid",
                    format!(
                        "the event time of uuid {} is {}, more than {} ahead of the gateway's clock: the producer's clock is wrong",
                        timeuuid::to_string(&uuid),
                        silt_ingest::micros_text(us),
                        humantime::format_duration(self.inner.options.max_future)
                    ),
                ));
                return;
            }
            if let Some(g) = expected_guid {
                if g != uuid {
                    errors.push(refuse(
                        "/uuid",
                        format!(
                            "uuid {} does not equal the path's guid {}",
                            timeuuid::to_string(&uuid),
                            timeuuid::to_string(&g)
                        ),
                    ));
                    return;
                }
            }
            let key = timeuuid::to_string(&uuid);
            let size = silt_wire::ENVELOPE_PREFIX_LEN + body.len() + key.len();
            if size > MAX_EVENT_BYTES {
                oversized = true;
                errors.push(refuse(
                    "",
                    format!("the event is {size} bytes; the limit is {MAX_EVENT_BYTES} (1 MiB)"),
                ));
                return;
            }
            let mut record = Vec::with_capacity(silt_wire::ENVELOPE_PREFIX_LEN + body.len());
            write_envelope(fp, body, &mut record);
            ready.push((key, record));
        };

        if ocf::is_container(body) {
            if guid.is_some() {
                return Err(Refusal::one(
                    StatusCode::BAD_REQUEST,
                    0,
                    "",
                    "PUT takes one event; POST a container file to /streams/{streamId}/events",
                ));
            }
            // The request limit holds for what the blocks decompress to, as for a
            // compressed body.
            let file = ocf::read(body, self.inner.options.max_request_bytes).map_err(|e| {
                let (status, index, reason) = match &e {
                    silt_wire::Error::BadContainer { record, .. } => {
                        (StatusCode::BAD_REQUEST, record.unwrap_or(0), e.to_string())
                    }
                    silt_wire::Error::ContainerTooLarge { .. } => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        0,
                        format!("{e}, the gateway's request limit"),
                    ),
                    _ => (StatusCode::BAD_REQUEST, 0, e.to_string()),
                };
                Refusal::one(status, index, "", reason)
            })?;
            let fp = file.schema.fingerprint();
            let writer = self.writer(stream_id, &fp).await.map_err(|_| {
                Refusal::one(
                    StatusCode::BAD_REQUEST,
                    0,
                    "",
                    format!(
                        "the file's schema (fingerprint {fp}) is not registered under subject `{stream_id}`"
                    ),
                )
            })?;
            for (i, r) in file.records.iter().enumerate() {
                // The container's reader checked each body against the schema; the writer's
                // strict check adds the standard types' rules, when the schema has any.
                let ruled = match writer.check.has_rules() {
                    true => writer.check.check(&r.body).map(|_| ()),
                    false => Ok(()),
                };
                match ruled {
                    Ok(()) => finish(i, &fp, &r.body, r.uuid, &mut errors),
                    Err(e) => errors.push(EventError {
                        index: i,
                        path: String::new(),
                        reason: e.to_string(),
                    }),
                }
            }
        } else if body.first() == Some(&silt_wire::ENVELOPE_HEADER) {
            let framed = Framing::Envelope
                .split(body)
                .map_err(|e| Refusal::one(StatusCode::BAD_REQUEST, 0, "", e.to_string()))?;
            let silt_wire::WriterRef::Sha256(fp) = framed.writer else {
                unreachable!("the envelope names its writer by SHA-256");
            };
            let writer = self.writer(stream_id, &fp).await.map_err(|_| {
                Refusal::one(
                    StatusCode::BAD_REQUEST,
                    0,
                    "",
                    format!("writer schema {fp} is not registered under subject `{stream_id}`"),
                )
            })?;
            match writer.check.check(framed.body) {
                Ok(c) => finish(0, &fp, framed.body, c.uuid, &mut errors),
                Err(e) => errors.push(EventError {
                    index: 0,
                    path: String::new(),
                    reason: e.to_string(),
                }),
            }
        } else {
            let events = parse_events(body, guid.is_some(), self.inner.options.buffer_events)?;
            let fp = latest.schema.fingerprint();
            let encoder = JsonEncoder::new(&latest.schema);
            let mut avro = Vec::with_capacity(256);
            for (i, event) in events.iter().enumerate() {
                avro.clear();
                if let Err(all) = encoder.encode(event, &mut avro) {
                    // Every wrong field of the event, so the producer mends them in one round.
                    errors.extend(all.into_iter().map(|e| EventError {
                        index: i,
                        path: e.path,
                        reason: e.reason,
                    }));
                    continue;
                }
                match latest.check.check(&avro) {
                    Ok(c) => finish(i, &fp, &avro, c.uuid, &mut errors),
                    // The encoder wrote a value of the schema: only its uuid's parse is left.
                    Err(e) => errors.push(EventError {
                        index: i,
                        path: match e {
                            silt_wire::Error::BadUuid { .. } => "/uuid".into(),
                            _ => String::new(),
                        },
                        reason: e.to_string(),
                    }),
                }
            }
        }
        if errors.is_empty() {
            return Ok(ready);
        }
        let status = if oversized {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        let refused = refused_events(&errors);
        Err(Refusal {
            status,
            error: format!(
                "{} of {} event(s) refused; nothing of this request was put on the stream",
                refused,
                refused + ready.len()
            ),
            errors,
        })
    }

    async fn handle(&self, stream_id: &str, body: &[u8], guid: Option<&str>) -> Response {
        let ready = match self.prepare(stream_id, body, guid).await {
            Ok(r) => r,
            Err(r) => {
                let reason = match r.status {
                    StatusCode::NOT_FOUND => "unknown_stream",
                    StatusCode::PAYLOAD_TOO_LARGE => "oversized",
                    StatusCode::BAD_REQUEST => "invalid",
                    _ => "unavailable",
                };
                let refused = refused_events(&r.errors).max(1) as u64;
                self.inner
                    .metrics
                    .base
                    .rejected
                    .get_or_create(&ReasonLabels {
                        reason: reason.into(),
                    })
                    .inc_by(refused);
                self.inner.metrics.rejected_total.inc_by(refused);
                if r.status == StatusCode::SERVICE_UNAVAILABLE {
                    // The registry did not answer: the producer may send again, and the
                    // operator should know.
                    self.warn(&r.error);
                    return busy(r.status, self.inner.options.retry_after_secs, r.error);
                }
                return error(r.status, r.error, r.errors);
            }
        };
        let n = ready.len();
        if n == 0 {
            return (StatusCode::ACCEPTED, Json(AcceptedBody { accepted: 0 })).into_response();
        }
        let m = &self.inner.metrics;
        let retry_after = self.inner.options.retry_after_secs;
        if n > self.inner.options.buffer_events {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{n} events in one request; the gateway buffers at most {}",
                    self.inner.options.buffer_events
                ),
                vec![],
            );
        }
        let Ok(permit) = self.inner.buffer.clone().try_acquire_many_owned(n as u32) else {
            m.throttle("buffer_full");
            return busy(
                StatusCode::SERVICE_UNAVAILABLE,
                retry_after,
                "the gateway's buffer is full: the stream is not keeping up",
            );
        };
        let sink = match self.inner.sinks.sink(stream_id) {
            Ok(s) => s,
            Err(e) => {
                m.throttle("stream_unavailable");
                self.warn(&format!(
                    "the stream for `{stream_id}` cannot be opened: {e}"
                ));
                return busy(
                    StatusCode::SERVICE_UNAVAILABLE,
                    retry_after,
                    format!("the stream for `{stream_id}` cannot be opened: {e}"),
                );
            }
        };
        m.in_flight.inc_by(n as i64);
        let in_flight = m.in_flight.clone();
        let put = self.inner.tasks.spawn(async move {
            let refs: Vec<(&str, &[u8])> = ready
                .iter()
                .map(|(k, r)| (k.as_str(), r.as_slice()))
                .collect();
            let result = sink.put_keyed(&refs).await;
            in_flight.dec_by(n as i64);
            drop(permit);
            result
        });
        match tokio::time::timeout(self.inner.options.put_timeout, put).await {
            Ok(Ok(Ok(stats))) => {
                m.accepted.inc_by(n as u64);
                m.retries.inc_by(stats.retries);
                (
                    StatusCode::ACCEPTED,
                    Json(AcceptedBody { accepted: n as u64 }),
                )
                    .into_response()
            }
            Ok(Ok(Err(silt_ingest::Error::Throttled(e)))) => {
                m.throttle("stream_throttled");
                busy(
                    StatusCode::TOO_MANY_REQUESTS,
                    retry_after,
                    format!("the stream is throttling: {e}; send the request again"),
                )
            }
            Ok(Ok(Err(e @ silt_ingest::Error::NoStream { .. }))) => {
                m.throttle("no_stream");
                self.warn(&format!("`{stream_id}`: {e}"));
                error(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "{e}; nothing of this request was put on it (the gateway's operator must \
                         create the stream; the events may be sent again once it exists)"
                    ),
                    vec![],
                )
            }
            Ok(Ok(Err(e))) => {
                m.throttle("stream_error");
                self.warn(&format!(
                    "`{stream_id}`: the stream did not take the events: {e}"
                ));
                busy(
                    StatusCode::SERVICE_UNAVAILABLE,
                    retry_after,
                    format!("the stream did not take the events: {e}; send the request again"),
                )
            }
            Ok(Err(e)) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the put task failed: {e}"),
                vec![],
            ),
            Err(_) => {
                m.throttle("stream_slow");
                self.warn(&format!(
                    "`{stream_id}`: the stream has not taken a request's events within {:?}",
                    self.inner.options.put_timeout
                ));
                busy(
                    StatusCode::SERVICE_UNAVAILABLE,
                    retry_after,
                    format!(
                        "the stream has not taken the events within {:?}; they may still arrive, so send the request again (repeats are dropped by uuid)",
                        self.inner.options.put_timeout
                    ),
                )
            }
        }
    }
}

impl Gateway {
    /// Tells the operator on stderr that the stream (or the registry) failed, within
    /// [`WarnLimit`].
    fn warn(&self, what: &str) {
        let line = self
            .inner
            .warned
            .lock()
            .expect("not poisoned")
            .line(std::time::Instant::now(), what);
        if let Some(line) = line {
            eprintln!("gateway: warning: {line}");
        }
    }
}

/// At most one warning every ten seconds, with how many failures came since the last (a
/// producer retrying would fill the log otherwise).
#[derive(Debug, Default)]
struct WarnLimit {
    last: Option<std::time::Instant>,
    since: u64,
}

impl WarnLimit {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// The line to print for a failure at `now`, or `None` when one was printed lately.
    fn line(&mut self, now: std::time::Instant, what: &str) -> Option<String> {
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            self.since += 1;
            return None;
        }
        self.last = Some(now);
        Some(match std::mem::take(&mut self.since) {
            0 => what.to_string(),
            n => format!("{what} ({n} more failed request(s) since the last warning)"),
        })
    }
}

fn error(status: StatusCode, error: impl Into<String>, errors: Vec<EventError>) -> Response {
    (
        status,
        Json(GatewayErrorBody {
            error: error.into(),
            errors,
        }),
    )
        .into_response()
}

impl GatewayMetrics {
    fn throttle(&self, reason: &str) {
        self.throttled
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
        self.throttled_total.inc();
    }
}

fn busy(status: StatusCode, retry_after: u64, reason: impl Into<String>) -> Response {
    let mut r = error(status, reason, vec![]);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        retry_after
            .to_string()
            .parse()
            .expect("a number is a header"),
    );
    r
}

/// The events of a JSON body: one object, an array of objects, or objects one after another;
/// a syntax error is told with the event it is in. More than `max` events (what the gateway buffers) are refused with 413 as soon as the
/// parse passes `max`, before the rest is read into memory (600,000 small events, 42 MB of
/// JSON, took 650 MB as values before the count refused them).
fn parse_events(body: &[u8], single: bool, max: usize) -> Result<Vec<Value>, Refusal> {
    // A UTF-8 byte order mark, which some Windows tools write first: JSON's RFC lets a
    // reader pass over it.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let Some(&first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        let what = if single { "one event" } else { "events" };
        return Err(Refusal::one(
            StatusCode::BAD_REQUEST,
            0,
            "",
            format!("the body is empty: send {what} as JSON, an envelope or an Avro object container file"),
        ));
    };
    // A binary body that is none of the formats taken: say what it looks like, rather than
    // "malformed JSON at line 1 column 1".
    if first >= 0x80 || (first < 0x20 && !b"\t\n\r".contains(&first)) {
        let looks = match body {
            [0xC3, 0x01, ..] => " (Avro single-object encoding: put it in an envelope)",
            [0x00, ..] => " (Confluent's framing, magic byte 0: put it in an envelope)",
            _ => "",
        };
        let head: Vec<String> = body.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(Refusal::one(
            StatusCode::BAD_REQUEST,
            0,
            "",
            format!(
                "the body starts with bytes {}{looks}: it is neither JSON (an event or an array of events), an envelope (first byte 0x81) nor an Avro object container file",
                head.join(" ")
            ),
        ));
    }
    let mut parsed = 0usize;
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = EventsSeed {
        parsed: &mut parsed,
        max,
    }
    .deserialize(&mut de);
    let result = match result.map(|v| (de.end(), v)) {
        Ok((Ok(()), v)) => Ok(v),
        // Events one object after another (newline-delimited JSON, as log shippers send
        // them): each is an event.
        Ok((Err(_), _)) if !single && first == b'{' => {
            parsed = 0;
            serde_json::Deserializer::from_slice(body)
                .into_iter::<Line>()
                .map(|line| {
                    let Line(event) = line?;
                    parsed += 1;
                    match parsed > max {
                        true => Err(serde::de::Error::custom("too many events")),
                        false => Ok(event),
                    }
                })
                .collect()
        }
        Ok((Err(trailing), _)) => Err(trailing),
        Err(e) => Err(e),
    };
    if parsed > max {
        return Err(Refusal::one(
            StatusCode::PAYLOAD_TOO_LARGE,
            max,
            "",
            format!("more than {max} events in one request; the gateway buffers at most {max}"),
        ));
    }
    match result {
        Ok(events) if single && events.len() != 1 => Err(Refusal::one(
            StatusCode::BAD_REQUEST,
            0,
            "",
            format!(
                "PUT takes one event, found {}; POST arrays to /streams/{{streamId}}/events",
                events.len()
            ),
        )),
        Ok(events) => Ok(events),
        Err(e) => Err(Refusal::one(
            StatusCode::BAD_REQUEST,
            parsed,
            "",
            format!("malformed JSON: {e}"),
        )),
    }
}

/// One event object, or an array of them; counts the events parsed so far, and stops past
/// `max` of them.
struct EventsSeed<'a> {
    parsed: &'a mut usize,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event (a JSON object) or an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(64));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
            *self.parsed += 1;
            if *self.parsed > self.max {
                return Err(serde::de::Error::custom("too many events"));
            }
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(vec![Strict.visit_map(map)?])
    }
}

/// One event of newline-delimited JSON: an object, its keys named once.
struct Line(Value);

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LineVisitor).map(Line)
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event (a JSON object; events one after another are objects each)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Strict.visit_map(map)
    }
}

/// A JSON value whose objects name each key once: `{"uuid": "a", "uuid": "b"}` is refused,
/// not read as its last key (which of two values a producer meant is not for the gateway to
/// guess, and other readers of the same JSON take the first).
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json reads no NaN or infinity, so every f64 here is a JSON number.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key `{key}` is given twice in one object"
                )));
            }
            let value = map.next_value_seed(Strict)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Send events: a JSON array of events (or one event), or an Avro object container file.
#[utoipa::path(post, path = "/streams/{streamId}/events",
    params(("streamId" = String, Path, description = "The stream: the subject its events are checked against")),
    request_body(content = Vec<Object>, description = "A JSON array of events (or events one JSON object after another: newline-delimited JSON), or an Avro object container file (application/avro)",
        content_type = "application/json"),
    responses(
        (status = 202, body = AcceptedBody, description = "Every event is on the stream"),
        (status = 400, body = GatewayErrorBody, description = "Some events are invalid; none was put"),
        (status = 404, body = GatewayErrorBody, description = "No schema is registered for the stream"),
        (status = 413, body = GatewayErrorBody, description = "An event is over 1 MiB, or the body over the request limit (decompressed)"),
        (status = 415, body = GatewayErrorBody, description = "A Content-Encoding other than gzip, zstd or identity"),
        (status = 429, body = GatewayErrorBody, description = "The stream is throttling; see Retry-After"),
        (status = 502, body = GatewayErrorBody, description = "The Kinesis stream does not exist; nothing was put"),
        (status = 503, body = GatewayErrorBody, description = "The buffer is full or the stream is slow; see Retry-After"),
    ))]
async fn post_events(
    State(g): State<Gateway>,
    Path(stream_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decoded_body(&headers, body, g.inner.options.max_request_bytes) {
        Ok(body) => g.handle(&stream_id, &body, None).await,
        Err(refused) => refused,
    }
}

/// Send one event whose `uuid` is `guid`: a JSON object, or an envelope (SPEC 2).
#[utoipa::path(put, path = "/streams/{streamId}/events/{guid}",
    params(("streamId" = String, Path), ("guid" = String, Path, description = "The event's uuid (a version-1 TimeUuid)")),
    request_body(content = Object, description = "One event as JSON, or an envelope (application/octet-stream)",
        content_type = "application/json"),
    responses(
        (status = 202, body = AcceptedBody),
        (status = 400, body = GatewayErrorBody),
        (status = 404, body = GatewayErrorBody),
        (status = 413, body = GatewayErrorBody),
        (status = 415, body = GatewayErrorBody),
        (status = 429, body = GatewayErrorBody),
        (status = 502, body = GatewayErrorBody),
        (status = 503, body = GatewayErrorBody),
    ))]
async fn put_event(
    State(g): State<Gateway>,
    Path((stream_id, guid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decoded_body(&headers, body, g.inner.options.max_request_bytes) {
        Ok(body) => g.handle(&stream_id, &body, Some(&guid)).await,
        Err(refused) => refused,
    }
}

/// The body as its producer wrote it: the `Content-Encoding`s it names (`gzip`, `zstd`;
/// `identity`) undone, last applied first, and no larger than `limit` once decoded (the
/// request limit holds for what is read, not only for what was sent).
// The error is the ready HTTP answer.
#[allow(clippy::result_large_err)]
fn decoded_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, Response> {
    use std::io::Read;
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(value) = value.to_str() else {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the Content-Encoding header is not text",
                vec![],
            ));
        };
        codings.extend(
            value
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "identity"),
        );
    }
    let mut body = body;
    for coding in codings.iter().rev() {
        let mut out = Vec::new();
        let read = match coding.as_str() {
            "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
            "zstd" => zstd::stream::read::Decoder::new(&body[..])
                .and_then(|d| d.take(limit as u64 + 1).read_to_end(&mut out)),
            other => {
                return Err(error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Encoding `{other}` is not one the gateway reads (gzip, zstd, identity)"),
                    vec![],
                ))
            }
        };
        if let Err(e) = read {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid {coding} (its Content-Encoding): {e}"),
                vec![],
            ));
        }
        if out.len() > limit {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body decodes ({coding}) to more than {limit} bytes, the request limit"
                ),
                vec![],
            ));
        }
        body = Bytes::from(out);
    }
    Ok(body)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "silt gateway",
        description = "Events checked against their stream's schema at the door, converted to Avro and put on the stream. Nothing of a request with an invalid event is put."
    ),
    paths(post_events, put_event),
    components(schemas(AcceptedBody, EventError, GatewayErrorBody))
)]
struct GatewayApi;

/// The OpenAPI 3 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    GatewayApi::openapi()
}

/// Serves until `shutdown` is cancelled; requests in flight finish and every put the gateway
/// started ends before this returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, gateway.router())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    gateway.drain().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: usize = 200_000;

    #[test]
    fn a_syntax_error_names_the_event_it_is_in() {
        let body = br#"[{"a":1},{"b":2},{"c":]"#;
        let r = parse_events(body, false, MAX).unwrap_err();
        assert_eq!(r.errors[0].index, 2);
        assert!(
            r.errors[0].reason.starts_with("malformed JSON"),
            "{}",
            r.error
        );
        assert_eq!(parse_events(br#"{"a":1}"#, true, MAX).unwrap().len(), 1);
        assert_eq!(
            parse_events(br#"[{"a":1},{"a":2}]"#, false, MAX)
                .unwrap()
                .len(),
            2
        );
        assert!(parse_events(br#"[{"a":1},{"a":2}]"#, true, MAX).is_err());
        assert_eq!(
            parse_events(br#"{"a":1} x"#, false, MAX)
                .unwrap_err()
                .errors[0]
                .index,
            1
        );
        assert!(parse_events(b"42", false, MAX).is_err());
        for (body, single) in [(&b""[..], true), (&b" \n"[..], false)] {
            let r = parse_events(body, single, MAX).unwrap_err();
            assert!(
                r.error.starts_with("the body is empty: send "),
                "{}",
                r.error
            );
        }
    }

    #[test]
    fn events_one_object_after_another_and_a_byte_order_mark_are_taken() {
        // Newline-delimited JSON, as Vector, Fluent Bit and Firehose-style shippers send.
        let events = parse_events(b"{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n", false, MAX).unwrap();
        assert_eq!(
            events,
            vec![json!({"a": 1}), json!({"a": 2}), json!({"a": 3})]
        );
        // A bad line is named by its event's index; a line that is no object too.
        for (body, index) in [
            (&b"{\"a\":1}\n{\"a\":}\n{\"a\":3}"[..], 1),
            (&b"{\"a\":1}\n{\"a\":2}\n[{\"a\":3}]"[..], 2),
            (&b"{\"a\":1}\n{\"a\":2,\"a\":3}"[..], 1),
        ] {
            let r = parse_events(body, false, MAX).unwrap_err();
            assert_eq!(r.errors[0].index, index, "{}", r.error);
            assert!(r.error.starts_with("malformed JSON"), "{}", r.error);
        }
        // One event per PUT, lines or not; an array is one value, not a line of events.
        assert!(parse_events(b"{\"a\":1}\n{\"a\":2}", true, MAX).is_err());
        assert!(parse_events(b"[{\"a\":1}]\n{\"a\":2}", false, MAX).is_err());
        // A UTF-8 byte order mark before the JSON.
        let events = parse_events(b"\xEF\xBB\xBF[{\"a\":1}]", false, MAX).unwrap();
        assert_eq!(events, vec![json!({"a": 1})]);
        assert_eq!(
            parse_events(b"\xEF\xBB\xBF{\"a\":1}", true, MAX)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_parse_stops_past_the_events_the_gateway_buffers() {
        for body in [
            &br#"[{"a":1},{"a":2},{"a":3},{"a":4},{"a":5}]"#[..],
            b"{}\n{}\n{}\n{}\n{}",
        ] {
            assert_eq!(parse_events(body, false, 5).unwrap().len(), 5);
            let r = parse_events(body, false, 3).unwrap_err();
            assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.error);
            assert_eq!(
                r.error,
                "more than 3 events in one request; the gateway buffers at most 3"
            );
        }
    }

    #[test]
    fn warnings_come_at_most_every_ten_seconds_with_a_count_of_the_rest() {
        let mut limit = WarnLimit::default();
        let t0 = std::time::Instant::now();
        assert_eq!(limit.line(t0, "down").as_deref(), Some("down"));
        assert_eq!(limit.line(t0 + Duration::from_secs(1), "down"), None);
        assert_eq!(limit.line(t0 + Duration::from_secs(9), "down"), None);
        assert_eq!(
            limit
                .line(t0 + Duration::from_secs(10), "still down")
                .as_deref(),
            Some("still down (2 more failed request(s) since the last warning)")
        );
        assert_eq!(limit.line(t0 + Duration::from_secs(15), "x"), None);
        assert_eq!(
            limit.line(t0 + Duration::from_secs(30), "x").as_deref(),
            Some("x (1 more failed request(s) since the last warning)")
        );
    }

    #[test]
    fn a_binary_body_of_no_format_taken_is_named_for_what_it_looks_like() {
        let r = parse_events(b"\xc3\x01\x00\x01\x02", true, MAX).unwrap_err();
        assert!(
            r.error.starts_with("the body starts with bytes c3 01 00 01 (Avro single-object encoding: put it in an envelope): it is neither JSON"),
            "{}",
            r.error
        );
        let r = parse_events(b"\x00\x00\x00\x00\x07", true, MAX).unwrap_err();
        assert!(
            r.error.contains("(Confluent's framing, magic byte 0"),
            "{}",
            r.error
        );
        let r = parse_events(b"\x02abc", false, MAX).unwrap_err();
        assert!(
            r.error
                .starts_with("the body starts with bytes 02 61 62 63: "),
            "{}",
            r.error
        );
        // Text that is no JSON is still told as JSON.
        let r = parse_events(b" nope", false, MAX).unwrap_err();
        assert!(r.error.starts_with("malformed JSON"), "{}", r.error);
    }
}
