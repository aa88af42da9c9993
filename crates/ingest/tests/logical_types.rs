//! Avro logical types become the matching Arrow types (and so Parquet logical types).

use std::sync::Arc;

use arrow::array::{Array, Decimal128Array, StringArray};
use arrow::datatypes::{DataType, TimeUnit};
use silt_ingest::{Chunk, EventDecoder, Position, RecordRef};
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
        records: vec![RecordRef {
            range: 0..rec.len(),
            position: Position::Offset(0),
            arrival_ms: 1,
        }],
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
