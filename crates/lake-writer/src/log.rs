//! The commit log: how a micro-batch becomes visible whole, exactly once.
//!
//! A job's checkpoint folder holds:
//!
//! ```text
//! intents/{batch:010}.json   what the batch will read (written before any data file)
//! dedup/{batch:010}.bin      the dedup index after the batch: a whole snapshot, or the ids
//!                            the batch added (a delta over the snapshot and deltas before)
//! commits/{batch:010}.json   the commit: source positions, dedup snapshot and deltas, and
//!                            the live files of every table the job writes: now and then
//!                            the full lists, and in between only the files added and removed
//!                            since the commit that holds them (its `base`)
//! ```
//!
//! A commit's write so grows with what its micro-batch changed, not with how many files the
//! tables hold (a job of one-minute micro-batches adds ~1,440 files a day to each table):
//! [`CommitLog::commit_batch`] writes the full lists again once the changes since the last
//! full commit pass [`FULL_AFTER_CHANGES`] files or half the live files. Reading a commit
//! reads at most two files: it and its base (kept by [`CommitLog::prune`]).
//!
//! # The protocol, in the order it writes
//!
//! 1. Read the latest commit `N` (none: batch 0 starts from the job's `start`).
//! 2. Plan batch `N+1`: if `intents/N+1` exists, a run died (or is running) after planning
//!    it: adopt that plan unchanged. Otherwise read the source, and write the plan (each
//!    shard's first and last position) with a create-only put; if that put finds an intent
//!    already there, adopt it instead.
//! 3. Write the data files of every table. Names are deterministic (`part-{batch}-{n}`) and
//!    their content is a function of the plan, the dedup state of commit `N` and the live
//!    files of commit `N`; so a rerun of the plan overwrites the same names with the same
//!    bytes, and a plain directory reader never sees a row twice. Puts are atomic, so no
//!    reader sees a partly written file.
//! 4. Write the dedup snapshot for `N+1` (deterministic too).
//! 5. Create `commits/N+1` with a create-only put: this is the commit point. Readers that go
//!    through silt see the tables as the latest commit lists them, so a batch appears whole
//!    or not at all. Of two runs of one job, only one can create `commits/N+1`; the other
//!    gets [`Error::Conflict`] and stops.
//! 6. Delete the files that commit `N` listed and `N+1` no longer does (files replaced by a
//!    `partitions` transform, a compaction), and old log entries. Files of batches `<= N`
//!    that no commit lists are a killed writer's leftovers: a writer deletes them when it
//!    starts ([`vacuum`]), but for those of a command beside the runs that holds its lease
//!    ([`CommitLog::take_lease`]).
//!
//! Why a rerun converges: every step before 5 is idempotent and deterministic given the
//! plan; step 5 happens once; step 6 only deletes what no commit at or after `N+1` lists.
//!
//! `writers/{tag}.lease` holds the lease of a command that writes tagged files beside the
//! runs (a backfill, a re-drive).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use silt_storage::Location;

use crate::write::DataFile;
use crate::{Error, Result};

/// A planned micro-batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub batch: u64,
    /// Who planned it (for messages).
    pub run_id: String,
    /// The job's plan: what to read (opaque to the log).
    pub plan: serde_json::Value,
}

/// The intent-file format this silt writes, and the newest it reads (1: intents written before
/// the `format` key, which have none). A run adopts the intent it finds, so one that a newer
/// silt planned, whose plan this silt may misread, is refused instead.
pub const INTENT_FORMAT: u32 = 1;

/// An intent as its file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredIntent<'a> {
    #[serde(default = "legacy_format")]
    format: u32,
    #[serde(flatten)]
    intent: Cow<'a, Intent>,
}

/// A file of the log that names its format.
trait Versioned: for<'de> Deserialize<'de> {
    /// What the file is, for messages.
    const WHAT: &'static str;
    /// The newest format this silt reads.
    const KNOWN: u32;
    fn format(&self) -> u32;
}

impl Versioned for StoredIntent<'static> {
    const WHAT: &'static str = "intent";
    const KNOWN: u32 = INTENT_FORMAT;
    fn format(&self) -> u32 {
        self.format
    }
}

/// A table's state after a commit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TableState {
    pub partition_by: Vec<String>,
    /// Every live file of the table.
    pub files: Vec<DataFile>,
}

/// A committed micro-batch, with the full file lists of its tables (however it is stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub job: String,
    pub batch: u64,
    pub committed_at_ms: i64,
    /// Where the source continues (opaque to the log).
    pub source: serde_json::Value,
    /// Name of the dedup snapshot (below `dedup/`).
    pub dedup: Option<String>,
    /// Names of the dedup deltas to replay over the snapshot, oldest first (below `dedup/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedup_deltas: Vec<String>,
    /// Every table's live files (stored only in a full commit; a commit between two full
    /// ones stores its changes since the last).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, TableState>,
    /// Counters of this batch (opaque to the log).
    pub stats: serde_json::Value,
}

/// Live-file changes after which a commit holds the full file lists again (or after half
/// the live files, when there are fewer).
pub const FULL_AFTER_CHANGES: usize = 1000;

/// The commit-file format this silt writes, and the newest it reads. 1: full file lists only
/// (no `format` key); 2: commits may hold changes since a full commit (`base`, `changes`). A
/// silt that meets a newer format refuses it rather than misread it: an older reader would take
/// a commit of changes for one with no files.
pub const COMMIT_FORMAT: u32 = 2;

fn legacy_format() -> u32 {
    1
}

impl Versioned for Stored<'static> {
    const WHAT: &'static str = "commit";
    const KNOWN: u32 = COMMIT_FORMAT;
    fn format(&self) -> u32 {
        self.format
    }
}

/// A commit as its file holds it: with the full file lists (`base` none), or with the
/// changes since the full commit `base` (files added or rewritten, paths removed).
#[derive(Debug, Serialize, Deserialize)]
struct Stored<'a> {
    #[serde(default = "legacy_format")]
    format: u32,
    /// Borrowed when written (a full commit's lists are not copied to be serialised).
    #[serde(flatten)]
    commit: Cow<'a, Commit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    changes: BTreeMap<String, TableChanges>,
}

/// A table's files added (or rewritten) and removed since a base commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TableChanges {
    partition_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    added: Vec<DataFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<String>,
}

/// A full commit's tables, as the last full commit read or written holds them.
#[derive(Debug, Clone)]
struct Base {
    batch: u64,
    tables: Arc<BTreeMap<String, TableState>>,
}

/// What changed from `base` to `tables`, or `None` when only full lists can say it (a table
/// dropped or repartitioned).
fn changes_since(
    base: &BTreeMap<String, TableState>,
    tables: &BTreeMap<String, TableState>,
) -> Option<BTreeMap<String, TableChanges>> {
    if base.keys().any(|t| !tables.contains_key(t)) {
        return None;
    }
    let mut out = BTreeMap::new();
    for (name, now) in tables {
        let before = base.get(name);
        if before.is_some_and(|b| b.partition_by != now.partition_by) {
            return None;
        }
        let before: HashMap<&str, &DataFile> = before
            .map(|b| b.files.iter().map(|f| (f.path.as_str(), f)).collect())
            .unwrap_or_default();
        let after: HashMap<&str, &DataFile> =
            now.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let added: Vec<DataFile> = now
            .files
            .iter()
            .filter(|f| before.get(f.path.as_str()) != Some(f))
            .cloned()
            .collect();
        let removed: Vec<String> = base
            .get(name)
            .into_iter()
            .flat_map(|b| &b.files)
            .filter(|f| after.get(f.path.as_str()) != Some(f))
            .map(|f| f.path.clone())
            .collect();
        if base.contains_key(name) && added.is_empty() && removed.is_empty() {
            continue;
        }
        out.insert(
            name.clone(),
            TableChanges {
                partition_by: now.partition_by.clone(),
                added,
                removed,
            },
        );
    }
    Some(out)
}

/// One table after its changes: its partition columns, and `base`'s files kept in their
/// order, then the ones added (a file rewritten under its old path is removed and added again).
fn table_after<'a>(
    base: Option<&'a TableState>,
    changes: Option<&'a TableChanges>,
) -> (&'a [String], impl Iterator<Item = &'a DataFile>) {
    let partition_by = match (changes, base) {
        (Some(c), _) => &c.partition_by,
        (None, Some(b)) => &b.partition_by,
        (None, None) => &[][..],
    };
    let removed: HashSet<&str> = changes
        .map(|c| c.removed.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let files = base
        .into_iter()
        .flat_map(|b| &b.files)
        .filter(move |f| !removed.contains(f.path.as_str()))
        .chain(changes.into_iter().flat_map(|c| &c.added));
    (partition_by, files)
}

/// The tables of `base` and of `changes`.
fn names<'a>(
    base: &'a BTreeMap<String, TableState>,
    changes: &'a BTreeMap<String, TableChanges>,
) -> std::collections::BTreeSet<&'a String> {
    base.keys().chain(changes.keys()).collect()
}

/// `base`'s tables with `changes` applied.
fn apply_changes(
    base: &BTreeMap<String, TableState>,
    changes: &BTreeMap<String, TableChanges>,
) -> BTreeMap<String, TableState> {
    names(base, changes)
        .into_iter()
        .map(|name| {
            let (partition_by, files) = table_after(base.get(name), changes.get(name));
            let state = TableState {
                partition_by: partition_by.to_vec(),
                files: files.cloned().collect(),
            };
            (name.clone(), state)
        })
        .collect()
}

/// Whether [`apply_changes`] gives `tables` back exactly (order included), without building
/// its result.
fn gives_back(
    base: &BTreeMap<String, TableState>,
    changes: &BTreeMap<String, TableChanges>,
    tables: &BTreeMap<String, TableState>,
) -> bool {
    names(base, changes).into_iter().eq(tables.keys())
        && tables.iter().all(|(name, t)| {
            let (partition_by, files) = table_after(base.get(name), changes.get(name));
            partition_by == t.partition_by.as_slice() && files.eq(t.files.iter())
        })
}

/// A job's commit log in its checkpoint location.
#[derive(Debug, Clone)]
pub struct CommitLog {
    loc: Location,
    /// The last full commit read or written through this log (shared by its clones): the
    /// base the next commit's changes are taken against.
    base: Arc<Mutex<Option<Base>>>,
}

/// A writer's hold on its lake (see [`CommitLog::writer_lock`]); released when dropped, or
/// when the process ends however it ends.
#[derive(Debug)]
pub struct WriterLock {
    file: Option<std::fs::File>,
    sole: bool,
}

impl WriterLock {
    /// Whether no other process writes through the log: its leftover temporary files are
    /// then a killed writer's and may be removed.
    pub fn is_sole(&self) -> bool {
        self.sole
    }

    /// Ends the exclusive hold of a sole writer (once it has removed the leftovers) and
    /// keeps the lock shared, so that other writers may start.
    pub fn share(&mut self) -> Result<()> {
        if let (Some(file), true) = (&self.file, self.sole) {
            let io = |e: std::io::Error| Error::Internal(format!("writers.lock: {e}"));
            file.unlock().map_err(io)?;
            file.lock_shared().map_err(io)?;
            self.sole = false;
        }
        Ok(())
    }
}

/// How long a lease counts as held after its holder last renewed it.
pub const LEASE_TTL_MS: i64 = 60_000;
/// How often a lease's holder renews it.
pub const LEASE_RENEW_MS: i64 = 10_000;

/// A command's hold on a lease (see [`CommitLog::take_lease`]), renewed in the background
/// while it lives.
#[derive(Debug)]
pub struct Lease {
    loc: Location,
    path: Path,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Gives the lease up: the command is done. (Dropped without this, its renewals stop
    /// and it lapses.)
    pub async fn release(mut self) {
        self.renewer.abort();
        // A renewal in flight ends before the file goes, so that it cannot put it back.
        let _ = (&mut self.renewer).await;
        if let Err(e) = self.loc.store.delete(&self.path).await {
            tracing::warn!(lease = %self.path, "releasing the lease: {e}");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// What a lease file holds: who holds it, and when they last renewed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    host: String,
    pid: u32,
    renewed_at_ms: i64,
}

impl LeaseBody {
    const LAPSED: LeaseBody = LeaseBody {
        host: String::new(),
        pid: 0,
        renewed_at_ms: i64::MIN / 2,
    };

    fn now() -> Self {
        Self {
            host: host_name(),
            pid: std::process::id(),
            renewed_at_ms: now_ms(),
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialises")
    }

    /// Whether its holder may still be at work: it renewed the lease within the TTL and,
    /// when it ran on this machine, it is still running.
    fn held(&self, now_ms: i64) -> bool {
        now_ms - self.renewed_at_ms < LEASE_TTL_MS
            && (self.host != host_name() || process_alive(self.pid))
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// This machine's name (empty where the system does not say).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether process `pid` of this machine is running (a zombie is not); true where the
/// system cannot tell.
fn process_alive(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        )
    })
}

fn name(batch: u64, ext: &str) -> String {
    format!("{batch:010}.{ext}")
}

/// The batch a log entry's file name (`{batch:010}.{ext}`, or `{batch:010}-{tag}.{ext}`) is
/// for.
fn batch_of_name(name: &str) -> Option<u64> {
    name.split(['.', '-']).next()?.parse().ok()
}

impl CommitLog {
    pub fn new(loc: Location) -> Self {
        Self {
            loc,
            base: Arc::default(),
        }
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    async fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        match self.loc.store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|source| Error::Store {
                path: path.to_string(),
                source,
            })?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Store {
                path: path.to_string(),
                source,
            }),
        }
    }

    async fn create(&self, path: &Path, body: Vec<u8>) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .loc
            .store
            .put_opts(path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(Error::Store {
                path: path.to_string(),
                source,
            }),
        }
    }

    async fn batches(&self, dir: &str) -> Result<Vec<u64>> {
        let mut v: Vec<u64> = self.entries(dir).await?.into_iter().map(|e| e.0).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The entries of a folder of the log, each with the batch it is for.
    async fn entries(&self, dir: &str) -> Result<Vec<(u64, Path)>> {
        let objects = crate::list_all(&self.loc, &self.loc.child(dir)).await?;
        Ok(objects
            .into_iter()
            .filter_map(|o| Some((batch_of_name(o.location.filename()?)?, o.location)))
            .collect())
    }

    fn parse<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// The latest commit, if any.
    pub async fn latest(&self) -> Result<Option<Commit>> {
        let Some(&last) = self.batches("commits").await?.last() else {
            return Ok(None);
        };
        self.commit(last).await
    }

    /// A commit by batch number, with its tables' full file lists.
    pub async fn commit(&self, batch: u64) -> Result<Option<Commit>> {
        let Some(stored) = self.stored(batch).await? else {
            return Ok(None);
        };
        let Some(base_batch) = stored.base else {
            self.set_base(batch, &stored.commit.tables);
            return Ok(Some(stored.commit.into_owned()));
        };
        let base = match self.base_tables(base_batch) {
            Some(t) => t,
            None => {
                let path = self.commit_path(base_batch);
                let full = self
                    .stored(base_batch)
                    .await?
                    .filter(|b| b.base.is_none())
                    .ok_or_else(|| Error::Corrupt {
                        path: self.commit_path(batch).to_string(),
                        reason: format!(
                            "its file lists build on {path}, which is missing or not a full commit"
                        ),
                    })?;
                self.set_base(base_batch, &full.commit.tables);
                self.base_tables(base_batch).expect("just set")
            }
        };
        let mut commit = stored.commit.into_owned();
        commit.tables = apply_changes(&base, &stored.changes);
        Ok(Some(commit))
    }

    fn commit_path(&self, batch: u64) -> Path {
        self.loc.child(&format!("commits/{}", name(batch, "json")))
    }

    /// A commit as stored (changes not applied).
    async fn stored(&self, batch: u64) -> Result<Option<Stored<'static>>> {
        self.read_versioned(&self.commit_path(batch)).await
    }

    /// A commit or intent file, refused when a newer silt wrote it in a format this one does
    /// not know.
    async fn read_versioned<T: Versioned>(&self, path: &Path) -> Result<Option<T>> {
        let Some(bytes) = self.get(path).await? else {
            return Ok(None);
        };
        let stored: T = Self::parse(path, &bytes)?;
        if stored.format() > T::KNOWN {
            return Err(Error::NewerFormat {
                what: T::WHAT,
                path: path.to_string(),
                format: stored.format(),
                known: T::KNOWN,
            });
        }
        Ok(Some(stored))
    }

    fn set_base(&self, batch: u64, tables: &BTreeMap<String, TableState>) {
        let mut b = self.base.lock().expect("not poisoned");
        if b.as_ref().is_none_or(|b| b.batch != batch) {
            *b = Some(Base {
                batch,
                tables: Arc::new(tables.clone()),
            });
        }
    }

    fn base_tables(&self, batch: u64) -> Option<Arc<BTreeMap<String, TableState>>> {
        let b = self.base.lock().expect("not poisoned");
        b.as_ref()
            .filter(|b| b.batch == batch)
            .map(|b| b.tables.clone())
    }

    /// The intent for a batch, if one was written.
    pub async fn intent(&self, batch: u64) -> Result<Option<Intent>> {
        let path = self.loc.child(&format!("intents/{}", name(batch, "json")));
        let stored: Option<StoredIntent<'static>> = self.read_versioned(&path).await?;
        Ok(stored.map(|s| s.intent.into_owned()))
    }

    /// Writes an intent unless one exists; returns the intent that stands (ours or the
    /// earlier one).
    pub async fn propose(&self, intent: Intent) -> Result<Intent> {
        let path = self
            .loc
            .child(&format!("intents/{}", name(intent.batch, "json")));
        if self
            .create(
                &path,
                serde_json::to_vec_pretty(&StoredIntent {
                    format: INTENT_FORMAT,
                    intent: Cow::Borrowed(&intent),
                })
                .expect("serialises"),
            )
            .await?
        {
            return Ok(intent);
        }
        self.intent(intent.batch)
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: path.to_string(),
                reason: "exists but cannot be read".into(),
            })
    }

    /// Writes a blob (the dedup snapshot) for a batch; returns its name. With a `tag` (see
    /// [`crate::WriterOptions::file_tag`]) the name is the batch's and the tag's, so that a
    /// stream run racing to commit the same batch never overwrites it, nor it theirs.
    pub async fn put_dedup(&self, batch: u64, tag: &str, bytes: Vec<u8>) -> Result<String> {
        let n = if tag.is_empty() {
            name(batch, "bin")
        } else {
            format!("{batch:010}-{tag}.bin")
        };
        let path = self.loc.child(&format!("dedup/{n}"));
        self.loc
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| Error::Store {
                path: path.to_string(),
                source,
            })?;
        Ok(n)
    }

    /// Reads a dedup snapshot by name.
    pub async fn get_dedup(&self, n: &str) -> Result<Bytes> {
        let path = self.loc.child(&format!("dedup/{n}"));
        self.get(&path).await?.ok_or_else(|| Error::Corrupt {
            path: path.to_string(),
            reason: "the commit names a dedup snapshot that is missing".into(),
        })
    }

    /// The commit point: creates `commits/{batch}` or fails with [`Error::Conflict`] when
    /// another run created it first.
    ///
    /// The commit is stored as the changes since the last full commit this log read or
    /// wrote, unless those pass [`FULL_AFTER_CHANGES`] files or half the live files (or
    /// there is none): then with the full lists, and it becomes the base of the next ones.
    pub async fn commit_batch(&self, commit: &Commit) -> Result<()> {
        let path = self.commit_path(commit.batch);
        let base = self.base.lock().expect("not poisoned").clone();
        let live: usize = commit.tables.values().map(|t| t.files.len()).sum();
        let changes = base
            .as_ref()
            .filter(|b| b.batch < commit.batch)
            .and_then(|b| Some((b, changes_since(&b.tables, &commit.tables)?)))
            .filter(|(b, ch)| {
                let n: usize = ch.values().map(|c| c.added.len() + c.removed.len()).sum();
                n <= FULL_AFTER_CHANGES.min(live / 2)
                    // Applying them must give the lists back exactly, order included.
                    && gives_back(&b.tables, ch, &commit.tables)
            });
        let (body, full) = match changes {
            Some((b, changes)) => {
                let stored = Stored {
                    format: COMMIT_FORMAT,
                    // Every field but the file lists, which the changes stand for.
                    commit: Cow::Owned(Commit {
                        job: commit.job.clone(),
                        batch: commit.batch,
                        committed_at_ms: commit.committed_at_ms,
                        source: commit.source.clone(),
                        dedup: commit.dedup.clone(),
                        dedup_deltas: commit.dedup_deltas.clone(),
                        tables: BTreeMap::new(),
                        stats: commit.stats.clone(),
                    }),
                    base: Some(b.batch),
                    changes,
                };
                (
                    serde_json::to_vec_pretty(&stored).expect("serialises"),
                    false,
                )
            }
            None => {
                let stored = Stored {
                    format: COMMIT_FORMAT,
                    commit: Cow::Borrowed(commit),
                    base: None,
                    changes: BTreeMap::new(),
                };
                (
                    serde_json::to_vec_pretty(&stored).expect("serialises"),
                    true,
                )
            }
        };
        if self.create(&path, body).await? {
            if full {
                self.set_base(commit.batch, &commit.tables);
            }
            Ok(())
        } else {
            Err(Error::Conflict {
                job: commit.job.clone(),
                batch: commit.batch,
            })
        }
    }

    /// Marks this process as a writer of the job's lake (a run, a backfill) for as long as the
    /// returned lock lives, and tells whether it is the only one: on local disk, where writes
    /// go through temporary `{name}#{n}` files, only a process that is sole may remove those
    /// files, as a killed writer's leftovers; another live writer's are files in flight.
    /// A log on an object store takes no lock and counts as sole: object stores have no such
    /// files, and a lake on local disk whose log is elsewhere is cleaned as before.
    ///
    /// The lock is `writers.lock` in the log's folder: every writer holds it shared; one that
    /// finds no other holder gets it exclusively first, so that no writer starts while it
    /// removes the leftovers, and shares it from [`WriterLock::share`] on.
    pub fn writer_lock(&self) -> Result<WriterLock> {
        let Some(dir) = self.loc.url.strip_prefix("file://") else {
            return Ok(WriterLock {
                file: None,
                sole: true,
            });
        };
        let path = std::path::Path::new(dir).join("writers.lock");
        let io = |e: std::io::Error| Error::Internal(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let sole = match file.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => {
                // Waits only while a starting writer removes leftovers.
                file.lock_shared().map_err(io)?;
                false
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        };
        Ok(WriterLock {
            file: Some(file),
            sole,
        })
    }

    /// Takes the lease of `tag` (`writers/{tag}.lease` in the log's folder) for a command
    /// that writes files tagged `tag` beside the job's runs (a backfill, a re-drive), and
    /// renews it every [`LEASE_RENEW_MS`] while the returned [`Lease`] lives. While it is
    /// held, no writer's clean-up takes files with that tag for a killed writer's leftovers
    /// (see [`CommitLog::held_tags`] and [`vacuum`]), and a second command of the tag does
    /// not start ([`Error::Busy`]). A lease whose holder stopped renewing it lapses after
    /// [`LEASE_TTL_MS`], and at once when the holder ran on this machine and has ended.
    ///
    /// Nothing's correctness rests on a lease: a commit lists only files that a writer
    /// knows to be there. It spares a command beside busy runs the work of building again
    /// what their clean-ups would take.
    pub async fn take_lease(&self, tag: &str) -> Result<Lease> {
        let path = self.loc.child(&format!("writers/{tag}.lease"));
        for _ in 0..2 {
            if self.create(&path, LeaseBody::now().to_vec()).await? {
                let (loc, at) = (self.loc.clone(), path.clone());
                let renewer = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(LEASE_RENEW_MS as u64))
                            .await;
                        let body = PutPayload::from(LeaseBody::now().to_vec());
                        if let Err(e) = loc.store.put(&at, body).await {
                            tracing::warn!(lease = %at, "renewing the lease: {e}");
                        }
                    }
                });
                return Ok(Lease {
                    loc: self.loc.clone(),
                    path,
                    renewer,
                });
            }
            match self.lease_at(&path).await? {
                Some(holder) if holder.held(now_ms()) => {
                    return Err(Error::Busy {
                        tag: tag.to_string(),
                        holder: format!("pid {} on {}", holder.pid, holder.host),
                        renewed_s_ago: (now_ms() - holder.renewed_at_ms).max(0) / 1000,
                    })
                }
                // Lapsed: its holder is gone.
                Some(_) => match self.loc.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(Error::Store {
                            path: path.to_string(),
                            source,
                        })
                    }
                },
                None => {}
            }
        }
        Err(Error::Busy {
            tag: tag.to_string(),
            holder: "another process, which took it as this one tried".into(),
            renewed_s_ago: 0,
        })
    }

    /// A lease file's holder (none when the file is gone, or not a lease: unreadable files
    /// count as lapsed).
    async fn lease_at(&self, path: &Path) -> Result<Option<LeaseBody>> {
        Ok(self
            .get(path)
            .await?
            .map(|b| serde_json::from_slice(&b).unwrap_or(LeaseBody::LAPSED)))
    }

    /// The tags whose leases are held now (see [`CommitLog::take_lease`]), but `own`.
    pub async fn held_tags(&self, own: &str) -> Result<Vec<String>> {
        let objects = crate::list_all(&self.loc, &self.loc.child("writers")).await?;
        let mut held = Vec::new();
        for o in objects {
            let Some(tag) = o
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".lease"))
                .filter(|t| *t != own)
            else {
                continue;
            };
            if self
                .lease_at(&o.location)
                .await?
                .is_some_and(|h| h.held(now_ms()))
            {
                held.push(tag.to_string());
            }
        }
        held.sort();
        Ok(held)
    }

    /// Removes temporary files a killed writer left in the log's folder (local disk only).
    /// Call it only while [`WriterLock::is_sole`].
    pub fn remove_staging_files(&self) -> usize {
        match self.loc.url.strip_prefix("file://") {
            Some(dir) => remove_staging_files(std::path::Path::new(dir)),
            None => 0,
        }
    }

    /// Deletes log entries older than the last `keep` commits (and the dedup snapshots and
    /// deltas none of those commits names).
    pub async fn prune(&self, keep: usize) -> Result<()> {
        let commits = self.batches("commits").await?;
        if commits.len() <= keep {
            return Ok(());
        }
        let horizon = commits[commits.len() - keep];
        // Snapshots and full commits only move forward: the oldest commit kept names the
        // oldest of each still needed.
        let Some(oldest) = self.stored(horizon).await? else {
            return Ok(());
        };
        let dedup_horizon = oldest
            .commit
            .dedup
            .as_deref()
            .and_then(batch_of_name)
            .map_or(horizon, |b| b.min(horizon));
        let base = oldest.base;
        for (dir, horizon) in [
            ("commits", horizon),
            ("intents", horizon),
            ("dedup", dedup_horizon),
        ] {
            for (b, path) in self.entries(dir).await? {
                if b < horizon && !(dir == "commits" && Some(b) == base) {
                    match self.loc.store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(source) => {
                            return Err(Error::Store {
                                path: path.to_string(),
                                source,
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Deletes files of `table` that no commit lists any more: data files of batches up to
/// `max_batch` that are not in `live` (but those tagged with one of `spare_tags`: the
/// tags of held leases, whose holders are at work on them), and, with `staging`, half-written temporary files
/// that a killed writer left (local disk writes through a temporary name). Files of later
/// batches belong to a batch in flight and are left alone. Returns how many were deleted.
pub async fn vacuum<'a>(
    table: &Location,
    live: impl IntoIterator<Item = &'a DataFile>,
    max_batch: u64,
    spare_tags: &[String],
    staging: bool,
) -> Result<usize> {
    let live: HashSet<_> = live.into_iter().map(DataFile::key).collect();
    let objects = crate::list_all(table, &table.prefix).await?;
    let doomed: Vec<String> = objects
        .iter()
        .filter_map(|o| table.relative(&o.location))
        .filter(|rel| {
            rel.ends_with(".parquet")
                && crate::write::batch_of(rel).is_some_and(|b| b <= max_batch)
                && !live.contains(rel.as_str())
                && !crate::write::tag_of(rel).is_some_and(|t| spare_tags.iter().any(|s| s == t))
        })
        .collect();
    for rel in &doomed {
        tracing::debug!(file = %rel, "vacuum");
    }
    let mut deleted = remove_keys(table, doomed.iter().map(|k| table.key(k))).await?;
    if staging {
        if let Some(dir) = table.url.strip_prefix("file://") {
            deleted += remove_staging_files(std::path::Path::new(dir));
        }
    }
    Ok(deleted)
}

/// Deletes `files` of `table`, those already gone included: the files a commit replaced,
/// once it is made. In bulk where the store can (S3's `DeleteObjects`, a thousand a
/// request). Returns how many were deleted.
pub async fn remove_files<'a>(
    table: &Location,
    files: impl IntoIterator<Item = &'a DataFile>,
) -> Result<usize> {
    remove_keys(table, files.into_iter().map(|f| f.location(table))).await
}

async fn remove_keys(table: &Location, locations: impl Iterator<Item = Path>) -> Result<usize> {
    use futures::StreamExt;
    let locations: Vec<Path> = locations.collect();
    if locations.is_empty() {
        return Ok(0);
    }
    let mut results = table
        .store
        .delete_stream(futures::stream::iter(locations.into_iter().map(Ok)).boxed());
    let mut deleted = 0;
    while let Some(r) = results.next().await {
        match r {
            Ok(_) => deleted += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(Error::Store {
                    path: table.url.clone(),
                    source,
                })
            }
        }
    }
    Ok(deleted)
}

/// Local disk writes go through `{name}#{n}` and a rename; a killed writer leaves that file,
/// which object store listings hide but a directory reader (Spark) would trip over.
pub(crate) fn remove_staging_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            n += remove_staging_files(&p);
        } else if p
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.rsplit_once('#'))
            .is_some_and(|(_, suffix)| {
                !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
            })
            && std::fs::remove_file(&p).is_ok()
        {
            n += 1;
        }
    }
    n
}
