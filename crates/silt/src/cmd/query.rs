//! `silt query SQL` and the lake session that `silt sql` and the backfill share.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use silt_lake_writer::LakeSnapshot;
use silt_storage::Location;

/// The URL the lake snapshot is registered under in a session.
pub const LAKE_URL: &str = "silt://lake/";

/// Default lake location for commands.
pub const DEFAULT_LAKE: &str = "file://lake";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// One SQL statement over the lake's tables (EXPLAIN works too).
    pub sql: String,
    /// The lake's root.
    #[arg(long, env = "SILT_LAKE", default_value = DEFAULT_LAKE)]
    pub lake: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Tables of the lake that a session could not register, with why (a file gone, a schema
/// no reader merges): the other tables are still queried.
pub type Unreadable = std::collections::BTreeMap<String, String>;

/// A session with every committed table of the lake registered with its Hive partitions,
/// reading only committed files (a WHERE on partition columns prunes files); a table that
/// cannot be registered is left out, with its reason, so the others can still be read.
pub async fn lake_session(
    lake: &Location,
) -> anyhow::Result<(SessionContext, LakeSnapshot, Unreadable)> {
    let mut snapshot = LakeSnapshot::load(lake)
        .await
        .context("reading the lake's commits")?;
    // A job's rejected table that no record has reached yet (the catalog has it, no commit
    // does) is there, empty: an alert on it must not fail on a lake that is doing well.
    for table in &snapshot.rejected {
        if !snapshot.tables.contains_key(table) {
            let state = silt_lake_writer::TableState {
                partition_by: crate::job::rejected_partitions(),
                files: Vec::new(),
            };
            snapshot.tables.insert(table.clone(), (state, 0));
        }
    }
    let ctx = silt_transform::session();
    let store = snapshot.store();
    let url = url::Url::parse(LAKE_URL).expect("valid");
    let mut unreadable = Unreadable::new();
    for (table, (state, _)) in &snapshot.tables {
        if state.files.is_empty() {
            // No file: every record of its micro-batches so far was rejected, or every file
            // was replaced (a redrive brought each rejected record in, a backfill found no
            // rows). A rejected table, whose columns are known, reads as empty; any other is
            // named with why it cannot be read.
            if snapshot.rejected.contains(table) {
                empty_rejected_table(&ctx, table, &state.partition_by)?;
            } else {
                unreadable.insert(
                    table.clone(),
                    "it has no committed file (every record so far was rejected, or later \
                     commits replaced its files), and its columns are known only from its \
                     files"
                        .into(),
                );
            }
            continue;
        }
        let path = lake.child(table);
        let registered = async {
            let schema = silt_transform::table_schema(
                &ctx,
                store.clone(),
                &one_file_per_schema(lake, table, &state.files),
            )
            .await
            .context("reading its schema")?;
            silt_transform::register_parquet_table(
                &ctx,
                table,
                &url,
                store.clone(),
                path.as_ref(),
                &snapshot.partition_fields(table),
                schema,
                snapshot.defaults.get(table).unwrap_or(&Default::default()),
            )
            .await
            .context("registering it")
        };
        if let Err(e) = registered.await {
            unreadable.insert(table.clone(), crate::one_line(&e));
        }
    }
    Ok((ctx, snapshot, unreadable))
}

/// Registers a rejected-records table of no rows: its columns, then its partition columns.
fn empty_rejected_table(
    ctx: &SessionContext,
    table: &str,
    partition_by: &[String],
) -> anyhow::Result<()> {
    let mut fields: Vec<arrow::datatypes::FieldRef> = silt_ingest::rejected_schema()
        .fields()
        .iter()
        .cloned()
        .collect();
    fields.extend(partition_by.iter().map(|p| {
        Arc::new(arrow::datatypes::Field::new(
            p,
            arrow::datatypes::DataType::Utf8,
            false,
        ))
    }));
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
    ctx.register_table(table, Arc::new(empty))?;
    Ok(())
}

/// One file of each schema a table's files have (as the commit records them; each file
/// written before silt recorded them counts as its own), oldest schema first: a schema is as
/// old as its newest file, files being listed in the order they were committed.
fn one_file_per_schema(
    lake: &Location,
    table: &str,
    files: &[silt_lake_writer::DataFile],
) -> Vec<object_store::ObjectMeta> {
    // Per schema: the position of its newest file, and its first file.
    let mut schemas: Vec<(usize, &silt_lake_writer::DataFile)> = Vec::new();
    let mut keyed: std::collections::HashMap<&str, usize> = Default::default();
    for (at, f) in files.iter().enumerate() {
        match f.schema.as_deref() {
            Some(key) => {
                let i = *keyed.entry(key).or_insert_with(|| {
                    schemas.push((at, f));
                    schemas.len() - 1
                });
                schemas[i].0 = at;
            }
            None => schemas.push((at, f)),
        }
    }
    schemas.sort_by_key(|(newest, _)| *newest);
    schemas
        .into_iter()
        .map(|(_, f)| object_store::ObjectMeta {
            location: silt_lake_writer::reader_path(lake, table, f),
            last_modified: Default::default(),
            size: f.bytes,
            e_tag: None,
            version: None,
        })
        .collect()
}

/// Runs one statement and returns its batches.
pub async fn query(lake: &Location, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let mut session = lake_session(lake).await?;
    run_statement(&mut session, lake, sql).await
}

/// A [`lake_session`]: the session, the commits it reads, the tables it left out.
pub type Session = (SessionContext, LakeSnapshot, Unreadable);

/// Runs one statement over `session` and returns its batches. A committed file that a newer
/// commit has replaced since the session read the commits (a recomputed partition, a
/// compacted hour: the job deletes such files once its commit is made) is gone: the session
/// is then taken again at the latest commits and the statement run again over them (up to
/// three times), with a note on stderr, where it failed with "not found".
pub async fn run_statement(
    session: &mut Session,
    lake: &Location,
    sql: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    let sql = silt_transform::without_bom(sql);
    let mut again = 0;
    loop {
        let (ctx, _, unreadable) = &*session;
        let result = async {
            let frame = plan(ctx, lake, unreadable, sql).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let mut batches = frame.collect().await?;
            // No rows still has columns: a table's header, a CSV's first line.
            if batches.is_empty() {
                batches.push(RecordBatch::new_empty(schema));
            }
            Ok(batches)
        }
        .await;
        match result {
            Err(e) if again < 3 && crate::file_gone(&e) => {
                again += 1;
                eprintln!(
                    "note: a newer commit replaced files the statement was reading; reading the \
                     latest commits and running it again"
                );
                *session = lake_session(lake).await?;
            }
            result => return result,
        }
    }
}

/// Plans one statement over a [`lake_session`]; a table the lake lacks is named with the
/// tables it has, one it could not read with why.
pub async fn plan(
    ctx: &SessionContext,
    lake: &Location,
    unreadable: &Unreadable,
    sql: &str,
) -> anyhow::Result<datafusion::dataframe::DataFrame> {
    let e = match ctx.sql(sql).await {
        Ok(df) => return Ok(df),
        Err(e) => e,
    };
    let Some(table) = silt_transform::unknown_table(&e) else {
        return Err(anyhow::Error::new(e));
    };
    if let Some(why) = unreadable.get(&table) {
        anyhow::bail!(
            "table `{table}` of the lake at {} cannot be read: {why}",
            lake.url
        );
    }
    let tables = silt_transform::table_names(ctx);
    Err(if tables.is_empty() {
        match lake_above(lake).await {
            Some((up, name)) => anyhow::anyhow!(
                "no table `{table}`: {} is the folder of the table `{name}` of the lake at \
                 {up}, not a lake: give the lake (--lake {up})",
                lake.url
            ),
            None => anyhow::anyhow!(
                "no table `{table}`: the lake at {} has no committed table yet (has a job run?)",
                lake.url
            ),
        }
    } else {
        anyhow::anyhow!(
            "no table `{table}` in the lake at {}; its tables: {}",
            lake.url,
            tables.join(", ")
        )
    })
}

/// The lake and table whose table folder `lake` is (the catalog of the folder above it
/// names it), for a reader who gave a table's folder for the lake.
async fn lake_above(lake: &Location) -> Option<(String, String)> {
    let (up, name) = lake.url.trim_end_matches('/').rsplit_once('/')?;
    let above = silt_storage::open(up, Path::new(".")).ok()?;
    let entry = silt_lake_writer::catalog_path(&above, name);
    object_store::ObjectStoreExt::head(&above.store, &entry)
        .await
        .ok()?;
    Some((up.to_string(), name.to_string()))
}

/// Writes batches in a format.
pub fn print(batches: &[RecordBatch], format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for b in batches {
                w.write(&nested_as_json(b)?)?;
            }
        }
        Format::Json => {
            // A null is `"key": null`, not a missing key: every row has every column, as a
            // reader of the array expects.
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// The batch with each nested column (list, struct, map, union) as the JSON text of its
/// values, which CSV has no other way to hold; other columns as they are, nulls kept.
fn nested_as_json(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use arrow::array::{Array, ArrayRef, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let options = arrow::json::writer::EncoderOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.clone());
            columns.push(column.clone());
            continue;
        }
        let mut encoder = arrow::json::writer::make_encoder(field, column.as_ref(), &options)?;
        let mut text = StringBuilder::with_capacity(column.len(), column.len() * 16);
        let mut value = Vec::new();
        for i in 0..column.len() {
            if column.is_null(i) {
                text.append_null();
                continue;
            }
            value.clear();
            encoder.encode(i, &mut value);
            text.append_value(std::str::from_utf8(&value)?);
        }
        fields.push(Arc::new(Field::new(
            field.name(),
            DataType::Utf8,
            field.is_nullable(),
        )));
        columns.push(Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

pub async fn run(args: QueryArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let lake = silt_storage::open(&args.lake, Path::new("."))
        .with_context(|| format!("lake {}", args.lake))?;
    let batches = query(&lake, &args.sql).await?;
    print(&batches, args.format, out)
}

/// Keeps `Arc` in scope for callers that hold sessions across tasks.
pub type SharedSession = Arc<SessionContext>;
