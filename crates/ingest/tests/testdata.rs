//! The independent test stream (`shared/testdata/clickstream-small`, made with fastavro):
//! every record checks and decodes as expected with both schema versions registered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use silt_ingest::{Chunk, EventDecoder, FileStream, ReadLimit, Source, StartAt};
use silt_registry::{SchemaRegistry, StoreRegistry};
use silt_wire::Framing;

fn testdata() -> PathBuf {
    silt_wire::testing::clickstream_small()
}

const SUBJECT: &str = "com.gilt.clickstream.v1.ProductPageViewedEvent";

#[tokio::test]
async fn every_testdata_record_checks_and_decodes() {
    let dir = testdata();
    let registry = StoreRegistry::in_memory();
    for v in ["v1", "v2"] {
        let text = std::fs::read_to_string(dir.join(format!("schemas/{v}.avsc"))).unwrap();
        registry.register(SUBJECT, &text).await.unwrap();
    }
    let reader = registry.latest(SUBJECT).await.unwrap();
    let registry: Arc<dyn SchemaRegistry> = Arc::new(registry);
    let mut decoder =
        EventDecoder::new(registry, reader, Framing::Envelope, "clickstream-small").unwrap();

    let stream = FileStream::open(dir.join("stream")).unwrap();
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut shard_names: Vec<String> = Vec::new();
    for shard in stream.shards().await.unwrap() {
        let c = stream
            .read(&shard.id, &StartAt::Earliest, ReadLimit::default())
            .await
            .unwrap();
        assert!(c.caught_up);
        chunks.push(c);
        shard_names.push(shard.id);
    }
    let shards: Vec<&str> = shard_names.iter().map(|s| s.as_str()).collect();
    let (mut good, mut rejected) = (Vec::new(), Vec::new());
    decoder
        .check(&chunks, &shards, &mut good, &mut rejected)
        .await
        .unwrap();

    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let events = expected["events"].as_object().unwrap();
    assert_eq!(good.len(), 420, "400 distinct events and 20 repeats");
    assert_eq!(
        events.len() + expected["duplicates"].as_u64().unwrap() as usize,
        420
    );
    assert_eq!(rejected.len(), 18);

    // Three of each kind of bad record; short and empty records are both "too short".
    let mut codes: HashMap<&str, usize> = HashMap::new();
    for r in &rejected {
        *codes.entry(r.code).or_default() += 1;
        let expected_words = match r.code {
            "too_short" => "record too short",
            "bad_header" => "bad header: found 0x",
            "unknown_fingerprint" => "unknown writer schema: fingerprint",
            "bad_body" => "body does not decode at byte",
            "trailing_bytes" => "trailing bytes after the record",
            other => panic!("unexpected rejection {other}: {}", r.reason),
        };
        assert!(
            r.reason.contains(expected_words),
            "{}: {}",
            r.code,
            r.reason
        );
    }
    let want: HashMap<&str, usize> = [
        ("too_short", 6),
        ("bad_header", 3),
        ("unknown_fingerprint", 3),
        ("bad_body", 3),
        ("trailing_bytes", 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(codes, want);
    assert_eq!(
        rejected.iter().filter(|r| r.raw.is_empty()).count(),
        3,
        "three empty records"
    );

    // Decode every good record (repeats included) and compare with expected.json.
    let batch = decoder.decode(&chunks, &shards, &good).unwrap().unwrap();
    assert_eq!(batch.num_rows(), 420);
    // Both versions are flat records: this compares silt's own decoder with fastavro.
    for v in ["v1", "v2"] {
        let text = std::fs::read_to_string(dir.join(format!("schemas/{v}.avsc"))).unwrap();
        let fp = silt_wire::Schema::parse(&text).unwrap().fingerprint();
        assert_eq!(decoder.uses_flat_decoder(&fp), Some(true), "{v}");
    }
    let col = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    let uuid = col("uuid");
    let uuid = uuid.as_any().downcast_ref::<StringArray>().unwrap();
    let product = col("productId");
    let product = product.as_any().downcast_ref::<Int64Array>().unwrap();
    let sale = col("saleId");
    let sale = sale.as_any().downcast_ref::<Int64Array>().unwrap();
    let channel = col("channel");
    let channel = channel.as_any().downcast_ref::<StringArray>().unwrap();
    let event_time =
        arrow::compute::cast(&col("_event_time"), &arrow::datatypes::DataType::Int64).unwrap();
    let event_time = event_time.as_any().downcast_ref::<Int64Array>().unwrap();
    for i in 0..batch.num_rows() {
        let e = &events[uuid.value(i)];
        assert_eq!(
            product.value(i),
            e["productId"].as_i64().unwrap(),
            "row {i}"
        );
        assert_eq!(sale.is_null(i), e["saleId"].is_null(), "row {i}");
        if !sale.is_null(i) {
            assert_eq!(sale.value(i), e["saleId"].as_i64().unwrap());
        }
        assert_eq!(channel.is_null(i), e["channel"].is_null(), "row {i}");
        if !channel.is_null(i) {
            assert_eq!(channel.value(i), e["channel"].as_str().unwrap());
        }
        assert_eq!(
            event_time.value(i) / 1000,
            e["event_ms"].as_i64().unwrap(),
            "row {i}"
        );
    }
    // The fingerprint column is dictionary-encoded text; read it as plain strings.
    let fp_col = arrow::compute::cast(
        batch.column(batch.schema().index_of("_fingerprint").unwrap()),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let fps: std::collections::HashSet<&str> = {
        let c = fp_col.as_any().downcast_ref::<StringArray>().unwrap();
        (0..c.len()).map(|i| c.value(i)).collect()
    };
    let want_fps: std::collections::HashSet<&str> = expected["fingerprints"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(fps, want_fps, "both writer versions land in one table");
}
