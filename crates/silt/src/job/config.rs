//! Job files (SPEC 7): TOML, unknown keys refused with the key named, relative paths
//! resolved against the job file's folder. Every default lives in one `Default` impl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// A job file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// The job's name: names its checkpoint and shows in summaries.
    pub name: String,
    pub source: SourceConfig,
    pub schema: SchemaConfig,
    #[serde(default)]
    pub dedup: DedupConfig,
    pub lake: LakeConfig,
    /// Zero or more SQL transforms, each into its own table.
    #[serde(default, rename = "transform")]
    pub transforms: Vec<TransformConfig>,
    /// Small reference tables the transforms may join with.
    #[serde(default, rename = "reference")]
    pub references: Vec<ReferenceConfig>,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Micro-batch limits.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Settings for `s3://` locations (lake, registry, checkpoints) that override the AWS
    /// environment for this job.
    #[serde(default)]
    pub storage: StorageConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// S3 endpoint URL (a stand-in, MinIO, a VPC endpoint).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Credentials; default from the AWS environment and config (prefer those).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `file` or `kinesis`.
    #[serde(rename = "type")]
    pub kind: String,
    /// file: the stream's folder.
    pub path: Option<String>,
    /// kinesis: the stream's name.
    pub stream: Option<String>,
    /// Without a checkpoint: `earliest`, `latest`, or an RFC 3339 time (arrival time).
    #[serde(default = "default_start")]
    pub start: String,
    /// `envelope` (default), `single-object` or `confluent`.
    #[serde(default = "default_framing")]
    pub framing: String,
    /// kinesis: endpoint URL (a stand-in, or a VPC endpoint); default `SILT_KINESIS_ENDPOINT`,
    /// else the AWS environment.
    pub endpoint: Option<String>,
    /// kinesis: region; default from the environment.
    pub region: Option<String>,
}

fn default_start() -> String {
    "earliest".into()
}

fn default_framing() -> String {
    "envelope".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    /// `file://`, `s3://`, `memory://` (or a bare folder).
    pub registry: String,
    /// The reader schema's subject: its latest version shapes the raw table.
    pub subject: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// How far back in event time a repeat is recognised (`15m`, `1h`...).
    pub window: String,
    /// What to do with events older than the window (a repeat cannot be ruled out): `drop`
    /// (into the rejected table, code `late`) or `keep` (into the raw table). Either way they
    /// are counted and reported.
    pub late: String,
    /// How far after its arrival an event's time may be (`5m`): a record from further ahead
    /// (a producer's clock is wrong) is rejected as `future_event_time`, so that it cannot
    /// move the watermark ahead of every other producer's events.
    pub max_future: String,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            window: "15m".into(),
            late: "drop".into(),
            max_future: "5m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// The lake's root; each table is a folder under it.
    pub location: String,
    /// The raw table (decoded, deduplicated events).
    pub table: String,
    /// Hive partition columns: `dt` and `hr` are the event time's UTC date and hour unless
    /// the events have such columns; other names are event columns.
    #[serde(default = "default_partition_by")]
    pub partition_by: Vec<String>,
    /// The rejected-records table (default `{table}_rejected`).
    pub rejected_table: Option<String>,
    /// Parquet compression: `zstd`, `zstd(N)`, `snappy`, `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Target size of a Parquet file, e.g. `128MB`.
    #[serde(default = "default_file_size")]
    pub target_file_size: String,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// A closed hour partition (the dedup watermark is a window past its end) holding at least
    /// this many files has its small ones (under half the target file size) merged by the
    /// next micro-batches, a group of at most the target size at a time; 0 never compacts.
    #[serde(default = "default_compact_min_files")]
    pub compact_min_files: usize,
}

fn default_partition_by() -> Vec<String> {
    vec!["dt".into(), "hr".into()]
}
fn default_compression() -> String {
    "zstd(1)".into()
}
fn default_file_size() -> String {
    "128MB".into()
}
fn default_compact_min_files() -> usize {
    10
}
fn default_row_group_rows() -> usize {
    1 << 20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// The output table's name.
    pub name: String,
    /// The SQL file.
    pub sql: String,
    /// `rows` (default) or `partitions`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// The table name SQL uses.
    pub name: String,
    /// A CSV file with a header, or a Parquet file.
    pub path: String,
}

fn default_mode() -> String {
    "rows".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Default: `{lake}/_silt/checkpoints/{name}`.
    pub location: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most records in one micro-batch.
    pub max_records: usize,
    /// Most bytes read in one micro-batch, e.g. `256MB`.
    pub max_bytes: String,
    /// With `--follow`: how long to wait when caught up before reading again.
    pub interval: String,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 1_000_000,
            max_bytes: "256MB".into(),
            interval: "5s".into(),
        }
    }
}

/// Parses `512KB`, `128MB`, `1GB` or a plain number of bytes.
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1usize << 30)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("KB") {
        (n, 1 << 10)
    } else if let Some(n) = t.strip_suffix('B') {
        (n, 1)
    } else {
        (t.as_str(), 1)
    };
    let n: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("`{s}` is not a size (e.g. 128MB)"))?;
    Ok((n * mult as f64) as usize)
}

/// Parses `15m`, `1h`, `30s`, `500ms`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(s.trim())
        .with_context(|| format!("`{s}` is not a duration (e.g. 15m, 1h, 30s)"))
}

impl LakeConfig {
    /// The rejected-records table: `rejected_table`, or `{table}_rejected`.
    pub fn rejected_table(&self) -> String {
        self.rejected_table
            .clone()
            .unwrap_or_else(|| format!("{}_rejected", self.table))
    }
}

impl JobFile {
    /// Reads and checks a job file.
    pub fn load(path: &Path) -> anyhow::Result<(Self, PathBuf)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        let job: JobFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("job file {}: {}", path.display(), e.to_string().trim())
        })?;
        job.validate()
            .with_context(|| format!("job file {}", path.display()))?;
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .canonicalize()
            .with_context(|| format!("cannot resolve the folder of {}", path.display()))?;
        Ok((job, dir))
    }

    fn validate(&self) -> anyhow::Result<()> {
        match self.source.kind.as_str() {
            "file" if self.source.path.is_none() => bail!("[source] type = \"file\" needs `path`"),
            "kinesis" if self.source.stream.is_none() => {
                bail!("[source] type = \"kinesis\" needs `stream`")
            }
            "file" | "kinesis" => {}
            other => bail!("[source] type = \"{other}\" is not one of \"file\", \"kinesis\""),
        }
        if !matches!(self.dedup.late.as_str(), "drop" | "keep") {
            bail!(
                "[dedup] late = \"{}\" is not one of \"drop\", \"keep\"",
                self.dedup.late
            );
        }
        let window = parse_duration(&self.dedup.window).context("[dedup] window")?;
        if window < Duration::from_secs(1) {
            // "0s" read as "no dedup" would make every event older than the newest already
            // read `late`, and rejected.
            bail!(
                "[dedup] window: `{}` is shorter than a second, the dedup index's step: every \
                 event older than the newest one read would be late (rejected); give the time a \
                 producer's retries can take, e.g. 15m",
                self.dedup.window
            );
        }
        parse_duration(&self.dedup.max_future).context("[dedup] max_future")?;
        parse_duration(&self.batch.interval).context("[batch] interval")?;
        parse_size(&self.batch.max_bytes).context("[batch] max_bytes")?;
        parse_size(&self.lake.target_file_size).context("[lake] target_file_size")?;
        self.lake
            .compression
            .parse::<silt_lake_writer::Codec>()
            .map_err(|e| anyhow::anyhow!("[lake] compression: {e}"))?;
        for t in &self.transforms {
            if !matches!(t.mode.as_str(), "rows" | "partitions") {
                bail!(
                    "[[transform]] {}: mode = \"{}\" is not one of \"rows\", \"partitions\"",
                    t.name,
                    t.mode
                );
            }
        }
        folder_name("name", &self.name)?;
        let rejected = match &self.lake.rejected_table {
            Some(_) => "[lake] rejected_table",
            None => "the rejected table ([lake] rejected_table)",
        };
        let rejected = (self.lake.rejected_table(), rejected.to_string());
        let tables: Vec<(String, String)> = [
            (self.lake.table.clone(), "[lake] table".to_string()),
            rejected,
        ]
        .into_iter()
        .chain(
            self.transforms
                .iter()
                .map(|t| (t.name.clone(), format!("[[transform]] {}", t.name))),
        )
        .collect();
        for (i, r) in self.references.iter().enumerate() {
            if r.name == "events" {
                bail!(
                    "[[reference]] events: `events` is the name the transforms' SQL reads the \
                     raw rows by; give the reference another name"
                );
            }
            if self.references[..i].iter().any(|o| o.name == r.name) {
                bail!("[[reference]] {}: two references have this name", r.name);
            }
        }
        for (i, (name, key)) in tables.iter().enumerate() {
            folder_name(key, name)?;
            if name == "_silt" {
                bail!("{key} = \"_silt\": the lake's folder `_silt` is silt's own (commit logs, catalog)");
            }
            if let Some((_, first)) = tables[..i].iter().find(|(n, _)| n == name) {
                bail!(
                    "{key}: `{name}` is also {first}'s name: each table of a job has a name of \
                     its own (one folder in the lake)"
                );
            }
        }
        Ok(())
    }
}

/// Refuses a name that cannot be one folder of the lake: a table's (`TABLE/`), or a job's
/// (its commit log, `_silt/checkpoints/NAME/`). DuckDB takes every folder on a file's path
/// that holds `=` for a Hive partition.
fn folder_name(key: &str, name: &str) -> anyhow::Result<()> {
    let why = if name.trim().is_empty() {
        "a name is needed"
    } else if name.contains(['/', '\\']) || name == "." || name == ".." {
        "a name is one folder: no `/` or `\\`, not `.` or `..`"
    } else if name.contains('=') {
        "a name may not hold `=` (readers of the lake take such a folder for a partition)"
    } else if name.chars().any(char::is_control) {
        "a name may not hold control characters"
    } else {
        return Ok(());
    };
    bail!("{key} = {name:?}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "clickstream"
[source]
type = "file"
path = "../streams/clicks"
[schema]
registry = "file://../registry"
subject = "a.B"
[lake]
location = "file://../lake"
table = "clickstream"
"#;

    /// A window under a second (`"0s"`, meant as "no dedup") would make every event older
    /// than the newest one read late, and rejected: refused, saying so.
    #[test]
    fn a_dedup_window_under_a_second_is_refused() {
        for (window, ok) in [("0s", false), ("500ms", false), ("1s", true), ("15m", true)] {
            let text = format!("{GOOD}[dedup]\nwindow = {window:?}\n");
            let result = toml::from_str::<JobFile>(&text).unwrap().validate();
            match ok {
                true => result.unwrap(),
                false => {
                    let e = result.unwrap_err().to_string();
                    assert!(
                        e.contains(&format!(
                            "[dedup] window: `{window}` is shorter than a second"
                        )),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn defaults_fill_the_rest() {
        let j: JobFile = toml::from_str(GOOD).unwrap();
        j.validate().unwrap();
        assert_eq!(j.lake.partition_by, vec!["dt", "hr"]);
        assert_eq!(j.dedup.window, "15m");
        assert_eq!(j.source.start, "earliest");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = GOOD.replace(
            "table = \"clickstream\"",
            "table = \"clickstream\"\ntabel = 1",
        );
        let err = toml::from_str::<JobFile>(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `tabel`"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = GOOD.replace("type = \"file\"", "type = \"kafka\"");
        let err = toml::from_str::<JobFile>(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka"), "{err}");
        assert_eq!(parse_size("128MB").unwrap(), 128 << 20);
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
    }

    /// Two tables of one job under one name (a transform named as the rejected table, two
    /// transforms of one name) shared one folder and one entry in the commits, each
    /// micro-batch replacing the other's files; an empty name put a table's files (and its
    /// clean-up) at the lake's root, and `..` a job's commit log outside its folder. A
    /// reference named `events`, or as another, failed as "The table events already exists",
    /// said of the subject's schema.
    #[test]
    fn each_table_has_a_folder_of_its_own() {
        let transform = |name: &str| format!("[[transform]]\nname = {name:?}\nsql = \"x.sql\"\n");
        let refused = |text: &str, what: &[&str]| {
            let err = toml::from_str::<JobFile>(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            for w in what {
                assert!(err.contains(w), "{w}: {err}");
            }
        };
        refused(
            &format!("{GOOD}{}", transform("clickstream_rejected")),
            &["[[transform]] clickstream_rejected", "the rejected table"],
        );
        refused(
            &format!("{GOOD}{}{}", transform("hourly"), transform("hourly")),
            &["`hourly` is also [[transform]] hourly's name"],
        );
        refused(
            &format!("{GOOD}{}", transform("clickstream")),
            &["`clickstream` is also [lake] table's name"],
        );
        refused(
            &GOOD.replace(
                "table = \"clickstream\"",
                "table = \"c\"\nrejected_table = \"c\"",
            ),
            &["[lake] rejected_table: `c` is also [lake] table's name"],
        );
        for (name, why) in [
            ("", "a name is needed"),
            ("a/b", "one folder"),
            ("..", "one folder"),
            ("_silt", "silt's own"),
            ("k=v", "for a partition"),
        ] {
            refused(
                &format!("{GOOD}{}", transform(name)),
                &[&format!("[[transform]] {name} = {name:?}"), why],
            );
        }
        refused(
            &GOOD.replace("name = \"clickstream\"", "name = \"../..\""),
            &["name = \"../..\"", "one folder"],
        );
        let reference = |name: &str| format!("[[reference]]\nname = {name:?}\npath = \"r.csv\"\n");
        refused(
            &format!("{GOOD}{}", reference("events")),
            &["[[reference]] events: `events` is the name the transforms' SQL reads"],
        );
        refused(
            &format!("{GOOD}{}{}", reference("sales"), reference("sales")),
            &["[[reference]] sales: two references have this name"],
        );
        let fine = format!("{GOOD}{}{}", transform("page views"), transform("_staging"));
        toml::from_str::<JobFile>(&fine)
            .unwrap()
            .validate()
            .unwrap();
    }
}
