//! A transform's partition columns must be the raw table's, passed through as they are: its
//! output is partitioned by the raw partitions it reads. And a `partitions` transform must not
//! let rows of one output partition draw on rows of another.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use silt_transform::{check_partition_columns, check_partitions_local, session, Mode, Transform};

async fn check(sql: &str, mode: Mode) -> Result<(), String> {
    let ctx = session();
    let events = Arc::new(Schema::new(vec![
        Field::new("uuid", DataType::Utf8, false),
        Field::new("product", DataType::Utf8, false),
        Field::new("dt", DataType::Utf8, false),
        Field::new("hr", DataType::Utf8, false),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let products = Arc::new(Schema::new(vec![
        Field::new("product", DataType::Utf8, false),
        Field::new("dt", DataType::Utf8, false),
    ]));
    for (name, schema) in [("events", events), ("products", products)] {
        let table = MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }
    let t = Transform::new("t", sql, mode);
    // Refuses a `rows` transform that brings rows together.
    let df = silt_transform::plan(&ctx, &t)
        .await
        .map_err(|e| e.to_string())?;
    let parts = ["dt".to_string(), "hr".to_string()];
    check_partition_columns(&t, df.logical_plan(), &parts).map_err(|e| e.to_string())?;
    // The partition columns the output has, as the job finds them.
    let out: Vec<String> = parts
        .iter()
        .filter(|p| df.schema().fields().iter().any(|f| f.name() == *p))
        .cloned()
        .collect();
    check_partitions_local(&t, df.logical_plan(), &out).map_err(|e| e.to_string())
}

#[tokio::test]
async fn partition_columns_passed_through_are_accepted() {
    for (sql, mode) in [
        ("SELECT * FROM events", Mode::Rows),
        ("SELECT uuid AS id, dt, hr FROM events WHERE product <> 'x'", Mode::Rows),
        ("SELECT upper(product) AS p, e.hr, e.dt FROM events e", Mode::Rows),
        ("SELECT dt AS day, hr FROM events", Mode::Rows),
        ("WITH x AS (SELECT * FROM events) SELECT dt, hr FROM x ORDER BY uuid", Mode::Rows),
        ("SELECT e.uuid, e.dt, e.hr, p.dt AS listed FROM events e JOIN products p ON e.product = p.product", Mode::Rows),
        ("SELECT dt, hr FROM events UNION ALL SELECT dt, hr FROM events", Mode::Rows),
        ("SELECT dt, hr, product, count(*) AS n FROM events GROUP BY dt, hr, product", Mode::Partitions),
        ("SELECT uuid, dt, row_number() OVER (PARTITION BY dt ORDER BY uuid) AS n FROM events", Mode::Partitions),
        ("SELECT DISTINCT dt FROM events", Mode::Partitions),
        (
            "SELECT DISTINCT ON (dt, hr, product) dt, hr, product, uuid FROM events ORDER BY dt, hr, product, uuid DESC",
            Mode::Partitions,
        ),
        ("SELECT uuid, dt, hr, unnest(tags) AS tag FROM events", Mode::Rows),
        ("SELECT unnest(tags) AS tag, * FROM events", Mode::Rows),
        // A reference table's own grouping is not over `events`.
        (
            "SELECT e.uuid, e.dt, e.hr, c.n FROM events e JOIN (SELECT product, count(*) AS n FROM products GROUP BY product) c ON e.product = c.product",
            Mode::Rows,
        ),
        ("SELECT * FROM events WHERE product IN (SELECT product FROM products)", Mode::Rows),
        // Keyed by the output's partition columns: only `dt` here.
        ("SELECT dt, product, count(*) AS n FROM events GROUP BY dt, product", Mode::Partitions),
        (
            "SELECT dt, n, count(*) AS c FROM (SELECT dt, product, count(*) OVER (PARTITION BY product, dt) AS n FROM events) GROUP BY dt, n",
            Mode::Partitions,
        ),
        // An output without partition columns is one partition, recomputed whole.
        ("SELECT product, count(*) AS n FROM events GROUP BY product", Mode::Partitions),
        (
            "SELECT a.dt, a.hr, count(*) AS n FROM events a JOIN events b ON a.product = b.product AND a.dt = b.dt AND b.hr = a.hr GROUP BY a.dt, a.hr",
            Mode::Partitions,
        ),
        (
            "SELECT e.dt, e.hr, p.dt AS listed, count(*) AS n FROM events e JOIN products p ON e.product = p.product GROUP BY e.dt, e.hr, p.dt",
            Mode::Partitions,
        ),
        // A reference table's own aggregate is not over `events`.
        (
            "SELECT e.dt, e.hr, e.uuid, c.n FROM events e JOIN (SELECT product, count(*) AS n FROM products GROUP BY product) c ON e.product = c.product",
            Mode::Partitions,
        ),
        ("SELECT unnest(tags) AS tag, dt, hr, count(*) AS n FROM events GROUP BY unnest(tags), dt, hr", Mode::Partitions),
        // Top products of each hour: a window over a grouping, both keyed by the hour.
        (
            "SELECT dt, hr, product, n, rank() OVER (PARTITION BY dt, hr ORDER BY n DESC) AS r FROM (SELECT dt, hr, product, count(*) AS n FROM events GROUP BY dt, hr, product)",
            Mode::Partitions,
        ),
        (
            "SELECT * FROM (SELECT e.*, row_number() OVER (PARTITION BY e.hr, product, e.dt ORDER BY uuid) AS k FROM events e) WHERE k <= 3",
            Mode::Partitions,
        ),
        (
            "SELECT dt, hr, product, count(*) AS n FROM events GROUP BY dt, hr, product HAVING count(*) > 1",
            Mode::Partitions,
        ),
        (
            "SELECT dt, hr, product, count(*) AS n FROM events GROUP BY dt, hr, product UNION ALL SELECT dt, hr, 'all' AS product, count(*) AS n FROM events GROUP BY dt, hr",
            Mode::Partitions,
        ),
        (
            "SELECT dt, hr, uuid FROM events e WHERE EXISTS (SELECT 1 FROM products p WHERE p.product = e.product)",
            Mode::Partitions,
        ),
        (
            "SELECT e.dt, e.hr, count(p.product) AS listed FROM events e LEFT JOIN products p ON e.product = p.product GROUP BY e.dt, e.hr",
            Mode::Partitions,
        ),
        // Subtotals within each hour: `dt` and `hr` are in every grouping set.
        ("SELECT dt, hr, product, count(*) AS n FROM events GROUP BY dt, hr, ROLLUP(product)", Mode::Partitions),
        (
            "SELECT dt, hr, product, count(*) AS n FROM events GROUP BY GROUPING SETS ((dt, hr, product), (dt, hr))",
            Mode::Partitions,
        ),
    ] {
        assert_eq!(check(sql, mode).await, Ok(()), "{sql}");
    }
}

#[tokio::test]
async fn partition_columns_computed_or_taken_from_another_column_are_refused() {
    for (sql, mode, column, is) in [
        (
            "SELECT uuid, hr AS dt, dt AS hr FROM events",
            Mode::Rows,
            "dt",
            "`events.hr`",
        ),
        (
            "SELECT uuid, dt, '00' AS hr FROM events",
            Mode::Rows,
            "hr",
            "computed",
        ),
        (
            "SELECT uuid, substr(dt, 1, 7) AS dt FROM events",
            Mode::Rows,
            "dt",
            "computed",
        ),
        (
            "SELECT e.uuid, p.dt FROM events e JOIN products p ON e.product = p.product",
            Mode::Rows,
            "dt",
            "computed",
        ),
        (
            "SELECT dt, hr FROM events UNION ALL SELECT hr, dt FROM events",
            Mode::Rows,
            "dt",
            "computed",
        ),
        (
            "SELECT substr(dt, 1, 7) AS dt, count(*) AS n FROM events GROUP BY substr(dt, 1, 7)",
            Mode::Partitions,
            "dt",
            "computed",
        ),
        // Its grand total has no `dt`, its subtotals by day no `hr`.
        (
            "SELECT dt, hr, count(*) AS n FROM events GROUP BY ROLLUP(dt, hr)",
            Mode::Partitions,
            "dt",
            "computed",
        ),
        (
            "SELECT dt, hr, product, count(*) AS n FROM events GROUP BY GROUPING SETS ((dt, hr, product), (dt, product))",
            Mode::Partitions,
            "hr",
            "computed",
        ),
        (
            "SELECT max(dt) AS dt, product FROM events GROUP BY product",
            Mode::Partitions,
            "dt",
            "computed",
        ),
    ] {
        let e = check(sql, mode).await.expect_err(sql);
        assert!(
            e.contains(&format!(
                "output column `{column}` is named as a partition column"
            )) && e.contains(is),
            "{sql}: {e}"
        );
    }
}

/// The stream job recomputes a `partitions` transform over the partitions a micro-batch
/// touched, a backfill over those of its range: rows of one output partition that drew on
/// others would depend on which were read together.
#[tokio::test]
async fn partitions_transforms_whose_rows_draw_on_other_partitions_are_refused() {
    for (sql, what) in [
        (
            "SELECT dt, hr, product, count(*) OVER (PARTITION BY product) AS n FROM events",
            "its window function `count` has a PARTITION BY that lacks `dt`, `hr`",
        ),
        (
            "SELECT uuid, dt, hr, row_number() OVER (PARTITION BY dt ORDER BY uuid) AS n FROM events",
            "PARTITION BY that lacks `hr`",
        ),
        (
            "SELECT dt, hr, n FROM events JOIN (SELECT product, count(*) AS n FROM events GROUP BY product) c ON events.product = c.product",
            "it joins `events` with itself without equating `dt`, `hr`",
        ),
        (
            "SELECT DISTINCT ON (product) * FROM events ORDER BY product, uuid",
            "its DISTINCT ON lacks `dt`, `hr`",
        ),
        ("SELECT * FROM events ORDER BY uuid LIMIT 10", "it has a LIMIT"),
        ("SELECT dt, hr, uuid FROM events LIMIT 10", "it has a LIMIT or OFFSET"),
        (
            "SELECT a.dt, a.hr, count(*) AS n FROM events a JOIN events b ON a.product = b.product AND a.dt = b.dt GROUP BY a.dt, a.hr",
            "without equating `hr`",
        ),
        (
            "SELECT * FROM events WHERE uuid IN (SELECT uuid FROM events WHERE product = 'x')",
            "it reads `events` in a subquery",
        ),
        (
            "SELECT dt, hr, count(*) AS n FROM events WHERE product = (SELECT max(product) FROM events) GROUP BY dt, hr",
            "it reads `events` in a subquery",
        ),
    ] {
        let e = check(sql, Mode::Partitions).await.expect_err(sql);
        assert!(
            e.contains(what) && e.contains("would draw on rows of others") && e.contains("key it by"),
            "{sql}: {e}"
        );
    }
}

/// A `rows` transform runs on each micro-batch (a backfill: on whole partitions): SQL that
/// brings rows of `events` together would give other rows in each.
#[tokio::test]
async fn rows_transforms_that_bring_rows_together_are_refused() {
    for (sql, what) in [
        ("SELECT dt, count(*) AS n FROM events GROUP BY dt", "uses an aggregate"),
        ("SELECT uuid, row_number() OVER (ORDER BY uuid) AS n FROM events", "uses a window function"),
        ("SELECT DISTINCT product FROM events", "uses DISTINCT"),
        ("SELECT * FROM events ORDER BY uuid LIMIT 10", "uses a LIMIT"),
        ("SELECT uuid FROM events LIMIT 10 OFFSET 2", "uses a LIMIT or OFFSET"),
        (
            "SELECT a.uuid, a.dt, a.hr FROM events a JOIN events b ON a.product = b.product AND a.dt = b.dt AND a.hr = b.hr",
            "uses a join of `events` with itself",
        ),
        (
            "SELECT * FROM events WHERE uuid IN (SELECT uuid FROM events WHERE product = 'x')",
            "uses a subquery over `events`",
        ),
        (
            "SELECT * FROM events WHERE product IN (SELECT product FROM products WHERE product IN (SELECT product FROM events))",
            "uses a subquery over `events`",
        ),
    ] {
        let e = check(sql, Mode::Rows).await.expect_err(sql);
        assert!(e.contains(what) && e.contains("mode = \"partitions\""), "{sql}: {e}");
    }
}
