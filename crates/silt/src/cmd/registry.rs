//! `silt registry ...`: register, check, list and show schemas.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use silt_registry::{Compatibility, Registration, SchemaRegistry};
use silt_wire::resolution::Incompatibility;
use silt_wire::{Fingerprint, Schema};

/// Where the registry lives unless `--registry` or `SILT_REGISTRY` says otherwise.
pub const DEFAULT_REGISTRY: &str = "file://registry";

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Register a schema file as the next version of its subject (its full name).
    Register {
        #[command(flatten)]
        at: RegistryArg,
        /// The schema (.avsc).
        file: PathBuf,
    },
    /// Check whether a schema file may become its subject's next version; exit 1 and list
    /// every offending field when it may not.
    Check {
        #[command(flatten)]
        at: RegistryArg,
        file: PathBuf,
    },
    /// List the subjects.
    List {
        #[command(flatten)]
        at: RegistryArg,
    },
    /// Show a subject's versions, or one schema (the latest, or by fingerprint).
    Show {
        #[command(flatten)]
        at: RegistryArg,
        subject: String,
        /// A fingerprint (hex) or `latest`; without it the versions are listed.
        fingerprint: Option<String>,
    },
    /// Serve the registry's HTTP API (SPEC 4) until Ctrl-C or SIGTERM.
    Serve {
        #[command(flatten)]
        at: RegistryArg,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
    },
    /// Show or set a subject's compatibility rule.
    Compat {
        #[command(flatten)]
        at: RegistryArg,
        subject: String,
        /// BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE.
        mode: Option<Compatibility>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RegistryArg {
    /// The registry: file://DIR, s3://BUCKET/PREFIX, memory://NAME, or http(s)://HOST:PORT (the service).
    #[arg(long, env = "SILT_REGISTRY", default_value = DEFAULT_REGISTRY)]
    pub registry: String,
}

impl RegistryArg {
    pub fn open(&self) -> anyhow::Result<std::sync::Arc<dyn SchemaRegistry>> {
        silt_registry::open_any(&self.registry, Path::new("."))
            .with_context(|| format!("cannot open registry {}", self.registry))
    }

    /// For a service at its start: warns on stderr when the registry cannot be read now (a
    /// bucket that does not exist, a service not up yet), which every request would otherwise
    /// be the first to find.
    /// Warns on stderr when the registry cannot be read now; gives its subjects when it can.
    pub async fn subjects_or_warn(&self, registry: &dyn SchemaRegistry) -> Option<Vec<String>> {
        match registry.subjects().await {
            Ok(subjects) => Some(subjects),
            Err(e) => {
                eprintln!(
                    "warning: the registry {} cannot be read now: {e}; requests that need it \
                     fail until it can",
                    self.registry
                );
                None
            }
        }
    }
}

/// Tells a producer, on stderr, of a top-level field named as a time partition (`dt`, `hr`):
/// a job partitioned by the event time (the default) refuses the subject, the field would
/// take the partition's place.
fn note_time_partition_fields(schema: &Schema) {
    for f in schema
        .fields()
        .iter()
        .filter(|f| matches!(f.name.as_str(), "dt" | "hr"))
    {
        eprintln!(
            "note: /fields/{0}: `{0}` is also the name of a time partition column of the lake; \
             a job partitioned by the event time (`partition_by = [\"dt\", \"hr\"]`, the \
             default) refuses this subject: such jobs need other partition columns",
            f.name
        );
    }
}

fn read_schema(file: &Path) -> anyhow::Result<(String, Schema)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let schema = Schema::parse(&text)
        .with_context(|| format!("{} is not a valid Avro schema", file.display()))?;
    Ok((text, schema))
}

fn subject_of(schema: &Schema, file: &Path) -> anyhow::Result<String> {
    match schema.full_name() {
        Some(n) => Ok(n.to_string()),
        None => bail!(
            "{}: the top-level type has no name, so it has no subject",
            file.display()
        ),
    }
}

fn id_text(id: Option<u32>) -> String {
    id.map_or_else(|| "-".into(), |id| id.to_string())
}

/// `SUBJECT version N fingerprint HEX id N`.
fn described(r: &silt_registry::Registered) -> String {
    format!(
        "{} version {} fingerprint {} id {}",
        r.subject,
        r.version,
        r.fingerprint,
        id_text(r.id)
    )
}

/// Lists the fields that break the rule (`PATH<tab>REASON`, one a line) and returns the error
/// the command ends with.
fn incompatible(
    out: &mut dyn Write,
    issues: &[Incompatibility],
    file: &Path,
    mode: Compatibility,
    subject: &str,
) -> anyhow::Error {
    for i in issues {
        if let Err(e) = writeln!(out, "{}\t{}", i.path, i.reason) {
            return e.into();
        }
    }
    anyhow::anyhow!(
        "{} is not {mode} compatible with {subject}: {} offending field(s)",
        file.display(),
        issues.len()
    )
}

pub async fn run(cmd: RegistryCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        RegistryCommand::Register { at, file } => {
            let (text, schema) = read_schema(&file)?;
            let subject = subject_of(&schema, &file)?;
            note_time_partition_fields(&schema);
            let registry = at.open()?;
            match registry.register(&subject, &text).await {
                Ok(Registration::Created(r)) => writeln!(out, "registered {}", described(&r))?,
                Ok(Registration::Existing(r)) => {
                    writeln!(out, "already registered: {}", described(&r))?
                }
                Err(silt_registry::Error::Incompatible { issues, mode, .. }) => {
                    return Err(incompatible(out, &issues, &file, mode, &subject));
                }
                Err(e) => return Err(e.into()),
            }
        }
        RegistryCommand::Check { at, file } => {
            let (_, schema) = read_schema(&file)?;
            let subject = subject_of(&schema, &file)?;
            note_time_partition_fields(&schema);
            let registry = at.open()?;
            let mode = registry.compatibility(&subject).await?;
            if let Some((path, reason)) = schema.refused_at_registration() {
                anyhow::bail!("{} cannot be registered: {path}: {reason}", file.display());
            }
            let issues = registry.check(&subject, &schema).await?;
            if issues.is_empty() {
                writeln!(
                    out,
                    "compatible: {} may become the next version of {subject} ({mode})",
                    file.display()
                )?;
            } else if let Some(same) = registry
                .versions(&subject)
                .await?
                .into_iter()
                .find(|r| r.fingerprint == schema.fingerprint())
            {
                // Not the rule's refusal: the schema differs from a version of its fingerprint.
                for i in &issues {
                    writeln!(out, "{}\t{}", i.path, i.reason)?;
                }
                anyhow::bail!(
                    "{} cannot be registered: version {} of {subject} has its fingerprint and differs from it in {} place(s) the fingerprint does not see",
                    file.display(),
                    same.version,
                    issues.len()
                );
            } else {
                return Err(incompatible(out, &issues, &file, mode, &subject));
            }
        }
        RegistryCommand::List { at } => {
            for s in at.open()?.subjects().await? {
                writeln!(out, "{s}")?;
            }
        }
        RegistryCommand::Show {
            at,
            subject,
            fingerprint,
        } => {
            let registry = at.open()?;
            match fingerprint.as_deref() {
                None => {
                    let mode = registry.compatibility(&subject).await?;
                    writeln!(out, "{subject} ({mode})")?;
                    for v in registry.versions(&subject).await? {
                        writeln!(
                            out,
                            "  version {}\t{}\tid {}",
                            v.version,
                            v.fingerprint,
                            id_text(v.id)
                        )?;
                    }
                }
                Some("latest") => {
                    writeln!(out, "{}", pretty(registry.latest(&subject).await?.json()))?
                }
                Some(fp) => {
                    let fp: Fingerprint = fp.parse()?;
                    writeln!(
                        out,
                        "{}",
                        pretty(registry.schema(&subject, &fp).await?.json())
                    )?
                }
            }
        }
        RegistryCommand::Serve { at, listen } => {
            if at.registry.starts_with("http") {
                bail!("serve a registry stored in a folder or bucket, not another service");
            }
            let registry = at.open()?;
            at.subjects_or_warn(registry.as_ref()).await;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            writeln!(
                out,
                "silt registry serving {} on http://{} (OpenAPI at /openapi.json)",
                at.registry,
                listener.local_addr()?
            )?;
            out.flush()?;
            let stop = shutdown.clone();
            let mut signals = super::StopSignals::new()?;
            let server = silt_service::registry::serve(listener, registry, shutdown);
            tokio::pin!(server);
            loop {
                tokio::select! {
                    r = &mut server => { r?; break; }
                    _ = signals.recv(), if !stop.is_cancelled() => stop.cancel(),
                }
            }
        }
        RegistryCommand::Compat { at, subject, mode } => {
            let registry = at.open()?;
            if let Some(mode) = mode {
                registry.set_compatibility(&subject, mode).await?;
            }
            writeln!(out, "{}", registry.compatibility(&subject).await?)?;
        }
    }
    Ok(())
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}
