//! `partitions` transforms brought up to date from their previous output and the new rows.
//!
//! A `partitions` transform is defined over whole raw partitions; recomputing it reads every
//! row of each partition a micro-batch touched, so with one-minute micro-batches the hour's
//! last batch rereads the whole hour. When the SQL is a grouping whose every output column is
//! a group key or a `count`, `sum`, `min` or `max` (no DISTINCT, FILTER or ORDER BY inside),
//! the previous output rows are themselves partial results of the same grouping: the new
//! rows are grouped as they stream by, and the two are merged (counts and sums added, the
//! least of the minimums, the greatest of the maximums), which gives what a recomputation
//! over all rows gives. Any other SQL is recomputed as before.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::ExecutionPlan;
use futures::{FutureExt, StreamExt};

use crate::{combines_rows, physical, session, Error, Result, RowsSession, Transform};

/// The SQL that merges previous output rows and new partial rows (both of the transform's
/// output schema, in a table `merge_input`), or `None` when the transform's plan is not a
/// grouping of mergeable aggregates over one read of `events`.
pub fn merge_sql(plan: &LogicalPlan) -> Option<String> {
    let (order, rest) = match plan {
        LogicalPlan::Sort(s) if s.fetch.is_none() => (s.expr.as_slice(), s.input.as_ref()),
        LogicalPlan::Sort(_) => return None,
        p => (&[][..], p),
    };
    let LogicalPlan::Projection(projection) = rest else {
        return None;
    };
    let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
        return None;
    };
    if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
        || combines_rows(&aggregate.input).is_some()
        || scans_of(&aggregate.input, "events") != 1
    {
        return None;
    }
    let groups = aggregate.group_expr.len();
    let mut keys_seen = vec![false; groups];
    let (mut select, mut keys) = (Vec::new(), Vec::new());
    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
        let Expr::Column(column) = unalias(expr) else {
            return None;
        };
        let at = aggregate.schema.index_of_column(column).ok()?;
        let name = quote(field.name());
        if at < groups {
            keys_seen[at] = true;
            select.push(name.clone());
            keys.push(name);
            continue;
        }
        let Expr::AggregateFunction(f) = unalias(aggregate.aggr_expr.get(at - groups)?) else {
            return None;
        };
        let p = &f.params;
        if p.distinct || p.filter.is_some() || !p.order_by.is_empty() {
            return None;
        }
        let merge = match f.func.name() {
            "count" | "sum" => "sum",
            "min" => "min",
            "max" => "max",
            _ => return None,
        };
        select.push(format!("{merge}({name}) AS {name}"));
    }
    // A key left out of the output would merge rows of different groups.
    if keys_seen.contains(&false) {
        return None;
    }
    let mut sql = format!("SELECT {} FROM merge_input", select.join(", "));
    if !keys.is_empty() {
        sql += &format!(" GROUP BY {}", keys.join(", "));
    }
    if !order.is_empty() {
        let mut by = Vec::new();
        for s in order {
            let Expr::Column(c) = &s.expr else {
                return None;
            };
            projection
                .schema
                .field_with_unqualified_name(&c.name)
                .ok()?;
            by.push(format!(
                "{} {} NULLS {}",
                quote(&c.name),
                if s.asc { "ASC" } else { "DESC" },
                if s.nulls_first { "FIRST" } else { "LAST" }
            ));
        }
        sql += &format!(" ORDER BY {}", by.join(", "));
    }
    Some(sql)
}

/// `e` under any aliases.
pub(crate) fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How many times `plan` reads the table `name`.
pub(crate) fn scans_of(plan: &LogicalPlan, name: &str) -> usize {
    let mut n = 0;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(TableScan { table_name, .. }) = node {
            if table_name.table() == name {
                n += 1;
            }
        }
        // Subqueries are plans of their own.
        let _ = node.apply_subqueries(|sub| {
            n += scans_of(sub, name);
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// Rows handed to a running transform, read by its plan as `events`.
#[derive(Default)]
struct Queue {
    batches: VecDeque<RecordBatch>,
    closed: bool,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct QueueInput {
    schema: SchemaRef,
    queue: Mutex<Arc<Mutex<Queue>>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("batches", &self.batches.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl PartitionStream for QueueInput {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let queue = self.queue.lock().expect("not poisoned").clone();
        let stream = futures::stream::poll_fn(move |cx| {
            let mut q = queue.lock().expect("not poisoned");
            match q.batches.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(b))),
                None if q.closed => Poll::Ready(None),
                None => {
                    q.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// A `partitions` transform that can be kept up to date incrementally, planned once for a
/// run ([`RowsSession::prepare_incremental`]).
#[derive(Debug)]
pub struct PreparedIncremental {
    name: String,
    input: Arc<QueueInput>,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    merge: String,
    output: SchemaRef,
}

impl RowsSession {
    /// Plans `t` (a `partitions` transform) once over a streaming table `events` of
    /// `schema`, if its output can be merged with its previous output (see the module);
    /// `None` when it has to be recomputed over whole partitions.
    pub async fn prepare_incremental(
        &self,
        t: &Transform,
        schema: SchemaRef,
    ) -> Result<Option<PreparedIncremental>> {
        let input = Arc::new(QueueInput {
            schema: schema.clone(),
            queue: Mutex::new(Arc::default()),
        });
        let df = self.plan_over(input.clone(), schema, t).await?;
        let Some(merge) = merge_sql(df.logical_plan()) else {
            return Ok(None);
        };
        let output = Arc::new(df.schema().as_arrow().clone());
        Ok(Some(PreparedIncremental {
            name: t.name.clone(),
            input,
            plan: physical(df, t).await?,
            task: self.ctx.task_ctx(),
            merge,
            output,
        }))
    }
}

impl PreparedIncremental {
    /// The transform's output columns.
    pub fn output(&self) -> &SchemaRef {
        &self.output
    }

    /// Whether rows of `schema` (previous output read back) have every output column, by
    /// name and type: rows written by another version of the SQL do not, and are not merged.
    pub fn accepts(&self, schema: &arrow::datatypes::Schema) -> bool {
        self.output.fields().iter().all(|f| {
            schema
                .field_with_name(f.name())
                .is_ok_and(|g| g.data_type() == f.data_type())
        })
    }

    /// Starts a run over new rows (one micro-batch's): [`Running::push`] them as they come,
    /// [`Running::finish`] gives the transform's output over them.
    pub fn start(&self) -> Result<Running> {
        let queue: Arc<Mutex<Queue>> = Arc::default();
        *self.input.queue.lock().expect("not poisoned") = queue.clone();
        let stream = reset_plan_states(self.plan.clone())
            .and_then(|plan| plan.execute(0, self.task.clone()))
            .map_err(|source| Error::sql(&self.name, source))?;
        Ok(Running {
            name: self.name.clone(),
            queue,
            stream,
            out: Vec::new(),
        })
    }

    /// Merges `previous` (the transform's committed output rows of the partitions the new
    /// rows fall in, partition columns included, in any column order) with `partial`
    /// (a [`Running::finish`]): the output a recomputation over all their rows gives.
    pub async fn merge(
        &self,
        previous: Vec<RecordBatch>,
        partial: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        let mut rows = Vec::with_capacity(previous.len() + partial.len());
        for b in previous.into_iter().chain(partial) {
            rows.push(conform(&b, &self.output).map_err(|e| Error::sql(&self.name, e.into()))?);
        }
        let ctx = session();
        let table = MemTable::try_new(self.output.clone(), vec![rows])?;
        ctx.register_table("merge_input", Arc::new(table))?;
        let merged = ctx
            .sql(&self.merge)
            .await
            .map_err(|e| Error::sql(&self.name, e))?
            .collect()
            .await
            .map_err(|e| Error::sql(&self.name, e))?;
        merged
            .iter()
            .map(|b| conform(b, &self.output).map_err(|e| Error::sql(&self.name, e.into())))
            .collect()
    }
}

/// `batch`'s columns by name, in `schema`'s order and types.
fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column_by_name(f.name()).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no column `{}`", f.name()))
            })?;
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// A run of a [`PreparedIncremental`] over one micro-batch's rows.
pub struct Running {
    name: String,
    queue: Arc<Mutex<Queue>>,
    stream: SendableRecordBatchStream,
    out: Vec<RecordBatch>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("name", &self.name).finish()
    }
}

impl Running {
    /// Hands `batches` to the transform and lets it take them in at once (on this task:
    /// the grouping's work is done here, while the rows are in cache).
    pub fn push(&mut self, batches: &[RecordBatch]) -> Result<()> {
        {
            let mut q = self.queue.lock().expect("not poisoned");
            for b in batches {
                // A field of a null record reads as null ([`crate::nulls`]).
                let b = crate::nulls::batch(b.clone()).map_err(|e| Error::sql(&self.name, e))?;
                q.batches.push_back(b);
            }
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        // Poll until the plan waits for more rows.
        while let Some(next) = self.stream.next().now_or_never() {
            match next {
                Some(b) => self.out.push(b.map_err(|e| Error::sql(&self.name, e))?),
                None => break,
            }
        }
        Ok(())
    }

    /// Ends the rows and returns the transform's output over them.
    pub async fn finish(mut self) -> Result<Vec<RecordBatch>> {
        {
            let mut q = self.queue.lock().expect("not poisoned");
            q.closed = true;
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        while let Some(b) = self.stream.next().await {
            self.out.push(b.map_err(|e| Error::sql(&self.name, e))?);
        }
        Ok(self.out)
    }
}
