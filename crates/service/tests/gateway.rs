//! The gateway over real HTTP on 127.0.0.1 with ephemeral ports, onto real file streams (and
//! kinesalite when the test script runs it).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use silt_ingest::{FileStream, PutStats, ReadLimit, Sink, Source, StartAt};
use silt_registry::{SchemaRegistry, StoreRegistry};
use silt_service::gateway::{
    FileSinks, Gateway, GatewayOptions, KinesisSinks, SinkProvider, MAX_EVENT_BYTES,
};
use silt_wire::{encode, envelope, ocf, timeuuid, Fingerprint, Framing, Schema};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const SUBJECT: &str = "com.gilt.clickstream.v1.ProductPageViewedEvent";

fn testdata() -> PathBuf {
    silt_wire::testing::clickstream_small()
}

fn schema_text(v: &str) -> String {
    std::fs::read_to_string(testdata().join(format!("schemas/{v}.avsc"))).unwrap()
}

/// A subject whose events carry the registry's standard money type.
const ORDERS: &str = "shop.v1.OrderPlaced";
const ORDERS_SCHEMA: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop.v1","fields":[
    {"name":"uuid","type":"gfc.avro.UUID"},
    {"name":"total","type":"gfc.avro.Money"},
    {"name":"note","type":"string"}]}"#;

/// Both testdata schemas registered under the clickstream subject, and [`ORDERS`].
async fn registry() -> Arc<dyn SchemaRegistry> {
    let r = StoreRegistry::in_memory();
    r.register(SUBJECT, &schema_text("v1")).await.unwrap();
    r.register(SUBJECT, &schema_text("v2")).await.unwrap();
    r.register(ORDERS, ORDERS_SCHEMA).await.unwrap();
    Arc::new(r)
}

struct Server {
    base: String,
    gateway: Gateway,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(sinks: Arc<dyn SinkProvider>, options: GatewayOptions) -> Server {
        Server::start_with(registry().await, sinks, options).await
    }

    async fn start_with(
        registry: Arc<dyn SchemaRegistry>,
        sinks: Arc<dyn SinkProvider>,
        options: GatewayOptions,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let gateway = Gateway::new(registry, sinks, options);
        let stop = CancellationToken::new();
        let task = tokio::spawn(silt_service::gateway::serve(
            listener,
            gateway.clone(),
            stop.clone(),
        ));
        Server {
            base,
            gateway,
            stop,
            task,
        }
    }

    /// A gateway onto file streams in `dir` with the default options.
    async fn on_files(dir: &Path, shards: usize) -> Server {
        Server::start(
            Arc::new(FileSinks::new(dir, shards)),
            GatewayOptions::default(),
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn events_url(&self) -> String {
        self.url(&format!("/streams/{SUBJECT}/events"))
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// The testdata's distinct events as the plain JSON a producer would send, each with the
/// fastavro body it was written with and that body's fingerprint.
struct Sample {
    json: Value,
    uuid: String,
    body: Vec<u8>,
    fingerprint: Fingerprint,
}

async fn samples() -> Vec<Sample> {
    let dir = testdata();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let events = expected["events"].as_object().unwrap();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for record in stream_records(&dir.join("stream")).await {
        let Ok(f) = Framing::Envelope.split(&record) else {
            continue;
        };
        let silt_wire::WriterRef::Sha256(fp) = f.writer else {
            unreachable!()
        };
        if f.body.len() < 16 {
            continue;
        }
        let uuid = timeuuid::to_string(f.body[..16].try_into().unwrap());
        let Some(e) = events.get(&uuid) else { continue };
        if !seen.insert(uuid.clone()) {
            continue;
        }
        out.push(Sample {
            json: json!({
                "uuid": uuid,
                "productId": e["productId"],
                "saleId": e["saleId"],
                "channel": e["channel"],
            }),
            uuid,
            body: f.body.to_vec(),
            fingerprint: fp,
        });
    }
    assert_eq!(out.len(), 400);
    out
}

/// Every record of a file stream folder, all shards.
async fn stream_records(dir: &Path) -> Vec<Vec<u8>> {
    if !dir.exists() {
        return vec![];
    }
    let stream = FileStream::open(dir).unwrap();
    let mut out = Vec::new();
    for shard in stream.shards().await.unwrap() {
        let c = stream
            .read(&shard.id, &StartAt::Earliest, ReadLimit::default())
            .await
            .unwrap();
        out.extend((0..c.records.len()).map(|i| c.payload(i).to_vec()));
    }
    out
}

fn v2_fingerprint() -> Fingerprint {
    Schema::parse(&schema_text("v2")).unwrap().fingerprint()
}

fn new_uuid() -> String {
    timeuuid::to_string(&timeuuid::TimeUuidGenerator::random().next())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_batch_lands_on_the_file_stream_as_the_bodies_fastavro_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_files(dir.path(), 3).await;
    let samples = samples().await;
    let c = reqwest::Client::new();
    for batch in samples.chunks(150) {
        let body: Vec<&Value> = batch.iter().map(|s| &s.json).collect();
        assert_eq!(
            post(&server, serde_json::to_vec(&body).unwrap()).await,
            (202, json!({"accepted": batch.len()}))
        );
    }
    // One more with PUT, its guid in the path.
    let one = json!({"uuid": new_uuid(), "productId": 7, "saleId": null, "channel": "app"});
    let r = c
        .put(server.url(&format!(
            "/streams/{SUBJECT}/events/{}",
            one["uuid"].as_str().unwrap()
        )))
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 1}));

    let records = stream_records(&dir.path().join(SUBJECT)).await;
    assert_eq!(records.len(), 401);
    let v2 = v2_fingerprint();
    let by_uuid: HashMap<&str, &Sample> = samples.iter().map(|s| (s.uuid.as_str(), s)).collect();
    let mut same_bytes_as_fastavro = 0;
    for r in &records {
        let f = Framing::Envelope.split(r).unwrap();
        assert_eq!(
            f.writer,
            silt_wire::WriterRef::Sha256(v2),
            "the latest schema's fingerprint"
        );
        let uuid = timeuuid::to_string(f.body[..16].try_into().unwrap());
        if let Some(s) = by_uuid.get(uuid.as_str()) {
            if s.fingerprint == v2 {
                assert_eq!(
                    f.body, s.body,
                    "event {uuid}: our JSON conversion differs from fastavro"
                );
                same_bytes_as_fastavro += 1;
            }
        }
    }
    assert!(
        same_bytes_as_fastavro > 100,
        "{same_bytes_as_fastavro} v2 events compared"
    );
    // Three shards, spread by uuid.
    let shards = std::fs::read_dir(dir.path().join(SUBJECT)).unwrap().count();
    assert_eq!(shards, 3);
    assert_eq!(server.gateway.stats().accepted, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_envelopes_and_container_files_are_taken_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_files(dir.path(), 1).await;
    let samples = samples().await;
    let c = reqwest::Client::new();
    // One envelope by PUT (a v1 event: any registered version of the subject is accepted).
    let first = samples
        .iter()
        .find(|s| s.fingerprint != v2_fingerprint())
        .unwrap();
    let r = c
        .put(server.url(&format!("/streams/{SUBJECT}/events/{}", first.uuid)))
        .header("content-type", "application/octet-stream")
        .body(envelope(&first.fingerprint, &first.body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    // The v2 events as a deflate container file.
    let v2: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.fingerprint == v2_fingerprint())
        .collect();
    let schema = Schema::parse(&schema_text("v2")).unwrap();
    let bodies: Vec<&[u8]> = v2.iter().map(|s| s.body.as_slice()).collect();
    let file = ocf::write(&schema, &bodies, ocf::Codec::Deflate, 64);
    assert_eq!(
        post(&server, file).await,
        (202, json!({"accepted": v2.len()}))
    );

    let records = stream_records(&dir.path().join(SUBJECT)).await;
    let mut expected = vec![envelope(&first.fingerprint, &first.body)];
    expected.extend(v2.iter().map(|s| envelope(&s.fingerprint, &s.body)));
    assert_eq!(records, expected);
    server.stop().await;
}

/// The gateway's Prometheus text.
async fn metrics_text(server: &Server) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// POSTs a body to the clickstream's events.
async fn send(server: &Server, body: impl Into<reqwest::Body>) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.events_url())
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Sends `events` by POST; returns the status and the JSON answer.
async fn post(server: &Server, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = send(server, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_event_is_refused_and_nothing_of_its_request_is_put() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_files(dir.path(), 2).await;
    let good = || json!({"uuid": new_uuid(), "productId": 1, "saleId": 2, "channel": null});
    let with = |k: &str, v: Value| {
        let mut e = good();
        e[k] = v;
        e
    };
    let v4 = uuid::Uuid::new_v4().to_string();
    // A producer whose clock is a day ahead.
    let tomorrow = silt_wire::timeuuid::to_string(
        &silt_wire::timeuuid::TimeUuidGenerator::random().next_at_unix_millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                + 24 * 3600 * 1000,
        ),
    );
    let mut missing = good();
    missing.as_object_mut().unwrap().remove("productId");

    // (a batch of [good, bad, good], the status, the bad event's path, words of its reason)
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            with("productId", json!("abc")),
            400,
            "/productId",
            "expected long, found string \"abc\"",
        ),
        (
            with("saleId", json!(1.5)),
            400,
            "/saleId",
            "expected long (a whole number)",
        ),
        (missing, 400, "/productId", "missing required field"),
        (with("uuid", json!(v4)), 400, "/uuid", "version-4 UUID"),
        (
            with("uuid", json!(tomorrow)),
            400,
            "/uuid",
            "more than 5m ahead of the gateway's clock",
        ),
        (
            with("uuid", json!("not-a-uuid")),
            400,
            "/uuid",
            "is not a UUID",
        ),
        (
            with("colour", json!("red")),
            400,
            "/colour",
            "has no field `colour`",
        ),
        (
            with("channel", json!("x".repeat(MAX_EVENT_BYTES))),
            413,
            "",
            "the limit is 1048576",
        ),
    ];
    for (bad, status, path, reason) in cases {
        let (got, body) = post(&server, json!([good(), bad, good()]).to_string()).await;
        assert_eq!(got, status, "{body}");
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{body}");
        assert_eq!(errors[0]["index"], 1, "{body}");
        assert_eq!(errors[0]["path"], path, "{body}");
        let text = errors[0]["reason"].as_str().unwrap();
        assert!(text.contains(reason), "{text:?} should say {reason:?}");
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("nothing of this request"));
    }

    // An event wrong in several fields is refused with each of them, in schema order; the
    // answer counts refused events, not refusals.
    let mut two = with("saleId", json!("x"));
    two["colour"] = json!("red");
    two.as_object_mut().unwrap().remove("productId");
    let (got, body) = post(
        &server,
        json!([good(), two, with("productId", json!(true))]).to_string(),
    )
    .await;
    assert_eq!(got, 400, "{body}");
    let listed: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (1, "/colour"),
            (1, "/productId"),
            (1, "/saleId"),
            (2, "/productId")
        ],
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("2 of 3 event(s) refused"),
        "{body}"
    );

    // Malformed JSON: the answer says which event the syntax error is in.
    let text = format!("[{},{},{{\"uuid\": ]", good(), good());
    let (got, body) = post(&server, text).await;
    assert_eq!(got, 400);
    assert_eq!(body["errors"][0]["index"], 2, "{body}");
    assert!(body["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("malformed JSON"));

    // A key given twice in one object (here within a nested value too): which value the
    // producer meant is not guessed (serde_json's Value took the last, silently).
    for twice in [
        format!(
            "[{},{{\"uuid\": \"{}\", \"uuid\": \"{}\"}}]",
            good(),
            new_uuid(),
            new_uuid()
        ),
        "[{\"a\": {\"b\": 1, \"b\": 2}}]".to_string(),
    ] {
        let (got, body) = post(&server, twice.clone()).await;
        assert_eq!(got, 400, "{twice}: {body}");
        let reason = body["errors"][0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("malformed JSON: the key `") && reason.contains("` is given twice"),
            "{body}"
        );
    }

    // PUT whose body's uuid is not the path's guid.
    let e = good();
    let r = reqwest::Client::new()
        .put(server.url(&format!("/streams/{SUBJECT}/events/{}", new_uuid())))
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["path"], "/uuid");
    assert!(body["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("does not equal the path's guid"));

    // Unknown stream.
    let r = reqwest::Client::new()
        .post(server.url("/streams/no.such.Stream/events"))
        .json(&json!([good()]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("unknown stream `no.such.Stream`"));

    // Names that are no subject never reach the sink's folders.
    for name in ["..%2F..%2Fetc", "a..b", ".hidden"] {
        let r = reqwest::Client::new()
            .post(server.url(&format!("/streams/{name}/events")))
            .json(&json!([good()]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{name}");
    }

    // Truncated Avro: an envelope one byte short, and a container file cut inside a block.
    let v2 = Schema::parse(&schema_text("v2")).unwrap();
    let mut avro = timeuuid::TimeUuidGenerator::random().next().to_vec();
    silt_wire::encode::long(42, &mut avro);
    avro.extend_from_slice(&[2, 8, 2, 6, b'a', b'p', b'p', b'x']); // saleId 4, channel "app", 1 extra
    let truncated = envelope(&v2.fingerprint(), &avro[..avro.len() - 2]);
    let r = reqwest::Client::new()
        .put(server.url(&format!(
            "/streams/{SUBJECT}/events/{}",
            timeuuid::to_string(avro[..16].try_into().unwrap())
        )))
        .body(truncated)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{body}"
    );
    let good_body = &avro[..avro.len() - 1];
    let file = ocf::write(
        &v2,
        &[good_body, good_body, &avro[..20]],
        ocf::Codec::Null,
        10,
    );
    let (got, body) = post(&server, file).await;
    assert_eq!(got, 400, "{body}");
    assert_eq!(body["errors"][0]["index"], 2, "{body}");
    let file = ocf::write(&v2, &[good_body, good_body], ocf::Codec::Null, 10);
    let (got, body) = post(&server, file[..file.len() - 5].to_vec()).await;
    assert_eq!(got, 400, "{body}");
    assert!(
        body["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{body}"
    );

    assert!(
        stream_records(&dir.path().join(SUBJECT)).await.is_empty(),
        "nothing of a refused request is on the stream"
    );
    let stats = server.gateway.stats();
    assert_eq!(stats.accepted, 0);
    assert!(stats.rejected >= 13, "{stats:?}");
    server.stop().await;
}

/// Sinks that can be stalled (puts wait) or made to throttle, in front of real file streams.
struct Faulty {
    inner: FileSinks,
    open: watch::Receiver<bool>,
    throttle: Arc<AtomicBool>,
}

#[derive(Debug)]
struct FaultySink {
    inner: Arc<dyn Sink>,
    open: watch::Receiver<bool>,
    throttle: Arc<AtomicBool>,
}

impl SinkProvider for Faulty {
    fn sink(&self, stream_id: &str) -> Result<Arc<dyn Sink>, String> {
        Ok(Arc::new(FaultySink {
            inner: self.inner.sink(stream_id)?,
            open: self.open.clone(),
            throttle: self.throttle.clone(),
        }))
    }
    fn describe(&self) -> String {
        "a stallable file stream".into()
    }
}

#[async_trait]
impl Sink for FaultySink {
    async fn put(&self, shard_hint: usize, records: &[&[u8]]) -> silt_ingest::Result<()> {
        self.inner.put(shard_hint, records).await
    }
    async fn put_keyed(&self, records: &[(&str, &[u8])]) -> silt_ingest::Result<PutStats> {
        let mut open = self.open.clone();
        open.wait_for(|o| *o).await.unwrap();
        if self.throttle.load(Ordering::SeqCst) {
            return Err(silt_ingest::Error::Throttled(
                "ProvisionedThroughputExceeded (injected)".into(),
            ));
        }
        self.inner.put_keyed(records).await
    }
}

fn batch(n: usize) -> (Value, Vec<String>) {
    let uuids: Vec<String> = (0..n).map(|_| new_uuid()).collect();
    let events = uuids
        .iter()
        .enumerate()
        .map(|(i, u)| json!({"uuid": u, "productId": i, "saleId": null, "channel": "web"}))
        .collect();
    (Value::Array(events), uuids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_is_read_decompressed_and_held_to_the_limit_decompressed() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let limit = 64 << 10;
    let server = Server::start(
        Arc::new(FileSinks::new(dir.path(), 1)),
        GatewayOptions {
            max_request_bytes: limit,
            ..GatewayOptions::default()
        },
    )
    .await;
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let send_encoded = |body: Vec<u8>, encoding: &'static str| {
        let url = server.events_url();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-encoding", encoding)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (a, a_ids) = batch(50);
    let (b, b_ids) = batch(50);
    let a_json = a.to_string().into_bytes();
    assert_eq!(
        send_encoded(gzip(&a_json), "gzip").await,
        (202, json!({"accepted": 50}))
    );
    assert_eq!(
        send_encoded(
            zstd::encode_all(b.to_string().as_bytes(), 1).unwrap(),
            "zstd"
        )
        .await,
        (202, json!({"accepted": 50}))
    );

    let (status, why) = send_encoded(a_json.clone(), "br").await;
    assert_eq!(status, 415, "{why}");
    assert!(why["error"].as_str().unwrap().contains("`br`"), "{why}");
    let (status, why) = send_encoded(a_json.clone(), "gzip").await;
    assert_eq!(status, 400, "{why}");
    assert!(
        why["error"].as_str().unwrap().contains("not valid gzip"),
        "{why}"
    );
    // Small on the wire, over the limit once read.
    let mut bomb = b"[".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', limit));
    bomb.push(b']');
    let bomb = gzip(&bomb);
    assert!(bomb.len() < limit / 16);
    let (status, why) = send_encoded(bomb, "gzip").await;
    assert_eq!(status, 413, "{why}");
    assert!(
        why["error"].as_str().unwrap().contains("request limit"),
        "{why}"
    );
    // A container file's blocks are held to the limit as they decompress: v2 events enough
    // for twice the limit, a deflate file of a few KiB.
    let v2 = Schema::parse(&schema_text("v2")).unwrap();
    let samples = samples().await;
    let bodies: Vec<&[u8]> = samples
        .iter()
        .filter(|s| s.fingerprint == v2.fingerprint())
        .map(|s| s.body.as_slice())
        .cycle()
        .scan(0, |size, b| {
            *size += b.len();
            (*size <= 2 * limit).then_some(b)
        })
        .collect();
    let file = ocf::write(&v2, &bodies, ocf::Codec::Deflate, bodies.len());
    assert!(file.len() < limit / 4, "{}", file.len());
    let (status, why) = post(&server, file).await;
    assert_eq!(status, 413, "{why}");
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("decompress to more than 65536 bytes"),
        "{why}"
    );

    let on_stream = uuids_on(&stream_records(&dir.path().join(SUBJECT)).await);
    let want: HashSet<String> = a_ids.into_iter().chain(b_ids).collect();
    assert_eq!(on_stream.len(), 100);
    assert_eq!(on_stream.into_iter().collect::<HashSet<_>>(), want);
    server.stop().await;
}

fn uuids_on(records: &[Vec<u8>]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let f = Framing::Envelope.split(r).unwrap();
            timeuuid::to_string(f.body[..16].try_into().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_gets_retry_after_and_loses_no_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, open) = watch::channel(false);
    let throttle = Arc::new(AtomicBool::new(false));
    let server = Arc::new(
        Server::start(
            Arc::new(Faulty {
                inner: FileSinks::new(dir.path(), 2),
                open,
                throttle: throttle.clone(),
            }),
            GatewayOptions {
                buffer_events: 100,
                put_timeout: Duration::from_secs(60),
                ..GatewayOptions::default()
            },
        )
        .await,
    );
    // A: 60 events, waiting on the stalled stream, holding 60 of the 100 places.
    let (a, a_ids) = batch(60);
    let s = server.clone();
    let first = tokio::spawn(async move { post(&s, a.to_string()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !first.is_finished(),
        "no 202 before the stream took the events"
    );

    // B: 60 more do not fit: 503 with Retry-After, at once.
    let (b, b_ids) = batch(60);
    let r = send(&server, b.to_string()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let why: Value = r.json().await.unwrap();
    assert!(
        why["error"].as_str().unwrap().contains("buffer is full"),
        "{why}"
    );

    // The stream recovers: A is answered 202, and B, sent again as Retry-After asks, too.
    gate.send(true).unwrap();
    assert_eq!(first.await.unwrap(), (202, json!({"accepted": 60})));
    assert_eq!(
        post(&server, b.to_string()).await,
        (202, json!({"accepted": 60}))
    );

    // The stream throttles past the sink's retries: 429 with Retry-After.
    throttle.store(true, Ordering::SeqCst);
    let (c, _) = batch(5);
    let r = send(&server, c.to_string()).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    let on_stream: HashSet<String> = uuids_on(&stream_records(&dir.path().join(SUBJECT)).await)
        .into_iter()
        .collect();
    for id in a_ids.iter().chain(&b_ids) {
        assert!(
            on_stream.contains(id),
            "accepted event {id} is not on the stream"
        );
    }
    assert_eq!(on_stream.len(), 120);

    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("silt_gateway_accepted_events_total 120"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"silt_gateway_throttled_requests_total{reason="buffer_full"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"silt_gateway_throttled_requests_total{reason="stream_throttled"} 1"#),
        "{metrics}"
    );
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_answers_503_and_shutdown_drains_what_was_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, open) = watch::channel(false);
    let server = Arc::new(
        Server::start(
            Arc::new(Faulty {
                inner: FileSinks::new(dir.path(), 1),
                open,
                throttle: Arc::new(AtomicBool::new(false)),
            }),
            GatewayOptions {
                put_timeout: Duration::from_millis(300),
                ..GatewayOptions::default()
            },
        )
        .await,
    );
    // The stream does not answer in time: 503 with Retry-After; the put goes on.
    let (a, a_ids) = batch(10);
    let r = send(&server, a.to_string()).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    // Shut down while that put still waits: the server ends only once the stream took it.
    let server = Arc::into_inner(server).unwrap();
    server.stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !server.task.is_finished(),
        "shutdown waits for puts in flight"
    );
    gate.send(true).unwrap();
    server.task.await.unwrap().unwrap();
    let on_stream = uuids_on(&stream_records(&dir.path().join(SUBJECT)).await);
    assert_eq!(on_stream, a_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_files(dir.path(), 1).await;
    let doc: Value = reqwest::get(server.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths["/streams/{streamId}/events"]["post"].is_object(),
        "{doc}"
    );
    assert!(
        paths["/streams/{streamId}/events/{guid}"]["put"].is_object(),
        "{doc}"
    );
    for status in ["202", "400", "404", "413", "429", "502", "503"] {
        for (path, method) in [
            ("/streams/{streamId}/events", "post"),
            ("/streams/{streamId}/events/{guid}", "put"),
        ] {
            assert!(
                paths[path][method]["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    assert_eq!(
        reqwest::get(server.url("/health")).await.unwrap().status(),
        200
    );
    // One event refused for two fields (an unknown one, a missing one) counts once.
    let (status, body) = post(
        &server,
        json!([{"uuid": new_uuid(), "colour": "red"}]).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains(r#"silt_gateway_rejected_total{reason="invalid"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("silt_gateway_request_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("silt_gateway_put_retries_total 0"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_batch_lands_on_kinesalite_as_envelopes_of_the_registered_schema() {
    let Some(endpoint) = silt_kinesis::testing::endpoint() else {
        return;
    };
    let client = silt_kinesis::testing::test_client(&endpoint).await;
    let name = silt_kinesis::testing::unique("gateway");
    silt_kinesis::testing::create_stream(&client, &name, 2).await;
    let server = Server::start(
        Arc::new(KinesisSinks::new(client.clone(), Some(name.clone()))),
        GatewayOptions::default(),
    )
    .await;
    let samples = samples().await;
    let body: Vec<&Value> = samples.iter().map(|s| &s.json).collect();
    let (status, answer) = post(&server, serde_json::to_string(&body).unwrap()).await;
    assert_eq!((status, answer), (202, json!({"accepted": 400})));

    let source = silt_kinesis::KinesisSource::new(client, &name);
    let mut records = Vec::new();
    let mut per_shard = Vec::new();
    for shard in source.shards().await.unwrap() {
        let mut at = StartAt::Earliest;
        let before = records.len();
        loop {
            let c = source
                .read(&shard.id, &at, ReadLimit::default())
                .await
                .unwrap();
            records.extend((0..c.records.len()).map(|i| c.payload(i).to_vec()));
            at = c.next.clone().unwrap_or(at);
            if c.caught_up {
                break;
            }
        }
        per_shard.push(records.len() - before);
    }
    assert_eq!(records.len(), 400);
    assert!(
        per_shard.iter().all(|n| *n > 100),
        "partition key = uuid spreads the events over both shards: {per_shard:?}"
    );
    let v2 = v2_fingerprint();
    let check = silt_wire::BodyCheck::new(&Schema::parse(&schema_text("v2")).unwrap());
    let expected: HashSet<&str> = samples.iter().map(|s| s.uuid.as_str()).collect();
    let mut got = HashSet::new();
    for r in &records {
        let f = Framing::Envelope.split(r).unwrap();
        assert_eq!(f.writer, silt_wire::WriterRef::Sha256(v2));
        let uuid = check.check(f.body).unwrap().uuid.unwrap();
        got.insert(timeuuid::to_string(&uuid));
    }
    assert_eq!(got, expected.iter().map(|s| s.to_string()).collect());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_does_not_answer_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the registry's service is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start_with(
        Arc::new(silt_registry::HttpRegistry::new(format!(
            "http://127.0.0.1:{port}"
        ))),
        Arc::new(FileSinks::new(dir.path(), 1)),
        GatewayOptions::default(),
    )
    .await;
    let (events, _) = batch(3);
    let r = send(&server, events.to_string()).await;
    assert_eq!(r.status(), 503);
    // SPEC 5: a 503 says when to send again.
    assert_eq!(r.headers()["retry-after"], "1");
    let why: Value = r.json().await.unwrap();
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("the schema registry did not answer"),
        "{why}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_stream_that_does_not_exist_is_answered_502_until_it_is_created() {
    let Some(endpoint) = silt_kinesis::testing::endpoint() else {
        return;
    };
    let client = silt_kinesis::testing::test_client(&endpoint).await;
    let name = silt_kinesis::testing::unique("not-created");
    let server = Server::start(
        Arc::new(KinesisSinks::new(client.clone(), Some(name.clone()))),
        GatewayOptions::default(),
    )
    .await;
    let (events, _) = batch(5);
    let r = send(&server, events.to_string()).await;
    // Not 503 + Retry-After: sending again does not help until someone creates the stream.
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("retry-after").is_none());
    let why: Value = r.json().await.unwrap();
    let text = why["error"].as_str().unwrap();
    assert!(
        text.contains(&format!("there is no stream `{name}`")),
        "{text}"
    );
    assert!(text.contains("nothing of this request was put"), "{text}");
    assert!(!text.contains("raw: Response"), "no SDK debug dump: {text}");
    assert!(metrics_text(&server).await.contains("no_stream"));

    silt_kinesis::testing::create_stream(&client, &name, 1).await;
    let (status, answer) = post(&server, events.to_string()).await;
    assert_eq!((status, answer), (202, json!({"accepted": 5})));
    server.stop().await;
}

/// An Avro `long` holds timestamps of any year; Spark, pandas and pyarrow's Python values
/// read years 1 to 9999, and one row beyond made the whole table unreadable to them. The
/// door refused such a number in JSON; in Avro it went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_beyond_year_9999_is_refused_in_avro_as_in_json() {
    const SHIPPED: &str = "shop.v1.Shipped";
    const SCHEMA: &str = r#"{"type":"record","name":"Shipped","namespace":"shop.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},
        {"name":"at","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null}]}"#;
    let registry = StoreRegistry::in_memory();
    registry.register(SHIPPED, SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        Arc::new(registry),
        Arc::new(FileSinks::new(dir.path(), 1)),
        GatewayOptions::default(),
    )
    .await;
    let schema = Schema::parse(SCHEMA).unwrap();
    let body = |at: i64| {
        let mut b = timeuuid::TimeUuidGenerator::random().next().to_vec();
        encode::long(1, &mut b);
        encode::long(at, &mut b);
        b
    };
    let url = server.url(&format!("/streams/{SHIPPED}/events"));
    let post_to = |bytes: Vec<u8>| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .body(bytes)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Microseconds sent as milliseconds: year 57872.
    let micros = 1_764_108_000_123_456;
    let (status, why) = post_to(envelope(&schema.fingerprint(), &body(micros))).await;
    assert_eq!(status, 400, "{why}");
    let reason = why["errors"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("timestamp-millis 1764108000123456 is not of a year from 1 to 9999"),
        "{reason}"
    );
    let file = ocf::write(
        &schema,
        &[&body(1_764_108_000_123), &body(micros)],
        ocf::Codec::Null,
        10,
    );
    let (status, why) = post_to(file).await;
    assert_eq!(status, 400, "{why}");
    assert_eq!(why["errors"][0]["index"], 1, "{why}");
    let (status, why) = post_to(
        json!([{"uuid": new_uuid(), "at": micros}])
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(
        (status, why["errors"][0]["path"].clone()),
        (400, json!("/at")),
        "{why}"
    );
    assert!(stream_records(&dir.path().join(SHIPPED)).await.is_empty());

    // The last millisecond of 9999 is taken.
    let (status, why) = post_to(envelope(&schema.fingerprint(), &body(253_402_300_799_999))).await;
    assert_eq!(status, 202, "{why}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_money_currency_that_is_not_an_iso_code_is_refused_in_json_and_in_avro() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_files(dir.path(), 1).await;
    let url = server.url(&format!("/streams/{ORDERS}/events"));
    let c = reqwest::Client::new();
    let order = |currency: &str| {
        json!({"uuid": new_uuid(), "total": {"amount": "19.99", "currency": currency},
               "note": "usd"})
    };
    let post_to = |body: Vec<u8>| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c.post(url).body(body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // JSON: each wrong code is named by its path; a string elsewhere is not a currency.
    for bad in ["usd", "USDX", "US", "$", "€UR"] {
        let (status, body) =
            post_to(json!([order("EUR"), order(bad)]).to_string().into_bytes()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["errors"][0]["index"], 1, "{body}");
        assert_eq!(body["errors"][0]["path"], "/total/currency", "{body}");
        let reason = body["errors"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("not an ISO 4217 currency code"), "{reason}");
    }
    assert!(stream_records(&dir.path().join(ORDERS)).await.is_empty());

    // Avro: the same event as an envelope and in a container file, its code made lower case.
    let schema = Schema::parse(ORDERS_SCHEMA).unwrap();
    let fp = schema.fingerprint();
    let avro = |currency: &str| {
        let mut body = Vec::new();
        silt_wire::json::JsonEncoder::new(&schema)
            .encode(&order("USD"), &mut body)
            .unwrap();
        let at = body.windows(3).position(|w| w == b"USD").unwrap();
        body[at..at + 3].copy_from_slice(currency.as_bytes());
        body
    };
    let (status, body) = post_to(envelope(&fp, &avro("usd"))).await;
    assert_eq!(status, 400, "{body}");
    let reason = body["errors"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("breaks a rule") && reason.contains("\"usd\" of a gfc.avro.Money"),
        "{reason}"
    );
    let bodies = [avro("GBP"), avro("gbp")];
    let file = ocf::write(&schema, &[&bodies[0], &bodies[1]], ocf::Codec::Null, 64);
    let (status, body) = post_to(file).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    assert!(stream_records(&dir.path().join(ORDERS)).await.is_empty());

    // Good codes pass in either form, and land as they were sent.
    let (status, body) =
        post_to(json!([order("USD"), order("XAU")]).to_string().into_bytes()).await;
    assert_eq!((status, &body), (202, &json!({"accepted": 2})));
    let (status, body) = post_to(envelope(&fp, &avro("CHF"))).await;
    assert_eq!((status, &body), (202, &json!({"accepted": 1})));
    let records = stream_records(&dir.path().join(ORDERS)).await;
    assert_eq!(records.len(), 3);
    assert!(records[2].ends_with(&avro("CHF")[16..]));
    server.stop().await;
}
