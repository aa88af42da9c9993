//! What silt's readers see: the committed files of each table, and nothing else.
//!
//! Each job registers its tables in the lake (`_silt/tables/{table}.json`, naming the job's
//! checkpoint location). [`LakeSnapshot::load`] reads the latest commit of each and
//! [`SnapshotStore`] serves exactly the listed files as a read-only object store, so that any
//! reader built on object store listings (DataFusion's listing tables, with Hive partition
//! pruning) sees whole micro-batches only, never a file of a batch in flight or one a
//! `partitions` transform has replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::{Deserialize, Serialize};
use silt_storage::Location;

use crate::log::{CommitLog, TableState};
use crate::partition::hive_path;
use crate::DataFile;
use crate::{Error, Result};

/// A table's entry in the lake's catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub table: String,
    pub job: String,
    /// The job's checkpoint location (an absolute URL).
    pub checkpoint: String,
    /// The same below the lake's root, when it is inside the lake (the default): readers
    /// take it first, so a lake copied or moved elsewhere (another bucket, another folder)
    /// still finds its commits. Older silts ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_in_lake: Option<String>,
    /// The defaults of the columns (the job's reader schema's fields that have one, as Avro
    /// JSON): what a reader gives rows of files written before a field was added. Older
    /// silts ignore it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, serde_json::Value>,
    /// A job's rejected-records table, whose columns are always the same: a reader can give
    /// it even when no file of it is left (a redrive brought every record in). Older silts
    /// ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rejected: bool,
    /// The partition columns that are not text that is never null, as the job writes them
    /// (`{"n": {"type": "Int32", "nullable": true}}`): a reader reads their folders' names as
    /// that type, and an empty one (a null value) as null. Older silts ignore it (and read
    /// every partition column as text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partition_types: BTreeMap<String, PartitionType>,
}

/// The type of a partition column ([`TableEntry::partition_types`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionType {
    /// Arrow's name of the type (`Int32`, `Date32`, `Decimal128(10, 2)`).
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// The partition columns `partition_by` typed as `types` has them (text that is never null
/// where it does not name them, or names a type this Arrow does not know).
pub fn partition_fields(
    partition_by: &[String],
    types: Option<&BTreeMap<String, PartitionType>>,
) -> Vec<FieldRef> {
    partition_by
        .iter()
        .map(|p| {
            let typed = types.and_then(|t| t.get(p)).and_then(|t| {
                let data_type = DataType::from_str(&t.data_type).ok()?;
                Some(Field::new(p, data_type, t.nullable))
            });
            Arc::new(typed.unwrap_or_else(|| Field::new(p, DataType::Utf8, false)))
        })
        .collect()
}

impl TableEntry {
    /// An entry for `table` of `job`, whose commit log is at `checkpoint`.
    pub fn new(lake: &Location, table: &str, job: &str, checkpoint: &Location) -> Self {
        let root = format!("{}/", lake.url.trim_end_matches('/'));
        Self {
            table: table.to_string(),
            job: job.to_string(),
            checkpoint: checkpoint.url.clone(),
            checkpoint_in_lake: checkpoint
                .url
                .strip_prefix(&root)
                .filter(|rel| !rel.is_empty())
                .map(str::to_string),
            defaults: BTreeMap::new(),
            rejected: false,
            partition_types: BTreeMap::new(),
        }
    }

    /// The entry with its partition columns' types (`partitions`: those columns of the
    /// table as the job writes it).
    pub fn with_partitions(self, partitions: &[FieldRef]) -> Self {
        let partition_types = partitions
            .iter()
            .filter(|f| f.data_type() != &DataType::Utf8 || f.is_nullable())
            .map(|f| {
                let t = PartitionType {
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                };
                (f.name().clone(), t)
            })
            .collect();
        Self {
            partition_types,
            ..self
        }
    }

    /// The entry of a job's rejected-records table.
    pub fn of_rejected(self) -> Self {
        Self {
            rejected: true,
            ..self
        }
    }

    /// The entry with the defaults of its columns.
    pub fn with_defaults(self, defaults: BTreeMap<String, serde_json::Value>) -> Self {
        Self { defaults, ..self }
    }

    /// Where the job's commit log is, for a reader of the lake at `lake`.
    pub fn commit_log(&self, lake: &Location) -> Result<Location> {
        Ok(match &self.checkpoint_in_lake {
            Some(rel) => lake.join(rel),
            None => silt_storage::open(&self.checkpoint, std::path::Path::new("/"))?,
        })
    }
}

/// Where the lake's catalog keeps `table`'s entry.
pub fn catalog_path(lake: &Location, table: &str) -> Path {
    lake.child(&format!("_silt/tables/{table}.json"))
}

/// The catalog's entry for `table`: which job writes it, or `None` while no job has.
pub async fn table_entry(lake: &Location, table: &str) -> Result<Option<TableEntry>> {
    let path = catalog_path(lake, table);
    let store_err = |source| Error::Store {
        path: path.to_string(),
        source,
    };
    let bytes = match lake.store.get(&path).await {
        Ok(r) => r.bytes().await.map_err(store_err)?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_err(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })
}

/// The catalog's entry for `ours.table` when it is another job's: it names another commit
/// log, whose latest commit holds the table. (An entry whose log holds no such table, its job
/// gone or the table dropped from it, may be taken over.)
pub async fn other_writer(lake: &Location, ours: &TableEntry) -> Result<Option<TableEntry>> {
    let Some(first) = table_entry(lake, &ours.table).await? else {
        return Ok(None);
    };
    let theirs = first.commit_log(lake)?;
    if first.checkpoint == ours.checkpoint || theirs.url == ours.commit_log(lake)?.url {
        return Ok(None);
    }
    let holds = CommitLog::new(theirs)
        .latest()
        .await?
        .is_some_and(|c| c.tables.contains_key(&ours.table));
    Ok(holds.then_some(first))
}

/// Registers a table as written by a job (idempotent). The entry is created with a
/// conditional put, so that of two jobs entering one new table at once the second is told, as
/// a job is told of a table another job writes: [`Error::Taken`] (see [`other_writer`]).
pub async fn register_table(lake: &Location, entry: &TableEntry) -> Result<()> {
    let path = catalog_path(lake, &entry.table);
    let body = serde_json::to_vec_pretty(entry).expect("serialises");
    let store_err = |source| Error::Store {
        path: path.to_string(),
        source,
    };
    match lake.store.get(&path).await {
        Ok(r) => {
            if r.bytes().await.map_err(store_err)? == body.as_slice() {
                return Ok(());
            }
        }
        Err(object_store::Error::NotFound { .. }) => {
            let create = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match lake
                .store
                .put_opts(&path, body.clone().into(), create)
                .await
            {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(e) => return Err(store_err(e)),
    }
    // Entered before (or just now, by another job): whose is it?
    if let Some(first) = other_writer(lake, entry).await? {
        let log = first.commit_log(lake)?.url;
        return Err(Error::Taken {
            table: entry.table.clone(),
            job: first.job,
            log,
        });
    }
    lake.store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(store_err)?;
    Ok(())
}

/// The committed state of every table of a lake.
#[derive(Debug, Clone)]
pub struct LakeSnapshot {
    pub lake: Location,
    pub tables: BTreeMap<String, (TableState, i64)>,
    /// Each table's column defaults, from its catalog entry ([`TableEntry::defaults`]).
    pub defaults: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// The tables that are jobs' rejected-records tables ([`TableEntry::rejected`]).
    pub rejected: std::collections::BTreeSet<String>,
    /// Each table's partition column types ([`TableEntry::partition_types`]).
    pub partition_types: BTreeMap<String, BTreeMap<String, PartitionType>>,
}

impl LakeSnapshot {
    /// Reads the catalog and each job's latest commit.
    pub async fn load(lake: &Location) -> Result<Self> {
        let prefix = lake.child("_silt/tables");
        let objects = crate::list_all(lake, &prefix).await?;
        let mut logs: BTreeMap<String, CommitLog> = BTreeMap::new();
        let (mut tables, mut defaults) = (BTreeMap::new(), BTreeMap::new());
        let mut rejected = std::collections::BTreeSet::new();
        let mut partition_types = BTreeMap::new();
        for o in objects {
            let store_err = |source| Error::Store {
                path: o.location.to_string(),
                source,
            };
            let bytes = lake
                .store
                .get(&o.location)
                .await
                .map_err(store_err)?
                .bytes()
                .await
                .map_err(store_err)?;
            let entry: TableEntry = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: o.location.to_string(),
                reason: e.to_string(),
            })?;
            let loc = entry.commit_log(lake)?;
            if !logs.contains_key(&loc.url) {
                logs.insert(loc.url.clone(), CommitLog::new(loc.clone()));
            }
            if let Some(commit) = logs[&loc.url].latest().await? {
                if let Some(state) = commit.tables.get(&entry.table) {
                    tables.insert(entry.table.clone(), (state.clone(), commit.committed_at_ms));
                }
            }
            if entry.rejected {
                rejected.insert(entry.table.clone());
            }
            if !entry.partition_types.is_empty() {
                partition_types.insert(entry.table.clone(), entry.partition_types);
            }
            if !entry.defaults.is_empty() {
                defaults.insert(entry.table, entry.defaults);
            }
        }
        Ok(Self {
            lake: lake.clone(),
            tables,
            defaults,
            rejected,
            partition_types,
        })
    }

    /// `table`'s partition columns, typed as its catalog entry says.
    pub fn partition_fields(&self, table: &str) -> Vec<FieldRef> {
        let partition_by = self
            .tables
            .get(table)
            .map_or(&[][..], |(state, _)| &state.partition_by[..]);
        partition_fields(partition_by, self.partition_types.get(table))
    }

    /// A read-only store holding exactly the committed files of every table, each at its
    /// [`reader_path`].
    pub fn store(&self) -> Arc<SnapshotStore> {
        let mut files = BTreeMap::new();
        for (table, (state, at)) in &self.tables {
            let modified = Utc.timestamp_millis_opt(*at).single().unwrap_or_default();
            let folder = self.lake.join(table);
            for f in &state.files {
                let location = reader_path(&self.lake, table, f);
                let stored = f.location(&folder);
                let meta = ObjectMeta {
                    location: location.clone(),
                    last_modified: modified,
                    size: f.bytes,
                    e_tag: None,
                    version: None,
                };
                files.insert(location, (meta, stored));
            }
        }
        Arc::new(SnapshotStore {
            inner: self.lake.store.clone(),
            files,
        })
    }
}

/// Where a reader of a [`LakeSnapshot`]'s store finds the file `f` of `table`: its path in the
/// lake's store, but with each partition folder named as a listing reader (DataFusion) decodes
/// it and as it asks for the partition of a value: `k=v` percent-encoded once, by the object
/// store's rules. A file is stored with its values Hive-escaped (`a%2Fb` for `a/b`), as outside
/// readers decode them: listed as it is, a partition value with `/`, `%`, `:`... came back to
/// DataFusion escaped (`a%2Fb`), and a filter on it found no file. An empty or null value
/// (stored in Hive's `__HIVE_DEFAULT_PARTITION__`) is listed as `k=`: empty text, which a
/// reader of a column that may be null reads as null
/// (`silt_transform::register_parquet_table`).
pub fn reader_path(lake: &Location, table: &str, f: &DataFile) -> Path {
    let (dir, name) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
    if f.partition.is_empty() || dir != hive_path(&f.partition) {
        return lake.child(&format!("{table}/{}", f.path));
    }
    let mut path = lake.child(table);
    for (k, v) in &f.partition {
        path = path.join(format!("{k}={v}"));
    }
    path.join(name)
}

/// A read-only view of a store that lists only a fixed set of files.
#[derive(Debug)]
pub struct SnapshotStore {
    inner: Arc<dyn ObjectStore>,
    /// Each file as listed ([`reader_path`]), and where the lake's store holds it.
    files: BTreeMap<Path, (ObjectMeta, Path)>,
}

impl fmt::Display for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SnapshotStore({} files of {})",
            self.files.len(),
            self.inner
        )
    }
}

fn read_only(op: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{op}: a lake snapshot is read-only").into(),
    }
}

impl SnapshotStore {
    fn under<'a>(&'a self, prefix: Option<&'a Path>) -> impl Iterator<Item = &'a ObjectMeta> + 'a {
        self.files
            .values()
            .map(|(m, _)| m)
            .filter(move |m| prefix.is_none_or(|p| m.location.prefix_matches(p)))
    }
}

#[async_trait]
impl ObjectStore for SnapshotStore {
    async fn put_opts(
        &self,
        _: &Path,
        _: PutPayload,
        _: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only("put"))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let Some((_, stored)) = self.files.get(location) else {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "not a committed file".into(),
            });
        };
        let mut got = self.inner.get_opts(stored, options).await?;
        got.meta.location = location.clone();
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let stored = self
            .files
            .get(location)
            .map_or(location, |(_, stored)| stored);
        self.inner.get_ranges(stored, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let v: Vec<_> = self.under(prefix).cloned().map(Ok).collect();
        futures::stream::iter(v).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let depth = prefix.map_or(0, |p| p.parts().count());
        let mut objects = Vec::new();
        let mut prefixes = BTreeSet::new();
        for m in self.under(prefix) {
            let parts: Vec<_> = m.location.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(m.clone());
            } else {
                prefixes.insert(Path::from_iter(parts[..=depth].iter().cloned()));
            }
        }
        Ok(ListResult {
            common_prefixes: prefixes.into_iter().collect(),
            objects,
        })
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(read_only("copy"))
    }
}
