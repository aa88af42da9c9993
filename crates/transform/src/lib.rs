//! # silt-transform: the shared SQL path
//!
//! The stream job and the backfill run a job's transforms through these functions and no
//! other, so that a stream run and a backfill of the same raw data give the same tables.
//!
//! A transform is DataFusion SQL over a table `events` (the raw table's columns, partition
//! columns included). Two modes:
//! * [`Mode::Rows`]: run on each micro-batch (filters, projections, row-wise functions, joins
//!   with small reference tables). Aggregates, windows, LIMITs, self-joins and subqueries
//!   over `events` are refused ([`check_rows_mode`]): over a micro-batch they would give a
//!   different answer than over the whole data;
//! * [`Mode::Partitions`]: recomputed over whole raw partitions (aggregates, windows,
//!   sessionization), replacing the output partitions they feed; or, when the SQL groups
//!   with `count`/`sum`/`min`/`max` only, merged with the previous output ([`incremental`]).
//!   Its rows of one output partition may draw only on that partition's raw rows
//!   ([`check_partitions_local`]), or a stream run and a backfill would differ.
//!
//! Execution is single-partitioned ([`session`]) so that the same input gives the same rows
//! in the same order, and a rerun of a micro-batch writes the same files.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch};
//! use silt_transform::{run_on_batches, Transform, Mode};
//!
//! let events = RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)]).unwrap();
//! let t = Transform::new("big", "SELECT n FROM events WHERE n > 1", Mode::Rows);
//! let out = run_on_batches(&t, &[], events.schema(), vec![events]).await?;
//! assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
//! # Ok::<(), silt_transform::Error>(()) }).unwrap();
//! ```

pub mod defaults;
pub mod incremental;
mod nulls;
pub mod udf;

pub use defaults::{evolved_schema, nested_nullable, ColumnDefaults};
pub use incremental::{merge_sql, PreparedIncremental, Running};

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;

/// Errors of transforms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQL is not accepted in this mode; the message says what to do.
    #[error("transform `{name}`: {reason}")]
    Refused { name: String, reason: String },
    #[error("transform `{name}`: {source}")]
    Sql {
        name: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A DataFusion error while planning or running transform `name`.
    fn sql(name: &str, source: datafusion::error::DataFusionError) -> Self {
        Error::Sql {
            name: name.to_string(),
            source,
        }
    }
}

/// How a transform is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Rows,
    Partitions,
}

/// A named SQL transform.
#[derive(Debug, Clone)]
pub struct Transform {
    /// The output table's name.
    pub name: String,
    pub sql: String,
    pub mode: Mode,
}

impl Transform {
    /// A transform of `sql` ([`without_bom`]).
    pub fn new(name: impl Into<String>, sql: impl Into<String>, mode: Mode) -> Self {
        let sql = sql.into();
        Self {
            name: name.into(),
            sql: match without_bom(&sql) {
                s if s.len() < sql.len() => s.to_string(),
                _ => sql,
            },
            mode,
        }
    }
}

/// SQL text without the byte order mark that Windows editors put before a file's text:
/// not SQL (DataFusion's parser refused it as "found: u{feff}").
pub fn without_bom(sql: &str) -> &str {
    sql.strip_prefix('\u{feff}').unwrap_or(sql)
}

/// A DataFusion session as transforms and queries use it: one partition (deterministic
/// order), identifiers as written. Avro field names are camelCase (`productId`); DataFusion
/// would otherwise fold an unquoted `productId` to `productid` and find no such column, where
/// DuckDB and Spark find it. Unquoted names are matched exactly, as quoted ones are.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(true)
        .with_batch_size(8192);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    udf::register(&ctx);
    ctx
}

/// The first thing `f` finds in the nodes of `plan` and of its subqueries, top down.
fn find_in_plan<T>(plan: &LogicalPlan, mut f: impl FnMut(&LogicalPlan) -> Option<T>) -> Option<T> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        found = f(node);
        Ok(if found.is_some() {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    });
    found
}

/// What in `plan` (subqueries included) brings rows of `events` together, if anything does:
/// an aggregate, a window, DISTINCT, a LIMIT, a join of `events` with itself or a subquery
/// over it. Nodes that do not read `events` (a reference table's own grouping) do not.
pub(crate) fn combines_rows(plan: &LogicalPlan) -> Option<&'static str> {
    find_in_plan(plan, |node| match node {
        LogicalPlan::Aggregate(a) if reads_events(&a.input) => {
            Some("an aggregate (GROUP BY, count, sum...)")
        }
        LogicalPlan::Window(w) if reads_events(&w.input) => Some("a window function (OVER ...)"),
        LogicalPlan::Distinct(d) if reads_events(d.input()) => Some("DISTINCT"),
        LogicalPlan::Join(j) if reads_events(&j.left) && reads_events(&j.right) => {
            Some("a join of `events` with itself")
        }
        LogicalPlan::Subquery(s) if reads_events(&s.subquery) => Some("a subquery over `events`"),
        node => limit_over_events(node),
    })
}

/// `a LIMIT or OFFSET` (`a LIMIT`: an ORDER BY's) when `node` limits rows of `events`: which
/// rows it keeps depends on every other row read with them.
fn limit_over_events(node: &LogicalPlan) -> Option<&'static str> {
    match node {
        LogicalPlan::Limit(l) if reads_events(&l.input) => Some("a LIMIT or OFFSET"),
        LogicalPlan::Sort(s) if s.fetch.is_some() && reads_events(&s.input) => Some("a LIMIT"),
        _ => None,
    }
}

/// Refuses a `rows` transform whose plan brings rows together (aggregates, windows, a LIMIT,
/// a self-join...): over one micro-batch it would not give the answer it gives over the whole
/// data, and a backfill (over whole partitions) would give another table than the run.
pub fn check_rows_mode(t: &Transform, plan: &LogicalPlan) -> Result<()> {
    if t.mode == Mode::Rows {
        if let Some(what) = combines_rows(plan) {
            return Err(Error::Refused {
                name: t.name.clone(),
                reason: format!(
                    "uses {what}, which over one micro-batch would not give the same answer as over all the data; set mode = \"partitions\" so it is recomputed over whole partitions"
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a transform with an output column named as one of the raw table's partition
/// columns (`partition_by`) that is not that column of `events` passed through as it is
/// (`hr AS dt`, `substr(dt, 1, 7) AS dt`, a literal). A transform's output is partitioned by
/// the raw partitions it reads: a backfill rebuilds the output partitions that the raw
/// partitions it reads name, and a `partitions` transform replaces those its raw partitions
/// name; rows put elsewhere would stay beside their rebuilt copies, and a stream run and a
/// backfill would give different tables.
pub fn check_partition_columns(
    t: &Transform,
    plan: &LogicalPlan,
    partition_by: &[String],
) -> Result<()> {
    for (i, (_, field)) in plan.schema().iter().enumerate() {
        let name = field.name();
        if !partition_by.contains(name) {
            continue;
        }
        let is = match events_column(plan, i) {
            Some(source) if source == *name => continue,
            Some(source) => format!("`events.{source}`"),
            None => {
                "not a column of `events` as it is (it is computed, a literal, or another table's)"
                    .to_string()
            }
        };
        return Err(Error::Refused {
            name: t.name.clone(),
            reason: format!(
                "its output column `{name}` is named as a partition column of the raw table but is {is}; a transform's output is partitioned by the raw partitions it reads (so that a stream run and a backfill give the same table): select `{name}` from events as it is, and give a computed column another name"
            ),
        });
    }
    Ok(())
}

/// Refuses a `partitions` transform in which rows of different output partitions meet: an
/// aggregate whose `GROUP BY`, a window whose `PARTITION BY` or a `DISTINCT ON` whose keys
/// lack one of the output's partition columns (`out_partitions`), a `LIMIT`, a join of
/// `events` with itself not on them, or a subquery over `events`. The stream job recomputes
/// such a transform over the partitions a micro-batch touched, and a backfill over those of
/// its range: an output row that drew on rows of other partitions would change with which
/// partitions were read together, and a stream run and a backfill would give different
/// tables. An output without partition columns is one partition, recomputed whole.
pub fn check_partitions_local(
    t: &Transform,
    plan: &LogicalPlan,
    out_partitions: &[String],
) -> Result<()> {
    if t.mode != Mode::Partitions || out_partitions.is_empty() {
        return Ok(());
    }
    let Some(what) = find_in_plan(plan, |node| crossing(node, out_partitions)) else {
        return Ok(());
    };
    let keys = out_partitions
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::Refused {
        name: t.name.clone(),
        reason: format!(
            "{what}, so its rows of one partition ({keys}) would draw on rows of others; a `partitions` transform is recomputed over the partitions a micro-batch touches (and a backfill over those of its range), so a stream run and a backfill would give different tables: key it by {keys} as well"
        ),
    })
}

/// What in `node` brings rows of different partitions (values of `parts`) together, if
/// anything does; nodes that do not read `events` never do.
fn crossing(node: &LogicalPlan, parts: &[String]) -> Option<String> {
    use datafusion::logical_expr::{Distinct, Expr};
    if let Some(limit) = limit_over_events(node) {
        return Some(format!("it has {limit}"));
    }
    // The partition columns that no key of `input` (expressions over its schema) is.
    let lacking = |input: &LogicalPlan, keys: &mut dyn Iterator<Item = &Expr>| {
        let found: Vec<String> = keys
            .filter_map(|e| {
                let c = bare_column(e)?;
                events_column(input, input.schema().index_of_column(c).ok()?)
            })
            .collect();
        let missing: Vec<String> = parts
            .iter()
            .filter(|p| !found.contains(p))
            .map(|p| format!("`{p}`"))
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    };
    match node {
        LogicalPlan::Aggregate(a) if reads_events(&a.input) => {
            let Some(keys) = group_keys(a) else {
                return Some("it groups by more than one GROUPING SETS, ROLLUP or CUBE".into());
            };
            let mut every = keys.iter().filter(|(_, every)| *every).map(|(e, _)| *e);
            lacking(&a.input, &mut every).map(|m| {
                format!(
                    "it aggregates with a GROUP BY (in each of its grouping sets) that lacks {m}"
                )
            })
        }
        LogicalPlan::Window(w) if reads_events(&w.input) => w.window_expr.iter().find_map(|e| {
            let Expr::WindowFunction(f) = incremental::unalias(e) else {
                return None;
            };
            lacking(&w.input, &mut f.params.partition_by.iter()).map(|m| {
                format!(
                    "its window function `{}` has a PARTITION BY that lacks {m}",
                    f.fun.name()
                )
            })
        }),
        LogicalPlan::Distinct(Distinct::On(d)) if reads_events(&d.input) => {
            lacking(&d.input, &mut d.on_expr.iter()).map(|m| format!("its DISTINCT ON lacks {m}"))
        }
        LogicalPlan::Join(j) if reads_events(&j.left) && reads_events(&j.right) => {
            // Equalities of a left and a right column: the join's keys, and those its ON
            // condition states beside them.
            let mut pairs: Vec<(&Expr, &Expr)> = j.on.iter().map(|(l, r)| (l, r)).collect();
            let conditions = j
                .filter
                .as_ref()
                .map(datafusion::logical_expr::utils::split_conjunction);
            for c in conditions.unwrap_or_default() {
                if let Expr::BinaryExpr(b) = c {
                    if b.op == datafusion::logical_expr::Operator::Eq {
                        pairs.push((&b.left, &b.right));
                        pairs.push((&b.right, &b.left));
                    }
                }
            }
            let side = |plan: &LogicalPlan, e: &Expr| {
                events_column(plan, plan.schema().index_of_column(bare_column(e)?).ok()?)
            };
            let missing: Vec<String> = parts
                .iter()
                .filter(|p| {
                    !pairs.iter().any(|(l, r)| {
                        side(&j.left, l).as_ref() == Some(*p)
                            && side(&j.right, r).as_ref() == Some(*p)
                    })
                })
                .map(|p| format!("`{p}`"))
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "it joins `events` with itself without equating {}",
                    missing.join(", ")
                )
            })
        }
        LogicalPlan::Subquery(s) if reads_events(&s.subquery) => {
            Some("it reads `events` in a subquery (join on the partition columns instead)".into())
        }
        _ => None,
    }
}

/// The column `e` is, under any aliases.
fn bare_column(e: &datafusion::logical_expr::Expr) -> Option<&datafusion::common::Column> {
    match incremental::unalias(e) {
        datafusion::logical_expr::Expr::Column(c) => Some(c),
        _ => None,
    }
}

/// The group keys of `a`, in the order of its output columns, each with whether every one of
/// its grouping sets holds it (a plain GROUP BY has one set; ROLLUP and CUBE have the empty
/// one). `None` for groupings DataFusion did not make one set of.
fn group_keys(
    a: &datafusion::logical_expr::Aggregate,
) -> Option<Vec<(&datafusion::logical_expr::Expr, bool)>> {
    use datafusion::logical_expr::{Expr, GroupingSet};
    match a.group_expr.as_slice() {
        [Expr::GroupingSet(set)] => {
            let every = |e: &Expr| match set {
                GroupingSet::GroupingSets(sets) => sets.iter().all(|s| s.contains(e)),
                GroupingSet::Rollup(_) | GroupingSet::Cube(_) => false,
            };
            Some(
                set.distinct_expr()
                    .into_iter()
                    .map(|e| (e, every(e)))
                    .collect(),
            )
        }
        keys if keys.iter().any(|e| matches!(e, Expr::GroupingSet(_))) => None,
        keys => Some(keys.iter().map(|e| (e, true)).collect()),
    }
}

/// Whether `plan` (its subqueries included) reads `events`.
fn reads_events(plan: &LogicalPlan) -> bool {
    incremental::scans_of(plan, "events") > 0
}

/// The column of `events` that output column `i` of `plan` is, passed through unchanged
/// (renamed, filtered, joined, grouped by, unioned with itself); `None` when it is computed
/// or comes from elsewhere.
fn events_column(plan: &LogicalPlan, i: usize) -> Option<String> {
    use bare_column as column;
    use datafusion::common::Column;
    use datafusion::logical_expr::Distinct;
    fn from(input: &LogicalPlan, c: &Column) -> Option<String> {
        events_column(input, input.schema().index_of_column(c).ok()?)
    }
    match plan {
        LogicalPlan::Projection(p) => from(&p.input, column(p.expr.get(i)?)?),
        // Their output columns are their input's, in the same places (a window's first).
        LogicalPlan::Filter(p) => events_column(&p.input, i),
        LogicalPlan::Sort(p) => events_column(&p.input, i),
        LogicalPlan::Limit(p) => events_column(&p.input, i),
        LogicalPlan::Repartition(p) => events_column(&p.input, i),
        LogicalPlan::SubqueryAlias(p) => events_column(&p.input, i),
        LogicalPlan::Distinct(Distinct::All(input)) => events_column(input, i),
        LogicalPlan::Distinct(Distinct::On(d)) => from(&d.input, column(d.select_expr.get(i)?)?),
        // Its other columns are repeated for each value unnested.
        LogicalPlan::Unnest(u) => {
            let input = *u.dependency_indices.get(i)?;
            let unnested = u.list_type_columns.iter().any(|(c, _)| *c == input)
                || u.struct_type_columns.contains(&input);
            if unnested {
                return None;
            }
            events_column(&u.input, input)
        }
        LogicalPlan::Window(p) if i < p.input.schema().fields().len() => events_column(&p.input, i),
        // A key some grouping set leaves out is null in that set's rows: computed.
        LogicalPlan::Aggregate(a) => {
            let (key, in_every_set) = *group_keys(a)?.get(i)?;
            if !in_every_set {
                return None;
            }
            from(&a.input, column(key)?)
        }
        LogicalPlan::Join(j) => {
            let c = Column::from(j.schema.qualified_field(i));
            from(&j.left, &c).or_else(|| from(&j.right, &c))
        }
        LogicalPlan::Union(u) => {
            let mut sources = u.inputs.iter().map(|p| events_column(p, i));
            let first = sources.next()??;
            sources.all(|s| s.as_ref() == Some(&first)).then_some(first)
        }
        LogicalPlan::TableScan(s) if s.table_name.table() == "events" => {
            Some(s.projected_schema.field(i).name().clone())
        }
        _ => None,
    }
}

/// Plans a transform against a session that has `events` registered, checking its mode.
/// SQL that reads a table the session lacks is refused with the tables it has.
pub async fn plan(ctx: &SessionContext, t: &Transform) -> Result<datafusion::dataframe::DataFrame> {
    let df = ctx.sql(&t.sql).await.map_err(|source| {
        match unknown_table(&source) {
            Some(table) => Error::Refused {
                name: t.name.clone(),
                reason: format!(
                    "reads a table `{table}` that transforms do not have; they read `events` (the raw table's rows) and the job's [[reference]] tables: {}",
                    table_names(ctx).join(", ")
                ),
            },
            None => Error::sql(&t.name, source),
        }
    })?;
    check_rows_mode(t, df.logical_plan())?;
    Ok(df)
}

/// The table a planning error says does not exist (as the SQL named it), if that is the error.
pub fn unknown_table(e: &datafusion::error::DataFusionError) -> Option<String> {
    // DataFusion: "table 'datafusion.public.name' not found" (possibly wrapped in context).
    let text = e.to_string();
    let start = text.find("table '")? + "table '".len();
    let len = text[start..].find("' not found")?;
    let qualified = &text[start..start + len];
    Some(
        qualified
            .strip_prefix("datafusion.public.")
            .unwrap_or(qualified)
            .to_string(),
    )
}

/// DataFusion's error text as it holds in silt's sessions. They match identifiers as written
/// (see [`session`]), so the advice to turn identifier normalisation off is dropped; and a
/// string column compared with an unquoted date or number (`dt = 2025-11-25` is arithmetic:
/// 1989), which DataFusion reports as a failed cast, says what to write instead. A statement
/// that does not parse is told as `SQL syntax error: ...` once, not as the parser error's
/// Rust debug form followed by its text again.
pub fn sql_error_text(text: &str) -> String {
    const NORMALIZATION: &str =
        " or disable the datafusion.sql_parser.enable_ident_normalization configuration";
    let mut text = syntax_error_text(text).unwrap_or_else(|| text.to_string());
    text = text.replace(NORMALIZATION, "");
    const ONE_STATEMENT: &str = "The context currently only supports a single SQL statement";
    if text.contains(ONE_STATEMENT) {
        text = text.replace(
            ONE_STATEMENT,
            "one statement at a time: `silt query` runs one (`silt sql` takes several, each ended with `;`)",
        );
    }
    if let Some(start) = text.find("Cannot cast string '") {
        let value = &text[start + "Cannot cast string '".len()..];
        let value = &value[..value.find('\'').unwrap_or(value.len())];
        text.push_str(&format!(
            " (a string column is compared with or cast to a number, and `{value}` is not one: quote the value you compare it with, as in dt = '2025-11-25' or hr = '07'; partition columns are strings)"
        ));
    }
    text
}

/// DataFusion shows a statement that does not parse as `SQL error: ParserError("...")`, and an
/// error chain adds the parser's own `: sql parser error: ...` after it; either becomes
/// `SQL syntax error: ...`.
fn syntax_error_text(text: &str) -> Option<String> {
    for variant in ["ParserError", "TokenizerError"] {
        let head = format!("SQL error: {variant}(\"");
        let Some(start) = text.find(&head) else {
            continue;
        };
        // The message as Rust's debug form of a string escapes it: up to the unescaped quote.
        let mut message = String::new();
        let mut chars = text[start + head.len()..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(start + head.len() + i + 1);
                    break;
                }
                '\\' => match chars.next()?.1 {
                    'n' => message.push('\n'),
                    't' => message.push('\t'),
                    other => message.push(other),
                },
                c => message.push(c),
            }
        }
        let rest = text[end?..].strip_prefix(')')?;
        let rest = rest
            .strip_prefix(&format!(": sql parser error: {message}"))
            .unwrap_or(rest);
        return Some(format!(
            "{}SQL syntax error: {message}{rest}",
            &text[..start]
        ));
    }
    None
}

/// The tables a session can read (every catalog and schema but `information_schema`), sorted.
pub fn table_names(ctx: &SessionContext) -> Vec<String> {
    let mut names = Vec::new();
    for c in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&c) else {
            continue;
        };
        for s in catalog.schema_names() {
            if s == "information_schema" {
                continue;
            }
            if let Some(schema) = catalog.schema(&s) {
                names.extend(schema.table_names());
            }
        }
    }
    names.sort();
    names
}

/// A small reference table that transforms may join with (CSV with a header, or Parquet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub path: std::path::PathBuf,
}

/// A [`session`] with reference tables registered: where every transform runs.
pub async fn transform_session(references: &[Reference]) -> Result<SessionContext> {
    let ctx = session();
    for r in references {
        let path = r.path.to_string_lossy();
        if path.ends_with(".parquet") {
            ctx.register_parquet(&r.name, path.as_ref(), Default::default())
                .await?;
        } else {
            let opts = datafusion::prelude::CsvReadOptions::new().has_header(true);
            ctx.register_csv(&r.name, path.as_ref(), opts).await?;
        }
    }
    Ok(ctx)
}

/// Runs a transform over in-memory batches (a micro-batch in `rows` mode).
pub async fn run_on_batches(
    t: &Transform,
    references: &[Reference],
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    RowsSession::new(references)
        .await?
        .prepare(t, schema)
        .await?
        .run(batches)
        .await
}

/// A session for `rows` transforms kept for a whole run: the functions and reference tables
/// are set up once, and each transform is planned once ([`RowsSession::prepare`]) and then
/// run over group after group of rows.
#[derive(Clone)]
pub struct RowsSession {
    ctx: SessionContext,
}

impl std::fmt::Debug for RowsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowsSession").finish_non_exhaustive()
    }
}

impl RowsSession {
    pub async fn new(references: &[Reference]) -> Result<Self> {
        let ctx = transform_session(references).await?;
        // A prepared plan is executed again and again: no filter built by one execution
        // (a join's build side, a top-k) may stay in the plan for the next.
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .optimizer
            .enable_dynamic_filter_pushdown = false;
        Ok(Self { ctx })
    }

    /// Plans `t` once over a table `events` of `schema`, whose rows are those given to each
    /// [`PreparedRows::run`].
    pub async fn prepare(&self, t: &Transform, schema: SchemaRef) -> Result<PreparedRows> {
        let input = Arc::new(Input {
            schema: schema.clone(),
            batches: Mutex::new(Vec::new()),
        });
        let df = self.plan_over(input.clone(), schema, t).await?;
        let plan = physical(df, t).await?;
        Ok(PreparedRows {
            name: t.name.clone(),
            input,
            plan,
            task: self.ctx.task_ctx(),
        })
    }

    /// Plans `t` with `input` registered as the table `events` (of `schema`) for the time
    /// of the planning; the plan keeps reading `input`.
    async fn plan_over(
        &self,
        input: Arc<dyn PartitionStream>,
        schema: SchemaRef,
        t: &Transform,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let table = StreamingTable::try_new(schema, vec![input])?;
        self.ctx.deregister_table("events")?;
        self.ctx.register_table("events", Arc::new(table))?;
        let planned = plan(&self.ctx, t).await;
        self.ctx.deregister_table("events")?;
        planned
    }
}

/// The physical plan of a transform's planned SQL.
async fn physical(
    df: datafusion::dataframe::DataFrame,
    t: &Transform,
) -> Result<Arc<dyn ExecutionPlan>> {
    df.create_physical_plan()
        .await
        .map_err(|source| Error::sql(&t.name, source))
}

/// The rows a prepared transform reads as `events` in its current run.
#[derive(Debug)]
struct Input {
    schema: SchemaRef,
    batches: Mutex<Vec<RecordBatch>>,
}

impl PartitionStream for Input {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // Cloned, not taken: a plan may read `events` twice (a self-join).
        let batches = self.batches.lock().expect("not poisoned").clone();
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ))
    }
}

/// A `rows` transform planned once: the SQL is parsed, checked, optimised and planned when
/// it is prepared, so a run over a few thousand rows costs only their execution.
#[derive(Debug)]
pub struct PreparedRows {
    name: String,
    input: Arc<Input>,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
}

impl PreparedRows {
    /// Runs the transform over `batches` (of the schema it was prepared with) as `events`.
    pub async fn run(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        // A field of a null record reads as null ([`nulls`]).
        let batches = batches
            .into_iter()
            .map(nulls::batch)
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(|source| Error::sql(&self.name, source))?;
        *self.input.batches.lock().expect("not poisoned") = batches;
        let out = match reset_plan_states(self.plan.clone()) {
            Ok(plan) => datafusion::physical_plan::collect(plan, self.task.clone()).await,
            Err(e) => Err(e),
        };
        self.input.batches.lock().expect("not poisoned").clear();
        out.map_err(|source| Error::sql(&self.name, source))
    }
}

impl PreparedRows {
    /// When the transform passes columns of `events` through as they are (`SELECT * FROM
    /// events`, `SELECT uuid, url, dt, hr FROM events`: no filter, no function, every row
    /// once and in order), the `events` column each output column is; `None` when it does
    /// anything else. Whether names are kept is for the caller to see in the output schema.
    /// A writer can then copy those columns' encoded pages instead of running the SQL and
    /// encoding its output again.
    pub fn passed_through(&self) -> Option<Vec<usize>> {
        use datafusion::physical_expr::expressions::Column;
        use datafusion::physical_plan::projection::ProjectionExec;
        use datafusion::physical_plan::streaming::StreamingTableExec;
        let input: Arc<dyn PartitionStream> = self.input.clone();
        fn columns(
            plan: &dyn ExecutionPlan,
            input: &Arc<dyn PartitionStream>,
        ) -> Option<Vec<usize>> {
            if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
                let below = columns(p.input().as_ref(), input)?;
                return p
                    .expr()
                    .iter()
                    .map(|e| {
                        let c = e.expr.downcast_ref::<Column>()?;
                        below.get(c.index()).copied()
                    })
                    .collect();
            }
            let s = plan.downcast_ref::<StreamingTableExec>()?;
            let ours = matches!(s.partitions().as_slice(), [p] if Arc::ptr_eq(p, input));
            if !ours || s.limit().is_some() {
                return None;
            }
            Some(match s.projection() {
                Some(p) => p.to_vec(),
                None => (0..s.partition_schema().fields().len()).collect(),
            })
        }
        columns(self.plan.as_ref(), &input)
    }

    /// The schema of the transform's output.
    pub fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }
}

/// Runs a transform in a session where `events` (and any reference tables) are registered.
pub async fn run(ctx: &SessionContext, t: &Transform) -> Result<Vec<RecordBatch>> {
    let df = plan(ctx, t).await?;
    df.collect()
        .await
        .map_err(|source| Error::sql(&t.name, source))
}

/// The schema a table is read with ([`evolved_schema`]) from one file of each schema its
/// files have, oldest first (one footer read each).
pub async fn table_schema(
    ctx: &SessionContext,
    store: Arc<dyn ObjectStore>,
    one_per_schema: &[object_store::ObjectMeta],
) -> Result<SchemaRef> {
    use datafusion::datasource::file_format::FileFormat;
    let format = ParquetFormat::default();
    let mut versions = Vec::with_capacity(one_per_schema.len());
    for file in one_per_schema {
        let file = std::slice::from_ref(file);
        versions.push(format.infer_schema(&ctx.state(), &store, file).await?);
    }
    Ok(evolved_schema(&versions)?)
}

/// Registers a lake table as a Hive-partitioned Parquet listing table read through `store`
/// (a lake snapshot, so only committed files are seen). `url` is the table's folder under a
/// URL whose scheme and host the store is registered for; `schema` is the files' schema
/// (without partition columns; [`table_schema`] for files of several schemas). A column some
/// files lack reads as its default in `defaults` there ([`defaults`]). `partitions` are the
/// partition columns as the job had them (a number, a date, nullable text...): each is read
/// from its folders' names as that type, and an empty name (a null or empty value: Hive's
/// default partition, see `silt_lake_writer::reader_path`) as null where the column may be
/// null, so that a transform reads the lake's rows as the stream job had them.
#[allow(clippy::too_many_arguments)]
pub async fn register_parquet_table(
    ctx: &SessionContext,
    name: &str,
    store_url: &url::Url,
    store: Arc<dyn ObjectStore>,
    table_path: &str,
    partitions: &[arrow::datatypes::FieldRef],
    schema: SchemaRef,
    defaults: &ColumnDefaults,
) -> Result<()> {
    ctx.register_object_store(store_url, store);
    let url = ListingTableUrl::parse(format!(
        "{}{}/",
        store_url.as_str().trim_end_matches('/').to_string() + "/",
        table_path.trim_matches('/')
    ))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partitions
                .iter()
                .map(|p| (p.name().clone(), DataType::Utf8))
                .collect(),
        );
    let config = ListingTableConfig::new(url).with_listing_options(options);
    let (schema, adapter, filled) = defaults::reading(schema, defaults);
    let mut config = config.with_schema(schema);
    if let Some(adapter) = adapter {
        config = config.with_expr_adapter_factory(adapter);
    }
    if filled {
        // A file's statistics give a column it lacks as all null, and the scan would take
        // that constant over the default (DataFusion 55): without statistics it asks the
        // adapter. Session-wide, which costs a lake session only the footer reads at planning.
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .collect_statistics = false;
    }
    let listing: Arc<dyn datafusion::catalog::TableProvider> =
        Arc::new(ListingTable::try_new(config)?);
    // Text that is never null is read as the folders name it.
    let as_named = partitions
        .iter()
        .all(|p| p.data_type() == &DataType::Utf8 && !p.is_nullable());
    if as_named {
        ctx.register_table(name, listing)?;
    } else {
        ctx.register_table(name, Arc::new(typed_partitions(name, listing, partitions)?))?;
    }
    Ok(())
}

/// A view of `listing` whose partition columns (text, as the folders name them) are read as
/// `partitions` type them: an empty value is null where the column may be null, the others
/// cast to the column's type (what the job's writer cast to text).
fn typed_partitions(
    name: &str,
    listing: Arc<dyn datafusion::catalog::TableProvider>,
    partitions: &[arrow::datatypes::FieldRef],
) -> Result<datafusion::datasource::ViewTable> {
    use datafusion::logical_expr::{cast, LogicalPlanBuilder};
    use datafusion::prelude::{col, lit, nullif};
    let columns: Vec<_> = listing
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let c = col(datafusion::common::Column::new(Some(name), f.name()));
            let Some(p) = partitions.iter().find(|p| p.name() == f.name()) else {
                return c;
            };
            let c = if p.is_nullable() {
                nullif(c, lit(""))
            } else {
                c
            };
            let c = if p.data_type() == &DataType::Utf8 {
                c
            } else {
                cast(c, p.data_type().clone())
            };
            c.alias(f.name())
        })
        .collect();
    let plan = LogicalPlanBuilder::scan(
        name,
        datafusion::datasource::provider_as_source(listing),
        None,
    )?
    .project(columns)?
    .build()?;
    Ok(datafusion::datasource::ViewTable::new(plan, None))
}
