//! # silt-registry: the schema registry (the "Keymaster")
//!
//! Schemas are stored immutably in an object store (a local folder by default, an S3 bucket
//! in production, memory in tests) and looked up by subject, by SHA-256 fingerprint, or by
//! fingerprint alone for streams that carry many types (SPEC 4). A new version must pass the
//! subject's [`Compatibility`] rule; a refusal lists every offending field with its path and
//! a reason in plain words.
//!
//! Implementations of the [`SchemaRegistry`] seam:
//! * [`StoreRegistry`]: over any `object_store` location (`memory://`, `file://`, `s3://`),
//!   one code path; registrations race safely through conditional puts;
//! * [`CachedRegistry`]: a wrapper for consumers, caching hits for ever (schemas are immutable)
//!   and misses for a short time.
//!
//! ```
//! # tokio_test_block_on(async {
//! use silt_registry::{SchemaRegistry, StoreRegistry};
//!
//! let registry = StoreRegistry::in_memory();
//! let v1 = r#"{"type":"record","name":"Viewed","namespace":"shop.v1",
//!     "fields":[{"name":"uuid","type":"gfc.avro.UUID"},{"name":"productId","type":"long"}]}"#;
//! let reg = registry.register("shop.v1.Viewed", v1).await?;
//! assert_eq!(reg.version, 1);
//! let latest = registry.latest("shop.v1.Viewed").await?;
//! assert_eq!(latest.fingerprint(), reg.fingerprint);
//! # Ok::<(), silt_registry::Error>(()) });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) }
//! ```

mod cached;
mod compat;
pub mod conformance;
mod http;
mod store;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use silt_wire::resolution::Incompatibility;
use silt_wire::{Fingerprint, Schema};

pub use cached::CachedRegistry;
pub use compat::Compatibility;
pub use http::HttpRegistry;
pub use store::StoreRegistry;

/// Errors of the registry. Callers branch on [`Error::NotFound`] and [`Error::Incompatible`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such subject, version or fingerprint.
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The schema breaks the subject's compatibility rule; `issues` names every field.
    #[error("schema is not {mode} compatible with subject `{subject}`: {}", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Incompatible {
        subject: String,
        mode: Compatibility,
        issues: Vec<Incompatibility>,
    },
    /// The schema has the fingerprint of a registered version of the subject (one Parsing
    /// Canonical Form) but differs from it where that form does not look: a logical type or a
    /// default. A stream record names its writer schema by fingerprint alone, so the two
    /// cannot both be registered, and answering "already registered" would drop the change.
    #[error("the schema has the fingerprint {fingerprint} of version {version} of `{subject}` (the same Parsing Canonical Form) but differs from it where the fingerprint does not look, so records could not tell the two apart: {}; register the change under a new field name (or a new subject)", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    FingerprintTaken {
        subject: String,
        version: u32,
        fingerprint: Fingerprint,
        issues: Vec<Incompatibility>,
    },
    /// The text is not a valid Avro schema.
    #[error(transparent)]
    InvalidSchema(#[from] silt_wire::Error),
    /// The schema's full name is not the subject it is registered under.
    #[error("the schema's full name `{name}` is not the subject `{subject}`")]
    SubjectMismatch { subject: String, name: String },
    /// Stored data that silt did not write, or wrote with another version.
    #[error("corrupt registry object {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// The storage below failed.
    #[error("registry storage: {}", silt_storage::describe(source))]
    Storage {
        #[from]
        source: object_store::Error,
    },
    /// The location could not be opened.
    #[error(transparent)]
    Location(#[from] silt_storage::Error),
}

impl Error {
    /// The offending fields of a refused registration ([`Error::Incompatible`],
    /// [`Error::FingerprintTaken`]); empty for any other error.
    pub fn issues(&self) -> &[Incompatibility] {
        match self {
            Error::Incompatible { issues, .. } | Error::FingerprintTaken { issues, .. } => issues,
            _ => &[],
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One registered version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub subject: String,
    /// Lower-case hex SHA-256 of the canonical form.
    #[serde(with = "fingerprint_hex")]
    pub fingerprint: Fingerprint,
    /// 1 for the first version of a subject, then 2, 3...
    pub version: u32,
    /// The schema's registry-wide id, for producers that frame records the Confluent way
    /// (`00` + 4-byte big-endian id): see [`SchemaRegistry::by_id`]. Absent only in version
    /// objects stored before ids existed; registering such a schema again gives it one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

mod fingerprint_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    use silt_wire::Fingerprint;

    pub fn serialize<S: Serializer>(fp: &Fingerprint, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fp.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fingerprint, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A new version was made.
    Created(Registered),
    /// The same schema was registered already; nothing changed.
    Existing(Registered),
}

impl std::ops::Deref for Registration {
    type Target = Registered;
    fn deref(&self) -> &Registered {
        match self {
            Registration::Created(r) | Registration::Existing(r) => r,
        }
    }
}

/// A schema registry.
///
/// # Contract
/// * Schemas are immutable: once a fingerprint is known, [`schema`](Self::schema) and
///   [`by_fingerprint`](Self::by_fingerprint) answer the same for ever, so callers may cache
///   hits without limit. There is no delete.
/// * A subject's versions are numbered 1, 2, 3... in registration order, without gaps; two
///   registrations racing on one subject never get the same number (the loser re-checks
///   compatibility against the winner and takes the next number).
/// * [`register`](Self::register) is idempotent: a schema with a fingerprint the subject
///   already has returns that version with [`Registration::Existing`].
/// * Every registered schema has a registry-wide id in `1..2^31` ([`Registered::id`]), the
///   same for ever; ids of different schemas differ.
/// * "Not found" is [`Error::NotFound`], never an empty answer; storage failures are
///   [`Error::Storage`] after the store's own retries.
#[async_trait]
pub trait SchemaRegistry: Send + Sync + Debug {
    /// Registers a schema (JSON text) under a subject, checking the subject's rule.
    async fn register(&self, subject: &str, text: &str) -> Result<Registration>;

    /// Every reason the schema may not become the subject's next version (empty: it may).
    async fn check(&self, subject: &str, schema: &Schema) -> Result<Vec<Incompatibility>>;

    /// All subjects, sorted.
    async fn subjects(&self) -> Result<Vec<String>>;

    /// A subject's versions, oldest first (NotFound for an unknown subject).
    async fn versions(&self, subject: &str) -> Result<Vec<Registered>>;

    /// A schema of a subject by fingerprint.
    async fn schema(&self, subject: &str, fingerprint: &Fingerprint) -> Result<Arc<Schema>>;

    /// A schema and its subject by fingerprint alone.
    async fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<(String, Arc<Schema>)>;

    /// A schema by its CRC-64-AVRO fingerprint (for single-object framing).
    async fn by_rabin(&self, fingerprint: u64) -> Result<(String, Arc<Schema>)>;

    /// A schema by its registry-wide id (for the Confluent framing), as
    /// [`register`](Self::register) answered it in [`Registered::id`].
    async fn by_id(&self, id: u32) -> Result<(String, Arc<Schema>)>;

    /// The latest version of a subject.
    async fn latest(&self, subject: &str) -> Result<Arc<Schema>>;

    /// The subject's compatibility rule (the default when none was set).
    async fn compatibility(&self, subject: &str) -> Result<Compatibility>;

    /// Sets the subject's compatibility rule.
    async fn set_compatibility(&self, subject: &str, mode: Compatibility) -> Result<()>;
}

#[async_trait]
impl<T: SchemaRegistry + ?Sized> SchemaRegistry for Arc<T> {
    async fn register(&self, subject: &str, text: &str) -> Result<Registration> {
        (**self).register(subject, text).await
    }
    async fn check(&self, subject: &str, schema: &Schema) -> Result<Vec<Incompatibility>> {
        (**self).check(subject, schema).await
    }
    async fn subjects(&self) -> Result<Vec<String>> {
        (**self).subjects().await
    }
    async fn versions(&self, subject: &str) -> Result<Vec<Registered>> {
        (**self).versions(subject).await
    }
    async fn schema(&self, subject: &str, fingerprint: &Fingerprint) -> Result<Arc<Schema>> {
        (**self).schema(subject, fingerprint).await
    }
    async fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<(String, Arc<Schema>)> {
        (**self).by_fingerprint(fingerprint).await
    }
    async fn by_rabin(&self, fingerprint: u64) -> Result<(String, Arc<Schema>)> {
        (**self).by_rabin(fingerprint).await
    }
    async fn by_id(&self, id: u32) -> Result<(String, Arc<Schema>)> {
        (**self).by_id(id).await
    }
    async fn latest(&self, subject: &str) -> Result<Arc<Schema>> {
        (**self).latest(subject).await
    }
    async fn compatibility(&self, subject: &str) -> Result<Compatibility> {
        (**self).compatibility(subject).await
    }
    async fn set_compatibility(&self, subject: &str, mode: Compatibility) -> Result<()> {
        (**self).set_compatibility(subject, mode).await
    }
}

/// Parses a schema to be registered under `subject`: valid Avro whose full name is the subject.
pub(crate) fn parse_for_subject(subject: &str, text: &str) -> Result<Schema> {
    let schema = Schema::parse(text)?;
    if schema.full_name() != Some(subject) {
        return Err(Error::SubjectMismatch {
            subject: subject.to_string(),
            name: schema
                .full_name()
                .unwrap_or("(an unnamed type)")
                .to_string(),
        });
    }
    // What no job could store (a tree, a metadata column's name, no event id), or no
    // outside reader read.
    if let Some((path, reason)) = schema.refused_at_registration() {
        return Err(Error::InvalidSchema(silt_wire::Error::InvalidSchema {
            path,
            reason,
        }));
    }
    Ok(schema)
}

/// Opens a registry location (`file://`, `s3://`, `memory://`, or a bare folder) as a
/// [`StoreRegistry`].
pub fn open(url: &str, base: &std::path::Path) -> Result<StoreRegistry> {
    Ok(StoreRegistry::new(silt_storage::open(url, base)?))
}

/// Opens any registry URL: the HTTP service for `http(s)://`, the object store otherwise.
pub fn open_any(url: &str, base: &std::path::Path) -> Result<Arc<dyn SchemaRegistry>> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(Arc::new(HttpRegistry::new(url)))
    } else {
        Ok(Arc::new(open(url, base)?))
    }
}
