//! `partitions` transforms kept up to date by merging their previous output with the
//! grouping of the new rows: the same rows as a recomputation over all rows.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use silt_transform::{merge_sql, Mode, PreparedIncremental, RowsSession, Transform};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("hr", DataType::Utf8, false),
        Field::new("product", DataType::Utf8, false),
        Field::new("sale", DataType::Int64, true),
        Field::new("t", DataType::Int64, false),
    ]))
}

/// `n` events from `start`: a few hours, products and sales, some without a sale.
fn events(start: i64, n: i64) -> RecordBatch {
    let i = start..start + n;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                i.clone().map(|i| format!("{:02}", i / 500)),
            )),
            Arc::new(StringArray::from_iter_values(
                i.clone().map(|i| format!("p{}", i * 7 % 13)),
            )),
            Arc::new(Int64Array::from_iter(
                i.clone().map(|i| (i % 3 != 0).then_some(i % 5)),
            )),
            Arc::new(Int64Array::from_iter_values(
                i.map(|i| 1_000 + i * 37 % 101),
            )),
        ],
    )
    .unwrap()
}

const HOURLY: &str = "SELECT hr, product, count(*) AS views, count(sale) AS sale_views, \
    sum(sale) AS sales, min(t) AS first, max(t) AS last \
    FROM events WHERE t <> 1050 GROUP BY hr, product ORDER BY hr, product DESC";

/// The transform over all of `batches` at once.
async fn recomputed(sql: &str, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let ctx = silt_transform::session();
    ctx.register_table(
        "events",
        Arc::new(MemTable::try_new(schema(), vec![batches]).unwrap()),
    )
    .unwrap();
    let t = Transform::new("hourly", sql, Mode::Partitions);
    silt_transform::run(&ctx, &t).await.unwrap()
}

async fn logical(sql: &str) -> datafusion::logical_expr::LogicalPlan {
    let ctx = silt_transform::session();
    ctx.register_table(
        "events",
        Arc::new(MemTable::try_new(schema(), vec![vec![]]).unwrap()),
    )
    .unwrap();
    ctx.sql(sql).await.unwrap().logical_plan().clone()
}

/// The hourly transform, prepared to merge.
async fn hourly() -> PreparedIncremental {
    let t = Transform::new("hourly", HOURLY, Mode::Partitions);
    RowsSession::new(&[])
        .await
        .unwrap()
        .prepare_incremental(&t, schema())
        .await
        .unwrap()
        .expect("counts, sums, minimums and maximums merge")
}

#[tokio::test]
async fn merged_micro_batches_give_the_recomputed_rows() {
    let prepared = hourly().await;
    // Three micro-batches of a few slices each; the output carried from one to the next.
    let mut output = Vec::new();
    let mut all = Vec::new();
    for (start, slices) in [(0, 3), (1500, 1), (1800, 4)] {
        let mut running = prepared.start().unwrap();
        for s in 0..slices {
            let b = events(start + s * 200, 200);
            running.push(std::slice::from_ref(&b)).unwrap();
            all.push(b);
        }
        let partial = running.finish().await.unwrap();
        output = prepared.merge(output, partial).await.unwrap();
    }
    let expected = recomputed(HOURLY, all).await;
    let (got, want) = (
        pretty_format_batches(&output).unwrap().to_string(),
        pretty_format_batches(&expected).unwrap().to_string(),
    );
    assert!(want.lines().count() > 20, "{want}");
    assert_eq!(got, want);
    assert_eq!(output[0].schema(), expected[0].schema());
}

#[tokio::test]
async fn previous_output_columns_are_taken_by_name() {
    // As read back from the lake: partition columns after the file's columns.
    let prepared = hourly().await;
    let mut running = prepared.start().unwrap();
    running.push(&[events(0, 400)]).unwrap();
    let first = prepared
        .merge(vec![], running.finish().await.unwrap())
        .await
        .unwrap();
    let moved: Vec<RecordBatch> = first
        .iter()
        .map(|b| {
            let hr = b.schema().index_of("hr").unwrap();
            let order: Vec<usize> = (0..b.num_columns())
                .filter(|i| *i != hr)
                .chain([hr])
                .collect();
            b.project(&order).unwrap()
        })
        .collect();
    let mut running = prepared.start().unwrap();
    running.push(&[events(400, 400)]).unwrap();
    let merged = prepared
        .merge(moved, running.finish().await.unwrap())
        .await
        .unwrap();
    let expected = recomputed(HOURLY, vec![events(0, 800)]).await;
    assert_eq!(
        pretty_format_batches(&merged).unwrap().to_string(),
        pretty_format_batches(&expected).unwrap().to_string()
    );
}

#[tokio::test]
async fn only_groupings_of_mergeable_aggregates_are_merged() {
    let merged = |sql: &'static str| async move { merge_sql(&logical(sql).await) };
    assert!(merged(HOURLY).await.is_some());
    assert!(merged("SELECT hr, count(*) AS n FROM events GROUP BY hr")
        .await
        .is_some());
    for sql in [
        // Not mergeable from partial results.
        "SELECT hr, avg(t) AS a FROM events GROUP BY hr",
        "SELECT hr, count(DISTINCT product) AS n FROM events GROUP BY hr",
        "SELECT hr, count(*) FILTER (WHERE t > 1) AS n FROM events GROUP BY hr",
        "SELECT hr, count(*) * 2 AS n FROM events GROUP BY hr",
        // A group key left out: rows of different groups would merge.
        "SELECT hr, count(*) AS n FROM events GROUP BY hr, product",
        // Conditions on the groups, limits, rows, windows.
        "SELECT hr, count(*) AS n FROM events GROUP BY hr HAVING count(*) > 2",
        "SELECT hr, count(*) AS n FROM events GROUP BY hr ORDER BY hr LIMIT 3",
        "SELECT hr, t FROM events",
        "SELECT hr, row_number() OVER (ORDER BY t) AS n FROM events",
        // A limit below the grouping: a batch's rows grouped would not add up to the whole's.
        "SELECT hr, count(*) AS n FROM (SELECT * FROM events ORDER BY t LIMIT 10) GROUP BY hr",
        "SELECT hr, count(*) AS n FROM (SELECT * FROM events LIMIT 10) GROUP BY hr",
        // `events` read twice.
        "SELECT a.hr, count(*) AS n FROM events a JOIN events b ON a.t = b.t GROUP BY a.hr",
    ] {
        assert!(merged(sql).await.is_none(), "{sql}");
    }
}

#[tokio::test]
async fn decimal_sums_merge_to_the_recomputed_type_and_value() {
    use arrow::array::Decimal128Array;
    let schema = Arc::new(Schema::new(vec![
        Field::new("hr", DataType::Utf8, false),
        Field::new("price", DataType::Decimal128(10, 2), true),
    ]));
    let batch = |start: i128| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..100).map(|i| format!("{:02}", i % 3)),
                )),
                Arc::new(
                    Decimal128Array::from_iter(
                        (0..100).map(|i| (i % 7 != 0).then_some(start + i * 1999)),
                    )
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
                ),
            ],
        )
        .unwrap()
    };
    let sql =
        "SELECT hr, sum(price) AS total, max(price) AS top FROM events GROUP BY hr ORDER BY hr";
    let t = Transform::new("prices", sql, Mode::Partitions);
    let prepared = RowsSession::new(&[])
        .await
        .unwrap()
        .prepare_incremental(&t, schema.clone())
        .await
        .unwrap()
        .expect("sums and maximums merge");
    let mut output = Vec::new();
    for start in [0, 99_999_900] {
        let mut running = prepared.start().unwrap();
        running.push(&[batch(start)]).unwrap();
        output = prepared
            .merge(output, running.finish().await.unwrap())
            .await
            .unwrap();
    }
    let ctx = silt_transform::session();
    ctx.register_table(
        "events",
        Arc::new(
            MemTable::try_new(schema.clone(), vec![vec![batch(0), batch(99_999_900)]]).unwrap(),
        ),
    )
    .unwrap();
    let expected = silt_transform::run(&ctx, &t).await.unwrap();
    assert_eq!(output[0].schema(), expected[0].schema());
    assert_eq!(
        pretty_format_batches(&output).unwrap().to_string(),
        pretty_format_batches(&expected).unwrap().to_string()
    );
}
