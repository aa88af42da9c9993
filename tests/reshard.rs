//! Resharding and the shared storage path: a job over an in-memory stream that splits, with
//! its registry, lake and checkpoints in memory (`memory://`, the same code path as S3).

use std::sync::Arc;

use silt::gen;
use silt::job::{self, Job, RunOptions};
use silt_ingest::InMemoryStream;
use silt_lake_writer::{CommitLog, WriterOptions};
use silt_registry::{SchemaRegistry, StoreRegistry};
use silt_wire::{envelope, timeuuid::TimeUuidGenerator};

fn event(ids: &TimeUuidGenerator, ms: i64, product: i64) -> Vec<u8> {
    let (_, v2) = gen::schemas();
    let mut body = Vec::new();
    gen::body(
        &ids.next_at_unix_millis(ms),
        product,
        None,
        Some("web"),
        true,
        &mut body,
    );
    envelope(&v2.fingerprint(), &body)
}

#[tokio::test]
async fn children_are_read_only_after_their_parent_is_drained() {
    let registry = StoreRegistry::in_memory();
    registry.register(gen::SUBJECT, gen::V1).await.unwrap();
    registry.register(gen::SUBJECT, gen::V2).await.unwrap();
    let stream = Arc::new(InMemoryStream::new("reshard", 1));
    let ids = TimeUuidGenerator::random();
    let t0 = 1_764_108_000_000;
    let parent: Vec<Vec<u8>> = (0..300).map(|i| event(&ids, t0 + i * 1000, i)).collect();
    stream.append_at(
        0,
        &parent.iter().map(|r| r.as_slice()).collect::<Vec<_>>(),
        t0,
    );
    let (a, b) = stream.split("shard-000000").unwrap();
    let kids: Vec<Vec<u8>> = (300..600).map(|i| event(&ids, t0 + i * 1000, i)).collect();
    stream.append_at(
        0,
        &kids[..150].iter().map(|r| r.as_slice()).collect::<Vec<_>>(),
        t0 + 400_000,
    );
    stream.append_at(
        1,
        &kids[150..].iter().map(|r| r.as_slice()).collect::<Vec<_>>(),
        t0 + 400_000,
    );

    let lake = silt_storage::open("memory://reshard-test/lake", std::path::Path::new("/")).unwrap();
    let job = Job {
        name: "reshard".into(),
        source: stream.clone(),
        registry: Arc::new(registry),
        subject: gen::SUBJECT.into(),
        framing: silt_wire::Framing::Envelope,
        start: silt_ingest::StartAt::Earliest,
        lake: lake.clone(),
        table: "clickstream".into(),
        rejected_table: "clickstream_rejected".into(),
        partition_by: vec!["dt".into(), "hr".into()],
        transforms: vec![],
        references: vec![],
        log: CommitLog::new(lake.join("_silt/checkpoints/reshard")),
        window_us: 15 * 60 * 1_000_000,
        max_future: silt_ingest::DEFAULT_MAX_FUTURE,
        keep_late: false,
        writer: WriterOptions::default(),
        compact_min_files: 10,
        max_records: 64,
        max_bytes: 1 << 20,
        interval: std::time::Duration::from_millis(10),
    };
    let summary = job::run(&job, &RunOptions::default()).await.unwrap();
    assert_eq!(summary.rows_written["clickstream"], 600);

    // Walk the commits: a child has a position only once its parent has ended.
    let mut batch = 0;
    let mut saw_children = false;
    while let Some(c) = job.log.commit(batch).await.unwrap() {
        let positions = c.source["positions"].as_object().unwrap();
        let ended: Vec<&str> = c.source["ended"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if positions.contains_key(&a) || positions.contains_key(&b) {
            saw_children = true;
            assert!(
                ended.contains(&"shard-000000"),
                "batch {batch} read a child before the parent ended"
            );
        }
        batch += 1;
    }
    assert!(saw_children);

    // Read back through silt's query path (memory store, same code as S3 and local disk).
    let rows = silt::cmd::query::query(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT uuid) AS d FROM clickstream",
    )
    .await
    .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(text.contains("| 600 | 600 |"), "{text}");
}
