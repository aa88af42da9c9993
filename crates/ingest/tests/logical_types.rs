//! Avro logical types become the matching Arrow types (and so Parquet logical types).

mod common;

use std::sync::Arc;

use arrow::array::{Array, AsArray, Decimal128Array, StringArray};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type, TimeUnit};
use common::{decoder, CheckedStream};
use silt_ingest::{Chunk, EventDecoder, RecordRef};
use silt_registry::{SchemaRegistry, StoreRegistry};
use silt_wire::{encode, envelope, timeuuid, Framing, Schema};

const SCHEMA: &str = r#"{"type":"record","name":"Order","namespace":"shop.v1","fields":[
  {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
  {"name":"placed","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"paid","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"day","type":{"type":"int","logicalType":"date"}},
  {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
  {"name":"total","type":"gfc.avro.Money"}]}"#;

#[tokio::test]
async fn logical_types_map_to_arrow_types() {
    let registry = StoreRegistry::in_memory();
    registry.register("shop.v1.Order", SCHEMA).await.unwrap();
    let schema = Arc::new(Schema::parse(SCHEMA).unwrap());
    let id = timeuuid::TimeUuidGenerator::random().next();
    let mut body = Vec::new();
    encode::bytes(timeuuid::to_string(&id).as_bytes(), &mut body);
    encode::long(1_764_108_000_123, &mut body);
    encode::long(1_764_108_000_123_456, &mut body);
    encode::long(20_417, &mut body);
    encode::bytes(&[0x04, 0xD2], &mut body); // 12.34
    encode::bytes(&[0x01, 0xE2, 0x40], &mut body); // 12.3456 at scale 4
    encode::bytes(b"EUR", &mut body);
    let rec = envelope(&schema.fingerprint(), &body);
    let chunk = Chunk {
        data: bytes::Bytes::from(rec.clone()),
        records: vec![RecordRef::new(
            0..rec.len(),
            timeuuid::unix_millis(&id).unwrap(),
            0,
        )],
        ..Default::default()
    };
    let registry: Arc<dyn SchemaRegistry> = Arc::new(registry);
    let mut d = EventDecoder::new(registry, schema, Framing::Envelope, "orders").unwrap();
    let (mut good, mut bad) = (vec![], vec![]);
    let chunks = [chunk];
    d.check(&chunks, &["s"], &mut good, &mut bad).await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let b = d.decode(&chunks, &["s"], &good).unwrap().unwrap();
    let ty = |n: &str| b.schema().field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("uuid"), DataType::Utf8);
    assert!(
        matches!(
            ty("placed"),
            DataType::Timestamp(TimeUnit::Millisecond, Some(_))
        ),
        "{:?}",
        ty("placed")
    );
    assert!(
        matches!(
            ty("paid"),
            DataType::Timestamp(TimeUnit::Microsecond, Some(_))
        ),
        "{:?}",
        ty("paid")
    );
    assert_eq!(ty("day"), DataType::Date32);
    assert_eq!(ty("price"), DataType::Decimal128(10, 2));
    match ty("total") {
        DataType::Struct(f) => {
            assert_eq!(f[0].data_type(), &DataType::Decimal128(20, 4));
            assert_eq!(f[1].data_type(), &DataType::Utf8);
        }
        other => panic!("{other:?}"),
    }
    let price = b.column_by_name("price").unwrap();
    let price = price.as_any().downcast_ref::<Decimal128Array>().unwrap();
    assert_eq!(price.value_as_string(0), "12.34");
    let uuid = b.column_by_name("uuid").unwrap();
    assert_eq!(
        uuid.as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0),
        timeuuid::to_string(&id)
    );
    assert!(!b.column_by_name("total").unwrap().is_null(0));
}

/// An Avro `duration`, accepted by the registry, lands as columns Parquet stores: its
/// month-day-nanosecond interval made the Parquet writer fail ("not yet implemented") at
/// every run of the job, so the stream stopped. Beside it, the widest decimal the registry
/// takes (38 digits).
#[tokio::test]
async fn durations_and_the_widest_decimals_land_as_columns_parquet_stores() {
    const WIDE: &str = r#"{"type":"record","name":"Lease","namespace":"shop.v1","fields":[
      {"name":"uuid","type":"gfc.avro.UUID"},
      {"name":"term","type":{"type":"fixed","name":"Term","size":12,"logicalType":"duration"}},
      {"name":"grace","type":["null",{"type":"fixed","name":"Grace","size":12,"logicalType":"duration"}],"default":null},
      {"name":"big","type":{"type":"bytes","logicalType":"decimal","precision":38,"scale":3}}]}"#;
    let registry = StoreRegistry::in_memory();
    registry.register("shop.v1.Lease", WIDE).await.unwrap();
    let schema = Arc::new(Schema::parse(WIDE).unwrap());
    let ids = timeuuid::TimeUuidGenerator::random();
    let duration = |months: u32, days: u32, millis: u32| {
        [months, days, millis]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    // 12345678901234567890123456789012345.123 at scale 3 (Python's int.to_bytes).
    let big = [
        0x09, 0x49, 0xb0, 0xf6, 0xf0, 0x02, 0x33, 0x13, 0xc4, 0x49, 0x90, 0x50, 0xde, 0x38, 0xf1,
        0x23,
    ];
    let mut data = Vec::new();
    let mut records = Vec::new();
    for (i, grace) in [Some(duration(0, 3, 500)), None].into_iter().enumerate() {
        let id = ids.next();
        let mut body = id.to_vec();
        body.extend(duration(14, 3_000_000_000, 86_399_999));
        match grace {
            Some(g) => {
                encode::long(1, &mut body);
                body.extend(g);
            }
            None => encode::long(0, &mut body),
        }
        encode::bytes(&big, &mut body);
        let rec = envelope(&schema.fingerprint(), &body);
        let arrival_ms = timeuuid::unix_millis(&id).unwrap();
        records.push(RecordRef::new(
            data.len()..data.len() + rec.len(),
            arrival_ms,
            i as u64,
        ));
        data.extend(rec);
    }
    let chunks = [Chunk {
        data: bytes::Bytes::from(data),
        records,
        ..Default::default()
    }];
    let registry: Arc<dyn SchemaRegistry> = Arc::new(registry);
    let mut d = EventDecoder::new(registry, schema, Framing::Envelope, "leases").unwrap();
    let (mut good, mut bad) = (vec![], vec![]);
    d.check(&chunks, &["s"], &mut good, &mut bad).await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let b = d.decode(&chunks, &["s"], &good).unwrap().unwrap();
    let parts = |name: &str, row: usize| {
        let s = b.column_by_name(name).unwrap().as_struct();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["months", "days", "milliseconds"]);
        (!s.is_null(row)).then(|| {
            (0..3)
                .map(|k| s.column(k).as_primitive::<Int64Type>().value(row))
                .collect::<Vec<i64>>()
        })
    };
    // Days past 2^31: the counts are unsigned.
    assert_eq!(parts("term", 0), Some(vec![14, 3_000_000_000, 86_399_999]));
    assert_eq!(parts("grace", 0), Some(vec![0, 3, 500]));
    assert_eq!(parts("grace", 1), None);
    let grace = b.column_by_name("grace").unwrap().as_struct();
    assert!(
        grace.column(1).is_null(1),
        "a null duration's parts are null too"
    );
    let wide = b.column_by_name("big").unwrap();
    assert_eq!(wide.data_type(), &DataType::Decimal128(38, 3));
    assert_eq!(
        wide.as_primitive::<Decimal128Type>().value_as_string(0),
        "12345678901234567890123456789012345.123"
    );

    // And Parquet takes the batch, and gives it back.
    let mut file = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut file, b.schema(), None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    let back: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        bytes::Bytes::from(file),
        1024,
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(back, vec![b]);
}

/// Values arrow-avro refuses when it decodes (a uuid string that is not one, a decimal wider
/// than Arrow holds) once failed the whole micro-batch they were decoded in, and so every
/// rerun: one bad record stopped the stream. They are rejected by the check now, with their
/// reason, and the good records beside them decode.
#[tokio::test]
async fn values_the_columnar_decoder_would_refuse_are_rejected_not_fatal() {
    const LEDGER: &str = r#"{"type":"record","name":"Entry","namespace":"ledger.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},
        {"name":"ref","type":{"type":"string","logicalType":"uuid"}},
        {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}"#;
    let registry = StoreRegistry::in_memory();
    registry.register("ledger.v1.Entry", LEDGER).await.unwrap();
    let reader = registry.latest("ledger.v1.Entry").await.unwrap();
    let ids = timeuuid::TimeUuidGenerator::new([6; 6], 4);
    let record = |reference: &[u8], amount: &[u8]| {
        let mut body = ids.next().to_vec();
        encode::bytes(reference, &mut body);
        encode::bytes(amount, &mut body);
        envelope(&reader.fingerprint(), &body)
    };
    let good_ref = b"165c0cf3-ca4a-11f0-bb9a-0242ac110002";
    let records = [
        record(good_ref, &[0x04, 0xD2]),
        record(b"not-a-uuid", &[0x04, 0xD2]),
        record(good_ref, &[0x7f; 20]),
        record(good_ref, &[0x30, 0x39]),
    ];
    let mut checked =
        CheckedStream::check(decoder(registry, reader, Framing::Envelope), &records).await;
    let reasons: Vec<(&str, &str)> = checked
        .rejected
        .iter()
        .map(|r| (r.code, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|(code, _)| *code == "bad_body"),
        "{reasons:?}"
    );
    assert!(reasons[0].1.contains("not a UUID"), "{reasons:?}");
    assert!(
        reasons[1].1.contains("more than fits in 16 bytes"),
        "{reasons:?}"
    );
    let batch = checked.decode();
    let amounts = batch.column(batch.schema().index_of("amount").unwrap());
    let amounts = amounts.as_any().downcast_ref::<Decimal128Array>().unwrap();
    assert_eq!(amounts.values().to_vec(), vec![1234, 12345]);
}
