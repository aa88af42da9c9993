//! Reader schemas and the lake's columns: unions of several non-null types
//! (`["null","string","long"]`, a choice of records) reach the lake as structs of their
//! branches (Parquet has no union type); what no column can hold (a recursive record, a field
//! named as a metadata column) stops the job naming it.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use silt_ingest::{Chunk, EventDecoder, RecordRef};
use silt_registry::{SchemaRegistry, StoreRegistry};
use silt_wire::{encode, envelope, timeuuid, Framing, Schema};

const SCHEMA: &str = r#"{"type":"record","name":"Mixed","namespace":"mix.v1","fields":[
  {"name":"uuid","type":"gfc.avro.UUID"},
  {"name":"u","type":["null","string","long"]},
  {"name":"r","type":["null",
      {"type":"record","name":"A","fields":[{"name":"x","type":"int"}]},
      {"type":"record","name":"B","fields":[{"name":"y","type":"string"}]}]},
  {"name":"many","type":{"type":"array","items":["long","string"]}}]}"#;

/// (u, r, many) of one event: u as None / Ok(text) / Err(number), r as None / Ok(x) / Err(y).
type Event = (
    Option<Result<&'static str, i64>>,
    Option<Result<i32, &'static str>>,
    Vec<Result<i64, &'static str>>,
);

fn body(id: &[u8; 16], (u, r, many): &Event) -> Vec<u8> {
    let mut b = id.to_vec();
    match u {
        None => encode::long(0, &mut b),
        Some(Ok(s)) => {
            encode::long(1, &mut b);
            encode::bytes(s.as_bytes(), &mut b);
        }
        Some(Err(n)) => {
            encode::long(2, &mut b);
            encode::long(*n, &mut b);
        }
    }
    match r {
        None => encode::long(0, &mut b),
        Some(Ok(x)) => {
            encode::long(1, &mut b);
            encode::long(*x as i64, &mut b);
        }
        Some(Err(y)) => {
            encode::long(2, &mut b);
            encode::bytes(y.as_bytes(), &mut b);
        }
    }
    if !many.is_empty() {
        encode::long(many.len() as i64, &mut b);
        for m in many {
            match m {
                Ok(n) => {
                    encode::long(0, &mut b);
                    encode::long(*n, &mut b);
                }
                Err(s) => {
                    encode::long(1, &mut b);
                    encode::bytes(s.as_bytes(), &mut b);
                }
            }
        }
    }
    encode::long(0, &mut b);
    b
}

/// Encloses bodies in envelopes in one chunk, arriving now.
fn chunk(schema: &Schema, bodies: impl Iterator<Item = Vec<u8>>) -> Chunk {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut data = Vec::new();
    let mut records = Vec::new();
    for body in bodies {
        let rec = envelope(&schema.fingerprint(), &body);
        records.push(RecordRef::new(
            data.len()..data.len() + rec.len(),
            now,
            records.len() as u64,
        ));
        data.extend_from_slice(&rec);
    }
    Chunk {
        data: bytes::Bytes::from(data),
        records,
        ..Default::default()
    }
}

/// A job's decoder of `subject`, whose one version is `schema` (and that schema).
async fn decoder(subject: &str, schema: &str) -> (EventDecoder, Arc<Schema>) {
    let registry = StoreRegistry::in_memory();
    registry.register(subject, schema).await.unwrap();
    let schema = Arc::new(Schema::parse(schema).unwrap());
    let registry: Arc<dyn SchemaRegistry> = Arc::new(registry);
    let d = EventDecoder::new(registry, schema.clone(), Framing::Envelope, "s").unwrap();
    (d, schema)
}

/// Decodes events of these bodies, each of which must pass the check, into one batch of the
/// decoder's schema.
async fn decode_all(
    d: &mut EventDecoder,
    schema: &Schema,
    bodies: impl Iterator<Item = Vec<u8>>,
) -> arrow::array::RecordBatch {
    let chunks = [chunk(schema, bodies)];
    let (mut good, mut bad) = (vec![], vec![]);
    d.check(&chunks, &["s"], &mut good, &mut bad).await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let b = d.decode(&chunks, &["s"], &good).unwrap().unwrap();
    assert_eq!(b.schema(), d.schema(), "batches have the decoder's schema");
    b
}

/// The events of the test, by number: every branch of each union, over and over.
fn event(i: usize) -> Event {
    const EVENTS: [fn() -> Event; 5] = [
        || (Some(Ok("five")), Some(Ok(1)), vec![Ok(7), Err("seven")]),
        || (Some(Err(5)), Some(Err("b")), vec![]),
        || (None, None, vec![Err("only")]),
        || (Some(Err(-3)), Some(Ok(2)), vec![Ok(1), Ok(2), Ok(3)]),
        || (Some(Ok("")), None, vec![]),
    ];
    EVENTS[i % EVENTS.len()]()
}

/// More rows than one batch of arrow-avro's decoder (8,192), then a second decode: its
/// union decoder once failed every batch after its first (apache/arrow-rs#10876).
#[tokio::test]
async fn unions_of_several_types_decode_to_structs_of_their_branches() {
    let (mut d, schema) = decoder("mix.v1.Mixed", SCHEMA).await;
    let ids = timeuuid::TimeUuidGenerator::new([7; 6], 1);
    let mut first = 0;
    for rows in [10_000, 7] {
        let bodies = (first..first + rows).map(|i| body(&ids.next(), &event(i)));
        let b = decode_all(&mut d, &schema, bodies).await;
        assert_eq!(b.num_rows(), rows);
        check_rows(&b, first);
        first += rows;
    }
}

fn check_rows(b: &arrow::array::RecordBatch, first: usize) {
    let ty = |n: &str| b.schema().field_with_name(n).unwrap().data_type().clone();
    let names = |dt: &DataType| match dt {
        DataType::Struct(f) => f.iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
        other => panic!("{other}"),
    };
    assert_eq!(names(&ty("u")), ["string", "long"]);
    assert_eq!(names(&ty("r")), ["A", "B"]);
    assert!(nested_all_nullable(&ty("r")), "{}", ty("r"));

    let u = b.column_by_name("u").unwrap().as_struct();
    let r = b.column_by_name("r").unwrap().as_struct();
    let many = b.column_by_name("many").unwrap().as_list::<i32>();
    for i in 0..b.num_rows() {
        let (want_u, want_r, want_many) = event(first + i);
        let (s, l) = (
            u.column(0).as_string::<i32>(),
            u.column(1).as_primitive::<Int64Type>(),
        );
        let got_u = (!u.is_null(i)).then(|| match s.is_null(i) {
            false => Ok(s.value(i)),
            true => Err(l.value(i)),
        });
        assert_eq!(got_u.as_ref(), want_u.as_ref(), "u of event {i}");
        assert!(
            u.is_null(i) || s.is_null(i) != l.is_null(i),
            "one branch set"
        );
        let a = r.column(0).as_struct();
        let bb = r.column(1).as_struct();
        // A branch's record is null where the value is another branch, and so are its
        // fields (a reader taking `r."A".x` without `r."A"`'s nulls would read 0 there).
        assert_eq!(a.column(0).is_null(i), a.is_null(i), "r.A.x of event {i}");
        assert_eq!(bb.column(0).is_null(i), bb.is_null(i), "r.B.y of event {i}");
        let got_r = (!r.is_null(i)).then(|| match a.is_null(i) {
            false => Ok(a.column(0).as_primitive::<Int32Type>().value(i)),
            true => Err(bb.column(0).as_string::<i32>().value(i)),
        });
        assert_eq!(got_r.as_ref(), want_r.as_ref(), "r of event {i}");
        let items = many.value(i);
        let items = items.as_struct();
        let got_many: Vec<Result<i64, &str>> = (0..items.len())
            .map(|k| match items.column(0).is_null(k) {
                false => Ok(items.column(0).as_primitive::<Int64Type>().value(k)),
                true => Err(items.column(1).as_string::<i32>().value(k)),
            })
            .collect();
        assert_eq!(got_many, want_many, "many of event {i}");
    }
}

const TWO_ITEMS: &str = r#"{"type":"record","name":"Two","namespace":"two.v1","fields":[
  {"name":"uuid","type":"gfc.avro.UUID"},
  {"name":"it","type":["null",
      {"type":"record","name":"Item","namespace":"a","fields":[{"name":"x","type":"int"}]},
      {"type":"record","name":"Item","namespace":"b","fields":[{"name":"y","type":"string"}]}]}]}"#;

/// A union of two records of one short name (`a.Item`, `b.Item`, valid Avro): each event was
/// refused (its schema "could not be read" by itself, `b.Item` resolved as `a.Item`), and the
/// struct would have had two fields named `Item`. Each branch reads as its own, named in full.
#[tokio::test]
async fn a_union_of_two_records_of_one_short_name_keeps_them_apart() {
    let (mut d, schema) = decoder("two.v1.Two", TWO_ITEMS).await;
    let ids = timeuuid::TimeUuidGenerator::new([7; 6], 1);
    let bodies = (0..3).map(|i| {
        let mut b = ids.next().to_vec();
        encode::long(i, &mut b);
        match i {
            1 => encode::long(7, &mut b),
            2 => encode::bytes(b"s", &mut b),
            _ => {}
        }
        b
    });
    let b = decode_all(&mut d, &schema, bodies).await;
    let it = b.column_by_name("it").unwrap().as_struct();
    assert_eq!(it.column_names(), ["a.Item", "b.Item"]);
    let (a, bb) = (it.column(0).as_struct(), it.column(1).as_struct());
    assert!(it.is_null(0));
    assert_eq!(a.column(0).as_primitive::<Int32Type>().value(1), 7);
    assert!(a.is_valid(1) && bb.is_null(1));
    assert_eq!(bb.column(0).as_string::<i32>().value(2), "s");
    assert!(a.is_null(2) && bb.is_valid(2));
}

/// Whether every field of the struct `dt`, and of the structs among them, may be null.
fn nested_all_nullable(dt: &DataType) -> bool {
    let DataType::Struct(fields) = dt else {
        panic!("{dt} is no struct")
    };
    fields.iter().all(|f| {
        f.is_nullable()
            && (!matches!(f.data_type(), DataType::Struct(_)) || nested_all_nullable(f.data_type()))
    })
}

const PAYMENT: &str = r#"{"type":"record","name":"Paid","namespace":"pay.v1","fields":[
  {"name":"uuid","type":"gfc.avro.UUID"},
  {"name":"pay","type":["null",{"type":"record","name":"Pay","fields":[
      {"name":"amount","type":"long"},
      {"name":"card","type":{"type":"record","name":"Card","fields":[{"name":"last4","type":"int"}]}},
      {"name":"tags","type":{"type":"array","items":"int"}}]}]}]}"#;

/// The fields of a record that may be null may be null in the lake's schema (down to the
/// fields of its fields): where the record is null arrow-avro fills them with zeros, which a
/// required Parquet column inside the record's group is read back as, and DataFusion's
/// `pay.amount` read as 0 (`tests/testdata.rs` reads them back through `silt query`).
#[tokio::test]
async fn fields_of_a_record_that_may_be_null_may_be_null_in_the_lake() {
    let (mut d, schema) = decoder("pay.v1.Paid", PAYMENT).await;
    let ids = timeuuid::TimeUuidGenerator::new([7; 6], 1);
    let paid = |i: usize| i % 3 != 1;
    let bodies = (0..100).map(|i| {
        let mut b = ids.next().to_vec();
        encode::long(paid(i) as i64, &mut b);
        if paid(i) {
            encode::long(100 + i as i64, &mut b);
            encode::long(1000 + i as i64, &mut b);
            encode::long(1, &mut b);
            encode::long(i as i64, &mut b);
            encode::long(0, &mut b);
        }
        b
    });
    let b = decode_all(&mut d, &schema, bodies).await;
    let ty = b
        .schema()
        .field_with_name("pay")
        .unwrap()
        .data_type()
        .clone();
    assert!(nested_all_nullable(&ty), "{ty}");
    let pay = b.column_by_name("pay").unwrap().as_struct();
    let amount = pay.column(0).as_primitive::<Int64Type>();
    let card = pay.column(1).as_struct();
    let last4 = card.column(0).as_primitive::<Int32Type>();
    let tags = pay.column(2).as_list::<i32>();
    for i in 0..100 {
        assert_eq!(pay.is_null(i), !paid(i), "pay of event {i}");
        if paid(i) {
            assert_eq!(amount.value(i), 100 + i as i64);
            assert_eq!(last4.value(i), 1000 + i as i32);
            assert_eq!(
                tags.value(i).as_primitive::<Int32Type>().values(),
                &[i as i32]
            );
        }
    }
}

/// A field of Avro's `null` type is a nullable column: arrow-avro gives it as not nullable,
/// and Parquet stored a required column of no values, which Spark 4.0 read as 0 where
/// pyarrow and DuckDB read null. (Within a nested record arrow-avro cannot decode one: the
/// registry refuses that.)
#[tokio::test]
async fn a_field_of_the_null_type_is_a_nullable_column() {
    const NULLS: &str = r#"{"type":"record","name":"N","namespace":"nul.v1","fields":[
      {"name":"uuid","type":"gfc.avro.UUID"},
      {"name":"nothing","type":"null"},
      {"name":"r","type":["null",{"type":"record","name":"R","fields":[{"name":"x","type":"int"}]}]}]}"#;
    let (mut d, schema) = decoder("nul.v1.N", NULLS).await;
    let ids = timeuuid::TimeUuidGenerator::new([7; 6], 1);
    let bodies = (0..3).map(|_| {
        let mut b = ids.next().to_vec();
        encode::long(0, &mut b); // r is null
        b
    });
    let b = decode_all(&mut d, &schema, bodies).await;
    assert!(b.schema().field_with_name("nothing").unwrap().is_nullable());
    assert_eq!(b.column_by_name("nothing").unwrap().logical_null_count(), 3);
    // Written to Parquet, the column is optional.
    let mut file = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut file, b.schema(), None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    let meta =
        parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(file))
            .map(|r| {
                parquet::file::reader::FileReader::metadata(&r)
                    .file_metadata()
                    .schema_descr_ptr()
            })
            .unwrap();
    let column = meta
        .columns()
        .iter()
        .find(|c| c.name() == "nothing")
        .unwrap()
        .clone();
    assert!(column.self_type().is_optional(), "{column:?}");
}

/// Why a job's decoder refuses `reader` (a schema the registry refuses now, but one a registry
/// may hold from before).
fn refusal(reader: &str) -> String {
    let registry: Arc<dyn SchemaRegistry> = Arc::new(StoreRegistry::in_memory());
    let reader = Arc::new(Schema::parse(reader).unwrap());
    EventDecoder::new(registry, reader, Framing::Envelope, "s")
        .unwrap_err()
        .to_string()
}

/// A recursive record stops the job with the record and where it holds itself, not
/// arrow-avro's "Failed to resolve".
#[test]
fn a_recursive_reader_is_refused_naming_the_record_and_the_path() {
    let e = refusal(
        r#"{"type":"record","name":"Tree","namespace":"rec.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},
        {"name":"root","type":{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},
            {"name":"kids","type":{"type":"array","items":"Node"}}]}}]}"#,
    );
    assert!(
        e.contains(
            "at /fields/root/type/fields/kids/type/items: record `rec.v1.Node` holds itself"
        ),
        "{e}"
    );
}

/// A field named as a metadata column stops the job naming it: the lake would hold two
/// columns of one name, which no reader takes.
#[test]
fn a_reader_with_a_field_named_as_a_metadata_column_is_refused() {
    let e = refusal(
        r#"{"type":"record","name":"C","namespace":"c.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},{"name":"_shard","type":"string"}]}"#,
    );
    assert!(
        e.contains("at /fields/_shard: `_shard` is the name of a metadata column"),
        "{e}"
    );
}
