//! The registry over an object store.
//!
//! Layout below the registry's location (every object written once, never changed, except the
//! per-subject rule):
//!
//! ```text
//! schemas/{fingerprint}.json                       {"subject": ..., "schema": <JSON text>}
//! rabin/{crc64 hex}.json                            {"fingerprint": ...}
//! subjects/{subject}/versions/{version:010}.json  {"subject", "fingerprint", "version"}
//! subjects/{subject}/config.json                    {"compatibility": "BACKWARD"}
//! ```
//!
//! A version object is created with a conditional put (`If-None-Match: *` on S3, a no-clobber
//! link on local disk), so of two registrations racing for one version number exactly one
//! wins; the loser lists again, re-checks compatibility against the winner, and takes the next
//! number. (The version object's name holds only the number: with the fingerprint in the name
//! too, two different schemas would never collide, and both would become the same version.)

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use silt_storage::Location;
use silt_wire::resolution::Incompatibility;
use silt_wire::{Fingerprint, Schema};

use crate::{Compatibility, Error, Registered, Registration, Result, SchemaRegistry};

/// A [`SchemaRegistry`] stored in an object store location. See the module docs for the
/// layout and the race protocol.
#[derive(Debug, Clone)]
pub struct StoreRegistry {
    location: Location,
}

#[derive(Serialize, Deserialize)]
struct SchemaObject {
    subject: String,
    schema: String,
}

#[derive(Serialize, Deserialize)]
struct RabinObject {
    fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct ConfigObject {
    compatibility: Compatibility,
}

/// How often a registration retries after losing a race for a version number.
const MAX_RACES: usize = 64;

impl StoreRegistry {
    pub fn new(location: Location) -> Self {
        Self { location }
    }

    /// A registry in a fresh in-memory store (tests and examples).
    pub fn in_memory() -> Self {
        Self::new(Location {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: Path::default(),
            url: "memory://".into(),
        })
    }

    /// Where the registry lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn store(&self) -> &dyn ObjectStore {
        self.location.store.as_ref()
    }

    fn schema_path(&self, fp: &Fingerprint) -> Path {
        self.location.child(&format!("schemas/{fp}.json"))
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
        what: impl FnOnce() -> String,
    ) -> Result<T> {
        let bytes = match self.store().get(path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound { what: what() })
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Writes an immutable object; an existing one (same content by construction) is fine.
    async fn put_once(&self, path: &Path, body: Vec<u8>) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store()
            .put_opts(path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn load(&self, fp: &Fingerprint) -> Result<(String, Arc<Schema>)> {
        let path = self.schema_path(fp);
        let obj: SchemaObject = self
            .get_json(&path, || format!("schema with fingerprint {fp}"))
            .await?;
        let schema = Schema::parse(&obj.schema).map_err(|e| Error::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        if schema.fingerprint() != *fp {
            return Err(Error::Corrupt {
                path: path.to_string(),
                reason: format!("holds a schema with fingerprint {}", schema.fingerprint()),
            });
        }
        Ok((obj.subject, Arc::new(schema)))
    }

    async fn versions_or_empty(&self, subject: &str) -> Result<Vec<Registered>> {
        let prefix = self.location.child(&format!("subjects/{subject}/versions"));
        let objects: Vec<_> = self.store().list(Some(&prefix)).try_collect().await?;
        let reads = objects.iter().map(|o| {
            let path = o.location.clone();
            async move {
                let r: Registered = self.get_json(&path, || path.to_string()).await?;
                Ok::<_, Error>(r)
            }
        });
        let mut out = futures::future::try_join_all(reads).await?;
        out.sort_by_key(|r| r.version);
        Ok(out)
    }
}

#[async_trait]
impl SchemaRegistry for StoreRegistry {
    async fn register(&self, subject: &str, text: &str) -> Result<Registration> {
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
        let fp = schema.fingerprint();
        for _ in 0..MAX_RACES {
            let versions = self.versions_or_empty(subject).await?;
            if let Some(existing) = versions.iter().find(|r| r.fingerprint == fp) {
                return Ok(Registration::Existing(existing.clone()));
            }
            let issues = self.check(subject, &schema).await?;
            if !issues.is_empty() {
                return Err(Error::Incompatible {
                    subject: subject.to_string(),
                    mode: self.compatibility(subject).await?,
                    issues,
                });
            }
            let body = serde_json::to_vec(&SchemaObject {
                subject: subject.to_string(),
                schema: schema.json().to_string(),
            })
            .expect("serialises");
            self.put_once(&self.schema_path(&fp), body).await?;
            let rabin = serde_json::to_vec(&RabinObject {
                fingerprint: fp.to_hex(),
            })
            .expect("serialises");
            self.put_once(
                &self
                    .location
                    .child(&format!("rabin/{:016x}.json", schema.rabin_fingerprint())),
                rabin,
            )
            .await?;
            let next = versions.last().map_or(1, |r| r.version + 1);
            let registered = Registered {
                subject: subject.to_string(),
                fingerprint: fp,
                version: next,
            };
            let path = self
                .location
                .child(&format!("subjects/{subject}/versions/{next:010}.json"));
            if self
                .put_once(&path, serde_json::to_vec(&registered).expect("serialises"))
                .await?
            {
                tracing::info!(subject, version = next, fingerprint = %fp, "registered schema");
                return Ok(Registration::Created(registered));
            }
            tracing::debug!(
                subject,
                version = next,
                "lost a registration race; retrying"
            );
        }
        Err(Error::Storage {
            source: object_store::Error::Generic {
                store: "registry",
                source: format!("gave up registering `{subject}` after {MAX_RACES} lost races")
                    .into(),
            },
        })
    }

    async fn check(&self, subject: &str, schema: &Schema) -> Result<Vec<Incompatibility>> {
        let versions = self.versions_or_empty(subject).await?;
        let mode = self.compatibility(subject).await?;
        let needed: Vec<&Registered> = match mode {
            Compatibility::None => return Ok(Vec::new()),
            Compatibility::Backward | Compatibility::Forward | Compatibility::Full => {
                versions.last().into_iter().collect()
            }
            _ => versions.iter().collect(),
        };
        let mut previous = Vec::with_capacity(needed.len());
        for r in needed {
            previous.push(self.load(&r.fingerprint).await?.1);
        }
        let refs: Vec<&Schema> = previous.iter().map(|s| s.as_ref()).collect();
        Ok(mode.check(schema, &refs))
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        let prefix = self.location.child("subjects");
        let listing = self.store().list_with_delimiter(Some(&prefix)).await?;
        let mut out: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn versions(&self, subject: &str) -> Result<Vec<Registered>> {
        let v = self.versions_or_empty(subject).await?;
        if v.is_empty() {
            return Err(Error::NotFound {
                what: format!("subject `{subject}`"),
            });
        }
        Ok(v)
    }

    async fn schema(&self, subject: &str, fingerprint: &Fingerprint) -> Result<Arc<Schema>> {
        match self.load(fingerprint).await {
            Ok((s, schema)) if s == subject => Ok(schema),
            Ok(_) | Err(Error::NotFound { .. }) => Err(Error::NotFound {
                what: format!("schema {fingerprint} of subject `{subject}`"),
            }),
            Err(e) => Err(e),
        }
    }

    async fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<(String, Arc<Schema>)> {
        self.load(fingerprint).await
    }

    async fn by_rabin(&self, fingerprint: u64) -> Result<(String, Arc<Schema>)> {
        let obj: RabinObject = self
            .get_json(
                &self
                    .location
                    .child(&format!("rabin/{fingerprint:016x}.json")),
                || format!("schema with CRC-64-AVRO fingerprint {fingerprint:016x}"),
            )
            .await?;
        let fp: Fingerprint = obj.fingerprint.parse()?;
        self.load(&fp).await
    }

    async fn latest(&self, subject: &str) -> Result<Arc<Schema>> {
        let versions = self.versions(subject).await?;
        let last = versions.last().expect("versions() is never empty");
        Ok(self.load(&last.fingerprint).await?.1)
    }

    async fn compatibility(&self, subject: &str) -> Result<Compatibility> {
        let path = self
            .location
            .child(&format!("subjects/{subject}/config.json"));
        match self.get_json::<ConfigObject>(&path, String::new).await {
            Ok(c) => Ok(c.compatibility),
            Err(Error::NotFound { .. }) => Ok(Compatibility::default()),
            Err(e) => Err(e),
        }
    }

    async fn set_compatibility(&self, subject: &str, mode: Compatibility) -> Result<()> {
        let path = self
            .location
            .child(&format!("subjects/{subject}/config.json"));
        let body = serde_json::to_vec(&ConfigObject {
            compatibility: mode,
        })
        .expect("serialises");
        self.store().put(&path, PutPayload::from(body)).await?;
        Ok(())
    }
}
