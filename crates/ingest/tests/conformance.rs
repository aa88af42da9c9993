//! The Source conformance suite against the in-memory stream and the file stream.

use silt_ingest::{conformance, FileStream, InMemoryStream, Source};

#[tokio::test]
async fn in_memory_stream() {
    let s = || InMemoryStream::new("conf", 2);
    let a = s();
    conformance::reads_in_order(&a, &a).await;
    let a = s();
    conformance::resumes_after_a_position_and_replays(&a, &a).await;
    let a = s();
    conformance::latest_and_caught_up(&a, &a).await;
    let a = s();
    conformance::starts_at_an_arrival_time(&a, &a).await;
    conformance::unknown_shard_is_an_error(&s()).await;
    let a = s();
    conformance::keyed_puts_keep_a_key_on_one_shard_in_order(&a, &a).await;
}

#[tokio::test]
async fn file_stream() {
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let s = |i: usize| FileStream::create(dirs[i].path().join("conf"), 2).unwrap();
    let a = s(0);
    conformance::reads_in_order(&a, &a).await;
    let a = s(1);
    conformance::resumes_after_a_position_and_replays(&a, &a).await;
    let a = s(2);
    conformance::latest_and_caught_up(&a, &a).await;
    let a = s(3);
    conformance::starts_at_an_arrival_time(&a, &a).await;
    conformance::unknown_shard_is_an_error(&s(4)).await;
    let a = s(5);
    conformance::keyed_puts_keep_a_key_on_one_shard_in_order(&a, &a).await;
}

#[tokio::test]
async fn file_stream_torn_frame_is_not_yet_written() {
    use silt_ingest::{ReadLimit, StartAt};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let s = FileStream::create(dir.path().join("t"), 1).unwrap();
    s.append(0, &[b"whole".as_slice()]).unwrap();
    // Half a frame: the writer is in the middle of an append.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("t/shard-000000.log"))
        .unwrap();
    f.write_all(&[0, 0, 0, 9, 0, 0]).unwrap();
    let c = s
        .read("shard-000000", &StartAt::Earliest, ReadLimit::default())
        .await
        .unwrap();
    assert_eq!(c.records.len(), 1);
    assert!(c.caught_up);
    // The writer finishes the frame: it is read from where the reader stopped.
    f.write_all(&[
        0, 0, 0, 0, 0, 1, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h', b'i',
    ])
    .unwrap();
    let c2 = s
        .read(
            "shard-000000",
            c.next.as_ref().unwrap(),
            ReadLimit::default(),
        )
        .await
        .unwrap();
    assert_eq!(c2.records.len(), 1);
    assert_eq!(c2.payload(0), b"abcdefghi");
    assert_eq!(c2.records[0].arrival_ms, 1);
}
