//! The streaming table writer: rows written batch by batch land in one file per partition (or
//! several, cut at the target size), in the order they came.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use silt_lake_writer::{data_file_schema, schema_key, write_table, TableWriter, WriterOptions};

fn batch(ns: &[i64], hr: &[&str]) -> RecordBatch {
    RecordBatch::try_from_iter([
        ("n", Arc::new(Int64Array::from(ns.to_vec())) as _),
        ("hr", Arc::new(StringArray::from(hr.to_vec())) as _),
    ])
    .unwrap()
}

/// A reader of a file the writer stored.
async fn file(
    table: &silt_storage::Location,
    path: &str,
) -> ParquetRecordBatchReaderBuilder<bytes::Bytes> {
    let bytes = table
        .store
        .get(&table.child(path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap()
}

/// The metadata of the one file `batch` is written to, with the default settings.
async fn written_metadata(
    table: &silt_storage::Location,
    batch: RecordBatch,
) -> Arc<parquet::file::metadata::ParquetMetaData> {
    let files = write_table(table, 0, &[batch], &[], &WriterOptions::default())
        .await
        .unwrap();
    assert_eq!(files.len(), 1);
    file(table, &files[0].path).await.metadata().clone()
}

async fn read_n(table: &silt_storage::Location, path: &str) -> Vec<i64> {
    let reader = file(table, path).await.build().unwrap();
    let mut out = vec![];
    for b in reader {
        let b = b.unwrap();
        let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend(c.values().iter().copied());
    }
    out
}

#[tokio::test]
async fn batches_written_one_by_one_land_in_one_file_per_partition_in_order() {
    let lake = silt_storage::open("memory://tw-one", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    let parts = vec!["hr".to_string()];
    let mut w = TableWriter::new(&table, 7, &parts, &WriterOptions::default());
    w.write(&batch(&[1, 2, 3], &["22", "23", "22"])).unwrap();
    w.write(&batch(&[4, 5], &["23", "23"])).unwrap();
    w.write(&batch(&[], &[])).unwrap();
    w.write(&batch(&[6], &["22"])).unwrap();
    w.put_ready().await.unwrap();
    let (files, timings) = w.finish_timed().await.unwrap();
    // Encoding and the puts are timed apart (the job's encode and write stages).
    assert!(timings.encode > std::time::Duration::ZERO, "{timings:?}");
    assert!(timings.store > std::time::Duration::ZERO, "{timings:?}");
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "hr=22/part-0000000007-0000.parquet",
            "hr=23/part-0000000007-0000.parquet"
        ]
    );
    assert_eq!(
        files[0].partition,
        vec![("hr".to_string(), "22".to_string())]
    );
    assert_eq!((files[0].rows, files[1].rows), (3, 3));
    assert_eq!(read_n(&table, &files[0].path).await, [1, 3, 6]);
    let schema = file(&table, &files[0].path).await.schema().clone();
    assert!(
        schema.index_of("hr").is_err(),
        "partition columns live in the path"
    );
    assert_eq!(read_n(&table, &files[1].path).await, [2, 4, 5]);

    // The one-call form writes the same bytes.
    let again = lake.join("u");
    let whole = write_table(
        &again,
        7,
        &[
            batch(&[1, 2, 3], &["22", "23", "22"]),
            batch(&[4, 5], &["23", "23"]),
            batch(&[6], &["22"]),
        ],
        &parts,
        &WriterOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(whole, files);
}

/// Each file says its schema (what compaction groups files by): the key of the columns its
/// footer gives, the same for files of the same columns, another for other columns.
#[tokio::test]
async fn each_file_names_its_schema_as_its_footer_gives_it() {
    let lake = silt_storage::open("memory://tw-schema", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    let parts = vec!["hr".to_string()];
    let mut files = vec![];
    for (id, b) in [
        (1, batch(&[1, 2], &["22", "23"])),
        (2, batch(&[3], &["22"])),
        (
            3,
            RecordBatch::try_from_iter([
                ("n", Arc::new(Int64Array::from(vec![4])) as _),
                ("channel", Arc::new(StringArray::from(vec!["web"])) as _),
                ("hr", Arc::new(StringArray::from(vec!["22"])) as _),
            ])
            .unwrap(),
        ),
    ] {
        files.extend(
            write_table(&table, id, &[b], &parts, &WriterOptions::default())
                .await
                .unwrap(),
        );
    }
    let keys: Vec<&str> = files.iter().map(|f| f.schema.as_deref().unwrap()).collect();
    for f in &files {
        let footer = data_file_schema(&table, f).await.unwrap();
        assert_eq!(
            f.schema.as_deref(),
            Some(schema_key(&footer).as_str()),
            "{}",
            f.path
        );
    }
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0], keys[2]);
    assert_ne!(
        keys[0], keys[3],
        "a file with another column has another key"
    );
}

#[tokio::test]
async fn files_are_cut_at_the_target_size_and_stored_before_the_end() {
    let lake = silt_storage::open("memory://tw-cut", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    let opts = WriterOptions {
        target_file_bytes: 1,
        row_group_rows: 2,
        ..Default::default()
    };
    let mut w = TableWriter::new(&table, 3, &[], &opts);
    w.write(&batch(&[1, 2, 3], &["a", "b", "c"])).unwrap();
    w.put_ready().await.unwrap();
    // Two rows a slice, each slice over the target: two files closed and already stored.
    for n in 0..2 {
        let p = format!("part-0000000003-000{n}.parquet");
        assert!(
            table.store.head(&table.child(&p)).await.is_ok(),
            "{p} stored"
        );
    }
    w.write(&batch(&[4], &["d"])).unwrap();
    let files = w.finish().await.unwrap();
    let got: Vec<(String, u64)> = files.iter().map(|f| (f.path.clone(), f.rows)).collect();
    assert_eq!(
        got,
        [
            ("part-0000000003-0000.parquet".to_string(), 2),
            ("part-0000000003-0001.parquet".to_string(), 1),
            ("part-0000000003-0002.parquet".to_string(), 1),
        ]
    );
    let mut all = vec![];
    for f in &files {
        all.extend(read_n(&table, &f.path).await);
    }
    assert_eq!(all, [1, 2, 3, 4]);
    assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 4);
}

#[tokio::test]
async fn mostly_distinct_columns_are_written_without_a_dictionary() {
    use parquet::basic::Encoding;
    let lake = silt_storage::open("memory://tw-dict", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    let ids: Vec<String> = (0..1000).map(|i| format!("id-{i:06}")).collect();
    let kinds: Vec<&str> = (0..1000)
        .map(|i| ["web", "ios", "android"][i % 3])
        .collect();
    let b = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(ids)) as _),
        ("kind", Arc::new(StringArray::from(kinds)) as _),
        ("n", Arc::new(Int64Array::from_iter_values(0..1000)) as _),
        (
            "bucket",
            Arc::new(Int64Array::from_iter_values((0..1000).map(|i| i % 7))) as _,
        ),
        // Absent from the older events, a unique URL in the newer: unique where present.
        (
            "referrer",
            Arc::new(StringArray::from_iter((0..1000).map(|i| {
                (i >= 600).then(|| format!("https://example.com/p/{i}?ref={:08x}", i * 7919))
            }))) as _,
        ),
        // Mostly absent, and few values where present: too few to judge, left as it is.
        (
            "rare",
            Arc::new(StringArray::from_iter(
                (0..1000).map(|i| (i % 10 == 0).then(|| format!("r{i}"))),
            )) as _,
        ),
    ])
    .unwrap();
    let meta = written_metadata(&table, b).await;
    let rg = meta.row_group(0);
    let dictionary = |i: usize| {
        rg.column(i)
            .encodings()
            .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
    };
    assert!(!dictionary(0), "unique strings: plain");
    assert!(dictionary(1), "three values: dictionary");
    assert!(!dictionary(2), "unique numbers: plain");
    assert!(dictionary(3), "seven values: dictionary");
    assert!(!dictionary(4), "unique strings among nulls: plain");
    assert!(
        dictionary(5),
        "100 values present: not judged, Parquet's default"
    );
}

#[tokio::test]
async fn a_field_older_events_lack_is_judged_on_the_newer_events_after_them() {
    use parquet::basic::Encoding;
    let lake = silt_storage::open("memory://tw-dict-late", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    // A batch whose first 5,000 events were written before the field existed (more than the
    // rows a judge looks at), then 5,000 with a unique referrer each.
    let referrer =
        StringArray::from_iter((0..10_000).map(|i| {
            (i >= 5_000).then(|| format!("https://example.com/p/{i}?ref={:08x}", i * 7919))
        }));
    let sale = Int64Array::from_iter((0..10_000).map(|i| (i >= 5_000).then_some(i % 40)));
    let b = RecordBatch::try_from_iter([
        ("referrer", Arc::new(referrer) as _),
        ("sale", Arc::new(sale) as _),
    ])
    .unwrap();
    let meta = written_metadata(&table, b).await;
    let dictionary = |i: usize| {
        meta.row_group(0)
            .column(i)
            .encodings()
            .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
    };
    assert!(!dictionary(0), "unique where present: plain");
    assert!(dictionary(1), "40 values where present: dictionary");
}

#[tokio::test]
async fn a_field_a_first_batch_of_older_events_lacks_is_judged_on_the_batch_after_it() {
    use parquet::basic::Encoding;
    let lake = silt_storage::open("memory://tw-dict-next", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    // A micro-batch decodes to one batch per writer schema: first the older events, which
    // lack the referrer (all null), then the newer ones, each with a unique referrer.
    let (old, new) = (3_000, 5_000);
    let older = RecordBatch::try_from_iter([
        ("n", Arc::new(Int64Array::from_iter_values(0..old)) as _),
        (
            "referrer",
            Arc::new(StringArray::new_null(old as usize)) as _,
        ),
    ])
    .unwrap();
    let newer = RecordBatch::try_from_iter([
        (
            "n",
            Arc::new(Int64Array::from_iter_values(old..old + new)) as _,
        ),
        (
            "referrer",
            Arc::new(StringArray::from_iter_values((0..new).map(|i| {
                format!("https://example.com/p/{i}?ref={:08x}", i * 7919)
            }))) as _,
        ),
    ])
    .unwrap();
    let mut w = TableWriter::new(&table, 0, &[], &WriterOptions::default());
    w.write_batches(&[older.clone(), newer.clone()])
        .await
        .unwrap();
    let files = w.finish().await.unwrap();
    assert_eq!(files.len(), 1);
    let reader = file(&table, &files[0].path).await;
    let meta = reader.metadata().clone();
    let encodings = meta.row_group(0).column(1).encodings().collect::<Vec<_>>();
    assert!(
        !encodings.contains(&Encoding::RLE_DICTIONARY),
        "unique where present, judged on the newer events: plain, not {encodings:?}"
    );
    // The rows are the two batches', in order.
    let back: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
    let back = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
    let both = arrow::compute::concat_batches(&older.schema(), &[older, newer]).unwrap();
    assert_eq!(back, both);
}

#[tokio::test]
async fn distinct_values_sharing_their_prefix_are_delta_encoded() {
    use parquet::basic::Encoding;
    let lake = silt_storage::open("memory://tw-delta", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    // Positions in a stream: each shares all but its last digits with the one before.
    let seq: Vec<String> = (0..1000u64)
        .map(|i| (49_000_000_000 + i * 97).to_string())
        .collect();
    // Distinct values that share little: scrambled hex.
    let ids: Vec<String> = (0..1000u64)
        .map(|i| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let b = RecordBatch::try_from_iter([
        ("seq", Arc::new(StringArray::from(seq.clone())) as _),
        ("id", Arc::new(StringArray::from(ids.clone())) as _),
    ])
    .unwrap();
    let files = write_table(&table, 0, &[b], &[], &WriterOptions::default())
        .await
        .unwrap();
    let reader = file(&table, &files[0].path).await;
    let meta = reader.metadata().clone();
    let encodings = |i: usize| meta.row_group(0).column(i).encodings().collect::<Vec<_>>();
    assert!(
        encodings(0).contains(&Encoding::DELTA_BYTE_ARRAY),
        "{:?}",
        encodings(0)
    );
    assert!(
        !encodings(1).contains(&Encoding::DELTA_BYTE_ARRAY),
        "{:?}",
        encodings(1)
    );
    assert!(
        encodings(1).contains(&Encoding::PLAIN),
        "{:?}",
        encodings(1)
    );
    // And the values read back as they were.
    let back: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
    let col = |i: usize| -> Vec<String> {
        back.iter()
            .flat_map(|b| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .iter()
                    .map(|v| v.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(col(0), seq);
    assert_eq!(col(1), ids);
}

/// Nearly distinct text in no order (ids, URLs) is written without statistics (their minimum
/// and maximum span every page, and computing them cost as much as any other part of the
/// encoding); ordered text, delta-encoded text, text that repeats and numbers keep theirs.
#[tokio::test]
async fn distinct_text_in_no_order_is_written_without_statistics() {
    let lake = silt_storage::open("memory://tw-stats", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    let n = 2000u64;
    let scrambled = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let urls: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "https://x.io/{}?ref={:016x}",
                scrambled(i) % 5000,
                scrambled(i)
            )
        })
        .collect();
    // Distinct, sharing little with the value before, but in order: pages can be skipped.
    let ordered: Vec<String> = (0..n)
        .map(|i| format!("{:x}", (1 << 40) | (i * 977)))
        .collect();
    let descending: Vec<String> = ordered.iter().rev().cloned().collect();
    let kinds: Vec<&str> = (0..n).map(|i| ["web", "ios"][i as usize % 2]).collect();
    let b = RecordBatch::try_from_iter([
        ("url", Arc::new(StringArray::from(urls)) as _),
        ("ordered", Arc::new(StringArray::from(ordered)) as _),
        ("descending", Arc::new(StringArray::from(descending)) as _),
        ("kind", Arc::new(StringArray::from(kinds)) as _),
        (
            "n",
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| scrambled(i) as i64),
            )) as _,
        ),
    ])
    .unwrap();
    let meta = written_metadata(&table, b).await;
    let has_statistics = |i: usize| {
        meta.row_group(0)
            .column(i)
            .statistics()
            .is_some_and(|s| s.min_bytes_opt().is_some())
    };
    assert!(!has_statistics(0), "unordered distinct text: none");
    assert!(has_statistics(1), "ordered distinct text: kept");
    assert!(has_statistics(2), "descending distinct text: kept");
    assert!(has_statistics(3), "text that repeats: kept");
    assert!(has_statistics(4), "distinct numbers in no order: kept");
}

#[tokio::test]
async fn distinct_integers_in_small_steps_are_delta_binary_packed() {
    use arrow::array::{Float64Array, Int32Array, TimestampMicrosecondArray};
    use parquet::basic::Encoding;
    let lake = silt_storage::open("memory://tw-delta-int", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    // Event times a few milliseconds apart, a little out of order, some missing.
    let times: Vec<Option<i64>> = (0..1000i64)
        .map(|i| (i % 50 != 7).then_some(1_764_108_000_000_000 + i * 3_000 + (i % 3) * 700))
        .collect();
    let counter: Vec<i32> = (0..1000).map(|i| 5_000 + i * 2).collect();
    // Distinct, but each far from the one before: scrambled ids.
    let ids: Vec<i64> = (0..1000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64)
        .collect();
    // Rising floats: distinct, but the encoding is for integers only.
    let floats: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
    let b = RecordBatch::try_from_iter([
        (
            "t",
            Arc::new(TimestampMicrosecondArray::from(times.clone()).with_timezone("UTC")) as _,
        ),
        ("c", Arc::new(Int32Array::from(counter.clone())) as _),
        ("id", Arc::new(Int64Array::from(ids.clone())) as _),
        ("f", Arc::new(Float64Array::from(floats.clone())) as _),
    ])
    .unwrap();
    let files = write_table(
        &table,
        0,
        std::slice::from_ref(&b),
        &[],
        &WriterOptions::default(),
    )
    .await
    .unwrap();
    let reader = file(&table, &files[0].path).await;
    let meta = reader.metadata().clone();
    let delta = |i: usize| {
        meta.row_group(0)
            .column(i)
            .encodings()
            .any(|e| e == Encoding::DELTA_BINARY_PACKED)
    };
    assert!(delta(0), "close timestamps");
    assert!(delta(1), "a counter");
    assert!(!delta(2), "scrambled ids");
    assert!(!delta(3), "floats");
    // And the values read back as they were.
    let back: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
    let back = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
    assert_eq!(back, b);
}

#[tokio::test]
async fn data_pages_are_cut_near_the_page_size_zstd_works_fastest_at() {
    use parquet::column::page::{Page, PageReader};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use silt_lake_writer::DATA_PAGE_BYTES;
    let lake = silt_storage::open("memory://tw-pages", std::path::Path::new(".")).unwrap();
    let table = lake.join("t");
    // 4 MB of distinct 100-byte strings: 4 pages of Parquet's default 1 MiB, about 20 here
    // (the size is checked every 1024 values).
    let urls: Vec<String> = (0..40_000u64)
        .map(|i| format!("https://example.com/{:016x}/{}", i * 7919, "x".repeat(60)))
        .collect();
    let b = RecordBatch::try_from_iter([("url", Arc::new(StringArray::from(urls)) as _)]).unwrap();
    let files = write_table(&table, 0, &[b], &[], &WriterOptions::default())
        .await
        .unwrap();
    let bytes = table
        .store
        .get(&table.child(&files[0].path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = SerializedFileReader::new(bytes).unwrap();
    let mut pages: Box<dyn PageReader> = reader
        .get_row_group(0)
        .unwrap()
        .get_column_page_reader(0)
        .unwrap();
    let mut sizes = vec![];
    while let Some(page) = pages.get_next_page().unwrap() {
        if let Page::DataPage { buf, .. } | Page::DataPageV2 { buf, .. } = &page {
            sizes.push(buf.len());
        }
    }
    assert!(sizes.len() >= 16, "{} data pages: {sizes:?}", sizes.len());
    // Cut once over the limit, at most one write batch (1024 values) later.
    assert!(
        sizes.iter().all(|&s| s <= DATA_PAGE_BYTES + 1024 * 110),
        "{sizes:?}"
    );
}
