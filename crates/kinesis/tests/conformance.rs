//! The Source conformance suite against kinesalite, plus what only Kinesis has: KPL
//! aggregates and resharding.

use silt_ingest::{conformance, ReadLimit, Sink, Source, StartAt};
use silt_kinesis::testing::{create_stream, endpoint, test_client, unique, wait_active};
use silt_kinesis::{kpl, KinesisSink, KinesisSource};

async fn fresh(endpoint: &str) -> (KinesisSource, KinesisSink) {
    let client = test_client(endpoint).await;
    let name = unique("conf");
    create_stream(&client, &name, 2).await;
    (
        KinesisSource::new(client.clone(), &name),
        KinesisSink::new(client, &name),
    )
}

#[tokio::test]
async fn kinesalite_passes_the_source_conformance_suite() {
    let Some(e) = endpoint() else { return };
    let (s, k) = fresh(&e).await;
    conformance::reads_in_order(&s, &k).await;
    let (s, k) = fresh(&e).await;
    conformance::resumes_after_a_position_and_replays(&s, &k).await;
    let (s, k) = fresh(&e).await;
    conformance::latest_and_caught_up(&s, &k).await;
    let (s, k) = fresh(&e).await;
    conformance::starts_at_an_arrival_time(&s, &k).await;
    let (s, _) = fresh(&e).await;
    conformance::unknown_shard_is_an_error(&s).await;
    let (s, k) = fresh(&e).await;
    conformance::keyed_puts_keep_a_key_on_one_shard_in_order(&s, &k).await;
}

#[tokio::test]
async fn kpl_aggregates_are_deaggregated_with_sub_sequence_positions() {
    let Some(e) = endpoint() else { return };
    let (source, sink) = fresh(&e).await;
    let agg = kpl::aggregate("k", &[b"a1", b"a2", b"a3"]);
    sink.put(0, &[agg.as_slice(), b"plain".as_slice()])
        .await
        .unwrap();
    let shard = {
        let mut found = None;
        for s in source.shards().await.unwrap() {
            let c = source
                .read(&s.id, &StartAt::Earliest, ReadLimit::default())
                .await
                .unwrap();
            if !c.records.is_empty() {
                found = Some(s.id);
            }
        }
        found.unwrap()
    };
    let (payloads, positions, _) =
        conformance::read_all(&source, &shard, StartAt::Earliest, ReadLimit::default()).await;
    assert_eq!(
        payloads,
        vec![
            b"a1".to_vec(),
            b"a2".to_vec(),
            b"a3".to_vec(),
            b"plain".to_vec()
        ]
    );
    let subs: Vec<u32> = positions
        .iter()
        .map(|p| match p {
            silt_ingest::Position::Sequence { sub, .. } => *sub,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(subs, vec![0, 1, 2, 0]);
    // A checkpoint inside an aggregate resumes with the next user record.
    let (rest, _, _) = conformance::read_all(
        &KinesisSource::new(test_client(&e).await, source.name()),
        &shard,
        StartAt::After(positions[1].clone()),
        ReadLimit::default(),
    )
    .await;
    assert_eq!(rest, vec![b"a3".to_vec(), b"plain".to_vec()]);
}

#[tokio::test]
async fn a_split_shard_ends_and_has_children() {
    let Some(e) = endpoint() else { return };
    let client = test_client(&e).await;
    let name = unique("split");
    create_stream(&client, &name, 1).await;
    let source = KinesisSource::new(client.clone(), &name);
    let sink = KinesisSink::new(client.clone(), &name);
    sink.put(0, &[b"before".as_slice()]).await.unwrap();
    let parent = source.shards().await.unwrap()[0].id.clone();
    client
        .split_shard()
        .stream_name(&name)
        .shard_to_split(&parent)
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    wait_active(&client, &name).await;
    let shards = source.shards().await.unwrap();
    assert_eq!(shards.len(), 3);
    assert!(
        shards
            .iter()
            .filter(|s| s.parents == vec![parent.clone()])
            .count()
            == 2,
        "{shards:?}"
    );
    let (got, _, _) =
        conformance::read_all(&source, &parent, StartAt::Earliest, ReadLimit::default()).await;
    assert_eq!(got, vec![b"before".to_vec()]);
    let c = source
        .read(&parent, &StartAt::Earliest, ReadLimit::default())
        .await
        .unwrap();
    let end = source
        .read(&parent, c.next.as_ref().unwrap(), ReadLimit::default())
        .await
        .unwrap();
    assert!(end.ended, "a closed shard read to its end has ended");
}

#[tokio::test]
async fn a_stream_that_does_not_exist_is_named_short_and_not_retried() {
    let Some(e) = endpoint() else { return };
    let client = test_client(&e).await;
    let name = unique("missing");
    let source = KinesisSource::new(client.clone(), &name);
    let sink = KinesisSink::new(client, &name);
    for err in [
        source.shards().await.unwrap_err(),
        sink.put(0, &[b"x".as_slice()]).await.unwrap_err(),
    ] {
        match &err {
            silt_ingest::Error::NoStream { stream, reason } => {
                assert_eq!(stream, &name);
                assert!(reason.contains("ResourceNotFoundException"), "{err}");
            }
            other => panic!("expected NoStream, got {other:?}"),
        }
        let text = err.to_string();
        // The AWS code and message, not the SDK's debug dump of the raw response.
        assert!(!text.contains("raw: Response"), "{text}");
        assert!(text.len() < 300, "one short line: {text}");
    }
}
