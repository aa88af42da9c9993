//! The flat-record decoder gives the batches arrow-avro gives, for every kind of field it
//! takes (dates, times, timestamps, enums and decimals among them), across versions (fields added with null defaults, fields dropped, fields moved),
//! nulls in either union order and batches cut at the decoder's size; writers of other shapes
//! stay with arrow-avro.

mod common;

use arrow::array::{Array, Int64Array};
use common::{decoder, CheckedStream};
use silt_registry::{SchemaRegistry, StoreRegistry};
use silt_wire::testing::SplitMix64 as Rng;
use silt_wire::{encode, envelope, timeuuid, Framing, Schema};

const SUBJECT: &str = "iot.v1.Reading";

/// The fields both versions end with, in the same order.
macro_rules! common_fields {
    () => {
        r#"
 {"name":"tag","type":{"type":"fixed","name":"Tag","size":4}},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"at_us","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null},
 {"name":"local","type":{"type":"long","logicalType":"local-timestamp-micros"}},
 {"name":"tod","type":{"type":"int","logicalType":"time-millis"}},
 {"name":"tod_us","type":{"type":"long","logicalType":"time-micros"}},
 {"name":"unit","type":{"type":"enum","name":"Unit","symbols":["C","F","K"]}},
 {"name":"maybe_unit","type":["null","Unit"],"default":null},
 {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
 {"name":"maybe_price","type":["null",{"type":"bytes","logicalType":"decimal","precision":38,"scale":9}],"default":null},
 {"name":"big","type":{"type":"fixed","name":"Big","size":16,"logicalType":"decimal","precision":38,"scale":0}},
 {"name":"maybe_long","type":["null","long"],"default":null},
 {"name":"maybe_text","type":["string","null"],"default":""},
 {"name":"maybe_flag","type":["null","boolean"],"default":null},
 {"name":"maybe_tag","type":["null","Tag"],"default":null},
 {"name":"maybe_double","type":["null","double"],"default":null}"#
    };
}

/// Version 1: no `added`, a `legacy` field version 2 dropped, `label` before `raw`.
const V1: &str = concat!(
    r#"{"type":"record","name":"Reading","namespace":"iot.v1","fields":[
 {"name":"uuid","type":"gfc.avro.UUID"},
 {"name":"on","type":"boolean"},
 {"name":"legacy","type":["null","string"],"default":null},
 {"name":"count","type":"int"},
 {"name":"total","type":"long"},
 {"name":"ratio","type":"float"},
 {"name":"value","type":"double"},
 {"name":"label","type":"string"},
 {"name":"raw","type":"bytes"},"#,
    common_fields!(),
    "]}"
);

const V2: &str = concat!(
    r#"{"type":"record","name":"Reading","namespace":"iot.v1","fields":[
 {"name":"uuid","type":"gfc.avro.UUID"},
 {"name":"on","type":"boolean"},
 {"name":"count","type":"int"},
 {"name":"total","type":"long"},
 {"name":"ratio","type":"float"},
 {"name":"value","type":"double"},
 {"name":"raw","type":"bytes"},
 {"name":"label","type":"string"},"#,
    common_fields!(),
    r#",
 {"name":"added","type":["null","string"],"default":null}]}"#
);

/// Random values for the test's records.
trait Values {
    fn coin(&mut self) -> bool;
    fn text(&mut self) -> String;
    fn bytes(&mut self) -> Vec<u8>;
}

impl Values for Rng {
    fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    fn text(&mut self) -> String {
        let n = (self.next_u64() % 40) as usize;
        // Multi-byte characters too.
        (0..n)
            .map(|_| ['a', 'z', '0', 'é', '€', '字', ' '][(self.next_u64() % 7) as usize])
            .collect()
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = (self.next_u64() % 30) as usize;
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// One body of version 1 or 2, with random values and nulls (numbers of every size, the
/// extremes included).
fn body(rng: &mut Rng, uuid: &[u8; 16], v2: bool) -> Vec<u8> {
    let mut b = uuid.to_vec();
    let long = |rng: &mut Rng| match rng.next_u64() % 4 {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => (rng.next_u64() % 200) as i64 - 100,
        _ => rng.next_u64() as i64,
    };
    b.push(rng.coin() as u8);
    if !v2 {
        if rng.coin() {
            encode::long(0, &mut b);
        } else {
            encode::long(1, &mut b);
            encode::bytes(rng.text().as_bytes(), &mut b);
        }
    }
    encode::long(long(rng) as i32 as i64, &mut b);
    encode::long(long(rng), &mut b);
    b.extend_from_slice(&(rng.next_u64() as u32 as f32 / 7.0).to_le_bytes());
    b.extend_from_slice(&(rng.next_u64() as f64 / 3.0).to_le_bytes());
    let (raw, label) = (rng.bytes(), rng.text());
    if v2 {
        encode::bytes(&raw, &mut b);
        encode::bytes(label.as_bytes(), &mut b);
    } else {
        encode::bytes(label.as_bytes(), &mut b);
        encode::bytes(&raw, &mut b);
    }
    b.extend_from_slice(&(rng.next_u64() as u32).to_le_bytes());
    encode::long((rng.next_u64() % 40_000) as i64 - 20_000, &mut b); // day
    encode::long(long(rng), &mut b); // at
    if rng.coin() {
        encode::long(0, &mut b);
    } else {
        encode::long(1, &mut b);
        encode::long(long(rng), &mut b); // at_us
    }
    encode::long(long(rng), &mut b); // local
    encode::long((rng.next_u64() % 86_400_000) as i64, &mut b); // tod
    encode::long((rng.next_u64() % 86_400_000_000) as i64, &mut b); // tod_us
    encode::long((rng.next_u64() % 3) as i64, &mut b); // unit
    if rng.coin() {
        encode::long(0, &mut b);
    } else {
        encode::long(1, &mut b);
        encode::long((rng.next_u64() % 3) as i64, &mut b); // maybe_unit
    }
    let e38 = 10i128.pow(38);
    let wide = |rng: &mut Rng| {
        let v = ((rng.next_u64() as i128) << 64 | rng.next_u64() as i128) % e38;
        if rng.coin() {
            -v
        } else {
            v
        }
    };
    let price = (rng.next_u64() % 20_000_000_000) as i128 - 10_000_000_000 + 1;
    encode::bytes(&decimal_bytes(price, rng.coin()), &mut b);
    if rng.coin() {
        encode::long(0, &mut b);
    } else {
        encode::long(1, &mut b);
        let v = match rng.next_u64() % 4 {
            0 => 0,
            1 => e38 - 1,
            2 => 1 - e38,
            _ => wide(rng),
        };
        encode::bytes(&decimal_bytes(v, rng.coin()), &mut b);
    }
    b.extend_from_slice(&wide(rng).to_be_bytes()); // big: fixed(16)
                                                   // maybe_long: [null, long]
    if rng.coin() {
        encode::long(0, &mut b);
    } else {
        encode::long(1, &mut b);
        encode::long(long(rng), &mut b);
    }
    // maybe_text: [string, null]
    if rng.coin() {
        encode::long(1, &mut b);
    } else {
        encode::long(0, &mut b);
        encode::bytes(rng.text().as_bytes(), &mut b);
    }
    // maybe_flag: [null, boolean]
    if rng.coin() {
        encode::long(0, &mut b);
    } else {
        encode::long(1, &mut b);
        b.push(rng.coin() as u8);
    }
    // maybe_tag: [null, Tag]
    if rng.coin() {
        encode::long(0, &mut b);
    } else {
        encode::long(1, &mut b);
        b.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
    }
    // maybe_double: [null, double]
    if rng.coin() {
        encode::long(0, &mut b);
    } else {
        encode::long(1, &mut b);
        b.extend_from_slice(&(rng.next_u64() as f64).to_le_bytes());
    }
    if v2 {
        if rng.coin() {
            encode::long(0, &mut b);
        } else {
            encode::long(1, &mut b);
            encode::bytes(rng.text().as_bytes(), &mut b);
        }
    }
    b
}

/// A decimal's shortest two's-complement big-endian bytes (none for 0), with one more sign
/// byte in front when `pad` and it fits (readers skip it).
fn decimal_bytes(v: i128, pad: bool) -> Vec<u8> {
    let b = v.to_be_bytes();
    let sign = if v < 0 { 0xff } else { 0 };
    let mut start = 0;
    while start < 16 && b[start] == sign && (start == 15 || (b[start + 1] ^ sign) & 0x80 == 0) {
        start += 1;
    }
    let mut out = Vec::new();
    if pad && start > 0 {
        out.push(sign);
    }
    out.extend_from_slice(&b[start..]);
    out
}

#[tokio::test]
async fn flat_records_decode_as_arrow_avro_decodes_them() {
    let registry = StoreRegistry::in_memory();
    registry.register(SUBJECT, V1).await.unwrap();
    registry.register(SUBJECT, V2).await.unwrap();
    let reader = registry.latest(SUBJECT).await.unwrap();
    let (v1, v2) = (Schema::parse(V1).unwrap(), Schema::parse(V2).unwrap());
    let ids = timeuuid::TimeUuidGenerator::new([6; 6], 4);
    let mut rng = Rng(11);
    // More than two of the decoder's 8,192-row batches per version, versions in runs.
    let records: Vec<Vec<u8>> = (0..40_000)
        .map(|i| {
            let new = (i / 300) % 2 == 1;
            let fp = if new {
                v2.fingerprint()
            } else {
                v1.fingerprint()
            };
            envelope(&fp, &body(&mut rng, &ids.next(), new))
        })
        .collect();

    let mut flat = CheckedStream::check(
        decoder(registry.clone(), reader.clone(), Framing::Envelope),
        &records,
    )
    .await;
    let mut general = CheckedStream::check(
        decoder(registry, reader, Framing::Envelope).with_flat_decoder(false),
        &records,
    )
    .await;
    assert!(flat.rejected.is_empty(), "{:?}", flat.rejected);
    assert_eq!(flat.good.len(), records.len());
    let (a, b) = (flat.decode(), general.decode());
    // Still so after decoding: a record the flat decoder failed on would have handed the
    // writer to arrow-avro.
    for fp in [v1.fingerprint(), v2.fingerprint()] {
        assert_eq!(flat.decoder.uses_flat_decoder(&fp), Some(true));
        assert_eq!(general.decoder.uses_flat_decoder(&fp), Some(false));
    }
    assert_eq!(a.num_rows(), records.len());
    assert_eq!(a.schema(), b.schema());
    for (i, field) in a.schema().fields().iter().enumerate() {
        if field.name() == "_arrival_time" {
            continue; // each stream's own
        }
        assert!(
            a.column(i).to_data() == b.column(i).to_data(),
            "column {} differs",
            field.name()
        );
    }
    let added = a.column(a.schema().index_of("added").unwrap());
    assert!(added.null_count() > 0 && added.null_count() < added.len());
}

#[tokio::test]
async fn writers_of_other_shapes_are_decoded_by_arrow_avro() {
    // A field the writer lacks whose default is not null, and an array.
    const OLD: &str = r#"{"type":"record","name":"Reading","namespace":"iot.v1","fields":[
     {"name":"uuid","type":"gfc.avro.UUID"},
     {"name":"total","type":"long"}]}"#;
    const NEW: &str = r#"{"type":"record","name":"Reading","namespace":"iot.v1","fields":[
     {"name":"uuid","type":"gfc.avro.UUID"},
     {"name":"total","type":"long"},
     {"name":"level","type":"long","default":5},
     {"name":"tags","type":{"type":"array","items":"string"},"default":[]}]}"#;
    let registry = StoreRegistry::in_memory();
    registry.register(SUBJECT, OLD).await.unwrap();
    registry.register(SUBJECT, NEW).await.unwrap();
    let reader = registry.latest(SUBJECT).await.unwrap();
    let old = Schema::parse(OLD).unwrap();
    let ids = timeuuid::TimeUuidGenerator::new([6; 6], 4);
    let mut records = Vec::new();
    for total in [7i64, -3] {
        let mut b = ids.next().to_vec();
        encode::long(total, &mut b);
        records.push(envelope(&old.fingerprint(), &b));
    }
    let mut b = ids.next().to_vec();
    encode::long(1, &mut b);
    encode::long(9, &mut b);
    encode::long(1, &mut b); // one tag
    encode::bytes(b"x", &mut b);
    encode::long(0, &mut b); // end of the array
    records.push(envelope(&reader.fingerprint(), &b));
    let mut checked = CheckedStream::check(
        decoder(registry, reader.clone(), Framing::Envelope),
        &records,
    )
    .await;
    assert_eq!(
        checked.decoder.uses_flat_decoder(&old.fingerprint()),
        Some(false)
    );
    assert_eq!(
        checked.decoder.uses_flat_decoder(&reader.fingerprint()),
        Some(false)
    );
    let batch = checked.decode();
    let col = |n: &str| {
        batch
            .column(batch.schema().index_of(n).unwrap())
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    };
    assert_eq!(col("total"), vec![7, -3, 1]);
    assert_eq!(col("level"), vec![5, 5, 9]);
}

#[test]
fn the_schemas_parse() {
    Schema::parse(V1).unwrap();
    Schema::parse(V2).unwrap();
}
