//! The optional framings of SPEC 2 (Avro single-object encoding and Confluent's): records
//! written with an older and the latest schema of a subject, framed each way, resolve their
//! writer through the registry (by CRC-64-AVRO fingerprint, by registry-wide id), decode to the
//! reader schema, and a record naming a writer the registry does not know is rejected with
//! that writer in its reason.

mod common;

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use common::{decoder, CheckedStream};
use serde_json::json;
use silt_ingest::{EventDecoder, FileStream, ReadLimit, Sink, Source, StartAt};
use silt_registry::{conformance, CachedRegistry, SchemaRegistry, StoreRegistry};
use silt_wire::json::JsonEncoder;
use silt_wire::timeuuid::{self, TimeUuidGenerator};
use silt_wire::{Framing, Schema};

/// A record of `schema` (registered as `id`) framed as `framing` says.
fn framed(framing: Framing, schema: &Schema, id: u32, event: &serde_json::Value) -> Vec<u8> {
    let mut out = match framing {
        Framing::SingleObject => {
            let mut p = vec![0xC3, 0x01];
            p.extend_from_slice(&schema.rabin_fingerprint().to_le_bytes());
            p
        }
        Framing::Confluent => {
            let mut p = vec![0x00];
            p.extend_from_slice(&id.to_be_bytes());
            p
        }
        Framing::Envelope => {
            let mut p = vec![silt_wire::ENVELOPE_HEADER];
            p.extend_from_slice(schema.fingerprint().as_bytes());
            p
        }
    };
    JsonEncoder::new(schema).encode(event, &mut out).unwrap();
    out
}

/// A registry whose subject has `old` and then `new` (registered under the rule NONE when
/// `none`): the registry, the old schema and the latest.
async fn two_versions(
    old: &str,
    new: &str,
    none: bool,
) -> (StoreRegistry, Arc<Schema>, Arc<Schema>) {
    let registry = StoreRegistry::in_memory();
    let first = registry.register(conformance::SUBJECT, old).await.unwrap();
    if none {
        registry
            .set_compatibility(conformance::SUBJECT, silt_registry::Compatibility::None)
            .await
            .unwrap();
    }
    registry.register(conformance::SUBJECT, new).await.unwrap();
    let old = registry
        .schema(conformance::SUBJECT, &first.fingerprint)
        .await
        .unwrap();
    let latest = registry.latest(conformance::SUBJECT).await.unwrap();
    (registry, old, latest)
}

async fn decode_framed(framing: Framing, unknown: Vec<u8>, unknown_words: &str) {
    let registry = CachedRegistry::new(StoreRegistry::in_memory());
    let v1 = registry
        .register(conformance::SUBJECT, conformance::V1)
        .await
        .unwrap();
    let v2 = registry
        .register(conformance::SUBJECT, conformance::V2)
        .await
        .unwrap();
    let old = registry
        .schema(conformance::SUBJECT, &v1.fingerprint)
        .await
        .unwrap();
    let latest = registry.latest(conformance::SUBJECT).await.unwrap();
    assert_eq!(latest.fingerprint(), v2.fingerprint);

    let ids = TimeUuidGenerator::new([1; 6], 3);
    let (a, b) = (ids.next(), ids.next());
    let records = [
        framed(
            framing,
            &old,
            v1.id.unwrap(),
            &json!({"uuid": timeuuid::to_string(&a), "productId": 1}),
        ),
        unknown,
        framed(
            framing,
            &latest,
            v2.id.unwrap(),
            &json!({"uuid": timeuuid::to_string(&b), "productId": 2, "channel": "web"}),
        ),
    ];
    let mut checked = CheckedStream::check(decoder(registry, latest, framing), &records).await;
    let (good, rejected) = (&checked.good, &checked.rejected);
    assert_eq!(rejected.len(), 1, "{framing:?}: {rejected:?}");
    assert_eq!(rejected[0].code, "unknown_fingerprint");
    assert!(
        rejected[0].reason.contains(unknown_words),
        "{framing:?}: {}",
        rejected[0].reason
    );
    assert_eq!(rejected[0].raw.as_ref(), records[1].as_slice());
    assert_eq!(
        good.iter().map(|g| g.uuid).collect::<Vec<_>>(),
        vec![a, b],
        "{framing:?}"
    );

    let batch = checked.decode();
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    let uuids = column("uuid");
    let uuids = uuids.as_any().downcast_ref::<StringArray>().unwrap();
    let products = column("productId");
    let products = products.as_any().downcast_ref::<Int64Array>().unwrap();
    let channels = column("channel");
    let channels = channels.as_any().downcast_ref::<StringArray>().unwrap();
    let fingerprints = column("_fingerprint");
    let fingerprints = arrow::compute::cast(&fingerprints, &arrow::datatypes::DataType::Utf8)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .clone();
    // Rows come grouped by writer, in order of first appearance: the old schema's first.
    assert_eq!(uuids.value(0), timeuuid::to_string(&a));
    assert_eq!(uuids.value(1), timeuuid::to_string(&b));
    assert_eq!(products.values().to_vec(), vec![1, 2]);
    assert!(
        channels.is_null(0),
        "the old writer's row takes the default"
    );
    assert_eq!(channels.value(1), "web");
    assert_eq!(fingerprints.value(0), v1.fingerprint.to_hex());
    assert_eq!(fingerprints.value(1), v2.fingerprint.to_hex());
}

#[tokio::test]
async fn confluent_framed_records_resolve_their_writer_by_registry_id() {
    let unknown = {
        let mut r = vec![0x00];
        r.extend_from_slice(&12_345u32.to_be_bytes());
        r.extend_from_slice(&[0; 20]);
        r
    };
    decode_framed(Framing::Confluent, unknown, "Confluent schema id 12345").await;
}

#[tokio::test]
async fn single_object_records_resolve_their_writer_by_crc64_fingerprint() {
    let unknown = {
        let mut r = vec![0xC3, 0x01];
        r.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        r.extend_from_slice(&[0; 20]);
        r
    };
    decode_framed(
        Framing::SingleObject,
        unknown,
        "CRC-64-AVRO fingerprint 1122334455667788",
    )
    .await;
}

/// One stream carrying many types ("one river": the gateway's `kinesis://NAME` sink): a
/// decoder for one subject takes that subject's records, counts the others as another
/// subject's (not bad data: they are never rejected), and does not stop.
#[tokio::test]
async fn records_of_other_subjects_in_one_stream_are_passed_over_not_rejected() {
    const OTHER: &str = r#"{"type":"record","name":"Ordered","namespace":"conf.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},{"name":"total","type":"double"}]}"#;
    let registry = StoreRegistry::in_memory();
    let mine = registry
        .register(conformance::SUBJECT, conformance::V1)
        .await
        .unwrap();
    let other = registry.register("conf.v1.Ordered", OTHER).await.unwrap();
    let reader = registry.latest(conformance::SUBJECT).await.unwrap();
    let other_schema = registry.latest("conf.v1.Ordered").await.unwrap();
    assert_eq!(other_schema.fingerprint(), other.fingerprint);

    let ids = TimeUuidGenerator::new([2; 6], 5);
    let (a, b, c) = (ids.next(), ids.next(), ids.next());
    let records = [
        framed(
            Framing::Envelope,
            &reader,
            0,
            &json!({"uuid": timeuuid::to_string(&a), "productId": 1}),
        ),
        framed(
            Framing::Envelope,
            &other_schema,
            0,
            &json!({"uuid": timeuuid::to_string(&b), "total": 9.5}),
        ),
        framed(
            Framing::Envelope,
            &reader,
            0,
            &json!({"uuid": timeuuid::to_string(&c), "productId": 3}),
        ),
    ];
    let mut checked =
        CheckedStream::check(decoder(registry, reader, Framing::Envelope), &records).await;
    let (good, rejected) = (&checked.good, &checked.rejected);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(good.iter().map(|g| g.uuid).collect::<Vec<_>>(), vec![a, c]);
    assert_eq!(checked.decoder.take_other_subjects(), 1);
    assert_eq!(checked.decoder.take_other_subjects(), 0, "taken");
    let batch = checked.decode();
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(
        batch
            .column(batch.schema().index_of("_fingerprint").unwrap())
            .len(),
        2
    );
    let _ = mine;
}

/// A version registered under the rule NONE that the subject's latest schema cannot read:
/// its records are rejected with the fields that break, the others decode, nothing stops.
#[tokio::test]
async fn records_of_a_writer_the_latest_schema_cannot_read_are_rejected_with_the_fields() {
    const STRING_IDS: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},{"name":"productId","type":"string"}]}"#;
    let (registry, old_schema, latest) = two_versions(conformance::V1, STRING_IDS, true).await;

    let ids = TimeUuidGenerator::new([3; 6], 9);
    let (a, b) = (ids.next(), ids.next());
    let records = [
        framed(
            Framing::Envelope,
            &old_schema,
            0,
            &json!({"uuid": timeuuid::to_string(&a), "productId": 1}),
        ),
        framed(
            Framing::Envelope,
            &latest,
            0,
            &json!({"uuid": timeuuid::to_string(&b), "productId": "p-2"}),
        ),
    ];
    let mut checked =
        CheckedStream::check(decoder(registry, latest, Framing::Envelope), &records).await;
    let (good, rejected) = (&checked.good, &checked.rejected);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].code, "unreadable_writer");
    assert!(
        rejected[0]
            .reason
            .contains(&old_schema.fingerprint().to_hex())
            && rejected[0].reason.contains("/fields/productId"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].uuid, b);
    let batch = checked.decode();
    let products = batch.column(batch.schema().index_of("productId").unwrap());
    let products = products.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(products.value(0), "p-2");
}

/// A producer whose records went out before its schema was registered: they are rejected as
/// unknown while the registry does not know the schema, and the same decoder (a `--follow`
/// run) asks the registry again later, without a restart: the schema is then a newer version
/// of its subject, so the decoder says the run must take it up (the job starts again with it).
#[tokio::test]
async fn a_writer_registered_after_its_first_records_is_asked_for_again_in_the_same_run() {
    let registry = Arc::new(StoreRegistry::in_memory());
    registry
        .register(conformance::SUBJECT, conformance::V1)
        .await
        .unwrap();
    let reader = registry.latest(conformance::SUBJECT).await.unwrap();
    // V2, not registered yet.
    let late = Schema::parse(conformance::V2).unwrap();
    let ids = TimeUuidGenerator::new([5; 6], 2);
    let dir = tempfile::tempdir().unwrap();
    let stream = FileStream::create(dir.path(), 1).unwrap();
    let shard = stream.shards().await.unwrap().remove(0).id;
    let mut decoder = EventDecoder::new(
        registry.clone() as Arc<dyn SchemaRegistry>,
        reader,
        Framing::Envelope,
        "late",
    )
    .unwrap()
    .with_unknown_ttl(std::time::Duration::ZERO);
    let mut next = StartAt::Earliest;
    let mut check_one_more = async |decoder: &mut EventDecoder| {
        let id = ids.next();
        let record = framed(
            Framing::Envelope,
            &late,
            0,
            &json!({"uuid": timeuuid::to_string(&id), "productId": 7, "channel": "app"}),
        );
        stream.put(0, &[record.as_slice()]).await.unwrap();
        let chunk = stream
            .read(&shard, &next, ReadLimit::default())
            .await
            .unwrap();
        next = chunk.next.clone().unwrap();
        let (mut good, mut rejected) = (Vec::new(), Vec::new());
        decoder
            .check(&[chunk], &[shard.as_str()], &mut good, &mut rejected)
            .await
            .map(|()| {
                (
                    good.len(),
                    rejected.iter().map(|r| r.code).collect::<Vec<_>>(),
                )
            })
    };
    assert_eq!(
        check_one_more(&mut decoder).await.unwrap(),
        (0, vec!["unknown_fingerprint"])
    );
    assert_eq!(
        check_one_more(&mut decoder).await.unwrap(),
        (0, vec!["unknown_fingerprint"]),
        "still unknown"
    );
    registry
        .register(conformance::SUBJECT, conformance::V2)
        .await
        .unwrap();
    match check_one_more(&mut decoder).await {
        Err(silt_ingest::Error::ReaderOutdated {
            reader_version: 1,
            writer_version: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// A version whose enum has a symbol the latest schema dropped (registered under the rule
/// NONE): the columnar decoder would take its records until the first one with that symbol,
/// and fail there, every run. The writer is judged once by the resolution rules instead:
/// all its records are rejected, naming the enum, and the stream goes on.
#[tokio::test]
async fn a_writer_with_an_enum_symbol_the_reader_lacks_is_rejected_whole() {
    const ABC: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B","C"]}}]}"#;
    const AB: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}}]}"#;
    let (registry, old_schema, latest) = two_versions(ABC, AB, true).await;
    let ids = TimeUuidGenerator::new([7; 6], 9);
    let event = |kind: &str| json!({"uuid": timeuuid::to_string(&ids.next()), "kind": kind});
    let records = [
        framed(Framing::Envelope, &old_schema, 0, &event("A")),
        framed(Framing::Envelope, &old_schema, 0, &event("C")),
        framed(Framing::Envelope, &latest, 0, &event("B")),
    ];
    let mut checked =
        CheckedStream::check(decoder(registry, latest, Framing::Envelope), &records).await;
    let rejected = &checked.rejected;
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    for r in rejected {
        assert_eq!(r.code, "unreadable_writer");
        assert!(r.reason.contains("/fields/kind"), "{}", r.reason);
    }
    let batch = checked.decode();
    assert_eq!(batch.num_rows(), 1);
}

/// A value the check cannot judge alone: bytes that the latest schema reads as a string (a
/// promotion the resolution rules allow) but that are not UTF-8. arrow-avro refuses the
/// whole batch they are in. The decoder then finds which records it refuses, one by one,
/// and names them; a decoder told of them rejects them in its check, and the rest decode.
#[tokio::test]
async fn records_the_columnar_decoder_refuses_are_named_and_then_rejected() {
    const BYTES: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},{"name":"note","type":"bytes"}]}"#;
    const STRING: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},{"name":"note","type":"string"}]}"#;
    let (registry, old_schema, latest) = two_versions(BYTES, STRING, false).await;
    let ids = TimeUuidGenerator::new([9; 6], 1);
    let record = |note: &[u8]| {
        let mut body = ids.next().to_vec();
        silt_wire::encode::bytes(note, &mut body);
        silt_wire::envelope(&old_schema.fingerprint(), &body)
    };
    let records = [record(b"fine"), record(&[0xff, 0xfe]), record(b"also fine")];
    let mut checked = CheckedStream::check(
        decoder(registry.clone(), latest.clone(), Framing::Envelope),
        &records,
    )
    .await;
    assert_eq!(
        checked.good.len(),
        3,
        "the check cannot tell: {:?}",
        checked.rejected
    );
    let refused =
        match checked
            .decoder
            .decode(&checked.chunks, &[checked.shard.as_str()], &checked.good)
        {
            Err(silt_ingest::Error::Undecodable { records, .. }) => records,
            other => panic!("{other:?}"),
        };
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].position,
        checked.chunks[0].position(1),
        "the second record"
    );
    assert!(
        refused[0].reason.contains("UTF-8") || refused[0].reason.contains("utf8"),
        "{refused:?}"
    );

    // A decoder told of it rejects it in the check; the others decode.
    let mut again = CheckedStream::check(
        decoder(registry, latest, Framing::Envelope).with_undecodable(&refused),
        &records,
    )
    .await;
    assert_eq!(again.rejected.len(), 1);
    assert_eq!(again.rejected[0].code, "undecodable");
    assert_eq!(again.rejected[0].raw.as_ref(), records[1].as_slice());
    let batch = again.decode();
    let notes = batch.column(batch.schema().index_of("note").unwrap());
    let notes = notes.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!((notes.value(0), notes.value(1)), ("fine", "also fine"));
}
