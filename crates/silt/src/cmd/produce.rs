//! `silt produce`: put synthetic events, or the records of a file stream, on a Kinesis stream
//! (for demos and load tests). PutRecords in batches within the 500-record / 5 MB limits,
//! the partition key the event's uuid, only failed records retried.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use silt_ingest::{FileStream, ReadLimit, Source, StartAt};
use silt_registry::SchemaRegistry;
use silt_wire::{BodyCheck, Framing, WriterRef};

use crate::gen::{self, GenOptions};

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub kinesis: crate::cmd::kinesis::KinesisArgs,
    /// Put the records of this file stream folder (all shards, in order).
    #[arg(long, conflicts_with = "events")]
    pub from_file_stream: Option<PathBuf>,
    /// Generate this many synthetic clickstream events (with repeats and bad records).
    #[arg(long)]
    pub events: Option<usize>,
    /// Create the stream with this many shards if it does not exist.
    #[arg(long)]
    pub create_shards: Option<i32>,
    /// The registry, to find each record's uuid for its partition key (default: the folder
    /// `./registry`; records it cannot read get a key derived from their bytes).
    #[arg(long, env = "SILT_REGISTRY", default_value = crate::cmd::registry::DEFAULT_REGISTRY)]
    pub registry: String,
}

pub async fn run(args: ProduceArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = args.kinesis.client().await;
    if let Some(n) = args.create_shards {
        silt_kinesis::ensure_stream(&client, &args.kinesis.stream, n).await?;
    }
    let tmp;
    let dir: &Path = match (&args.from_file_stream, args.events) {
        (Some(d), _) => d,
        (None, Some(n)) => {
            tmp = std::env::temp_dir().join(format!("silt-produce-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            let fs = FileStream::create(&tmp, 2)?;
            gen::generate(
                &fs,
                &GenOptions {
                    events: n,
                    ..Default::default()
                },
            )?;
            &tmp
        }
        (None, None) => bail!("say what to put: --from-file-stream DIR or --events N"),
    };
    let registry: Arc<dyn SchemaRegistry> = Arc::new(silt_registry::CachedRegistry::new(
        silt_registry::open_any(&args.registry, Path::new("."))?,
    ));
    let mut checks: std::collections::HashMap<WriterRef, Option<BodyCheck>> = Default::default();
    let stream = FileStream::open(dir)?;
    let sink = silt_kinesis::KinesisSink::new(client, &args.kinesis.stream);
    let (mut records, mut calls, mut retries) = (0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    for shard in stream.shards().await? {
        let mut at = StartAt::Earliest;
        loop {
            let chunk = stream.read(&shard.id, &at, ReadLimit::default()).await?;
            let mut keyed: Vec<(String, &[u8])> = Vec::with_capacity(chunk.records.len());
            for i in 0..chunk.records.len() {
                let payload = chunk.payload(i);
                let mut key = None;
                if let Ok(f) = Framing::Envelope.split(payload) {
                    if let std::collections::hash_map::Entry::Vacant(slot) = checks.entry(f.writer)
                    {
                        let check = match f.writer {
                            WriterRef::Sha256(fp) => registry
                                .by_fingerprint(&fp)
                                .await
                                .ok()
                                .map(|(_, s)| BodyCheck::new(&s)),
                            _ => None,
                        };
                        slot.insert(check);
                    }
                    if let Some(Some(check)) = checks.get(&f.writer) {
                        key = check
                            .check(f.body)
                            .ok()
                            .and_then(|c| c.uuid)
                            .map(|u| silt_wire::timeuuid::to_string(&u));
                    }
                }
                let key = key.unwrap_or_else(|| {
                    format!("raw-{:016x}", silt_wire::rabin_fingerprint(payload))
                });
                keyed.push((key, payload));
            }
            let refs: Vec<(&str, &[u8])> = keyed.iter().map(|(k, p)| (k.as_str(), *p)).collect();
            let stats = sink.put_keyed(&refs).await?;
            records += stats.records;
            calls += stats.calls;
            retries += stats.retries;
            if let Some(n) = chunk.next.clone() {
                at = n;
            }
            if chunk.caught_up {
                break;
            }
        }
    }
    writeln!(
        out,
        "put {records} records on {} in {calls} PutRecords calls ({retries} retries) in {:.2}s",
        args.kinesis.stream,
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
