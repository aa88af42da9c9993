//! The registry over an object store.
//!
//! Layout below the registry's location (every object written once, never changed, except the
//! per-subject rule):
//!
//! ```text
//! schemas/{fingerprint}.json                       {"subject": ..., "schema": <JSON text>}
//! rabin/{crc64 hex}.json                            {"fingerprint": ...}
//! ids/{id:010}.json                                 {"fingerprint": ...}
//! subjects/{subject}/versions/{version:010}.json  {"subject", "fingerprint", "version", "id"}
//! subjects/{subject}/config.json                    {"compatibility": "BACKWARD"}
//! ```
//!
//! A version object is created with a conditional put (`If-None-Match: *` on S3, a no-clobber
//! link on local disk), so of two registrations racing for one version number exactly one
//! wins; the loser lists again, re-checks compatibility against the winner, and takes the next
//! number. (The version object's name holds only the number: with the fingerprint in the name
//! too, two different schemas would never collide, and both would become the same version.)
//!
//! A schema's registry-wide id (for the Confluent framing) is taken the same way: its first
//! candidate is the fingerprint's first 31 bits, so one schema gets the same id in every
//! registry (development and production agree) and taking it needs no listing; the rare
//! schema whose candidate another schema holds already takes the next free number.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use silt_storage::Location;
use silt_wire::resolution::{beyond_fingerprint, Incompatibility};
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

/// An index entry (`rabin/`, `ids/`): names a schema by its SHA-256 fingerprint.
#[derive(Serialize, Deserialize)]
struct PointerObject {
    fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct ConfigObject {
    compatibility: Compatibility,
}

/// How often a registration retries after losing a race for a version number.
const MAX_RACES: usize = 64;

/// How many ids a schema tries after its first candidate before giving up (with fewer than a
/// million schemas, the chance that 64 neighbours are all taken is nil).
const MAX_ID_PROBES: u32 = 64;

/// The largest id: Confluent's ids are Java `int`s.
const MAX_ID: u32 = i32::MAX as u32;

/// A schema's first candidate id: the fingerprint's first 31 bits (never 0).
fn first_id(fp: &Fingerprint) -> u32 {
    let id = u32::from_be_bytes(fp.0[..4].try_into().expect("4 bytes")) & MAX_ID;
    id.max(1)
}

/// The candidate after `id`, wrapping within `1..=MAX_ID`.
fn next_id(id: u32) -> u32 {
    id % MAX_ID + 1
}

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

    fn id_path(&self, id: u32) -> Path {
        self.location.child(&format!("ids/{id:010}.json"))
    }

    /// The id of a stored schema: takes the first free candidate, or finds the one it took
    /// before (racing registrations of one schema agree; of two schemas, one moves on).
    async fn take_id(&self, fp: &Fingerprint) -> Result<u32> {
        let mut id = first_id(fp);
        let body = serde_json::to_vec(&PointerObject {
            fingerprint: fp.to_hex(),
        })
        .expect("serialises");
        for _ in 0..=MAX_ID_PROBES {
            let path = self.id_path(id);
            if self.put_once(&path, body.clone()).await? {
                return Ok(id);
            }
            let holder: PointerObject = self.get_json(&path, || path.to_string()).await?;
            if holder.fingerprint == fp.to_hex() {
                return Ok(id);
            }
            id = next_id(id);
        }
        Err(Error::Corrupt {
            path: self.id_path(first_id(fp)).to_string(),
            reason: format!(
                "schema {fp} found the {} ids from {} on all taken by other schemas",
                MAX_ID_PROBES + 1,
                first_id(fp)
            ),
        })
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
        let schema = crate::parse_for_subject(subject, text)?;
        let fp = schema.fingerprint();
        for _ in 0..MAX_RACES {
            let versions = self.versions_or_empty(subject).await?;
            if let Some(existing) = versions.iter().find(|r| r.fingerprint == fp) {
                let issues = beyond_fingerprint(&self.load(&fp).await?.1, &schema);
                if !issues.is_empty() {
                    return Err(Error::FingerprintTaken {
                        subject: subject.to_string(),
                        version: existing.version,
                        fingerprint: fp,
                        issues,
                    });
                }
                let mut existing = existing.clone();
                if existing.id.is_none() {
                    existing.id = Some(self.take_id(&fp).await?);
                }
                return Ok(Registration::Existing(existing));
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
            let rabin = serde_json::to_vec(&PointerObject {
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
            let id = self.take_id(&fp).await?;
            let next = versions.last().map_or(1, |r| r.version + 1);
            let registered = Registered {
                subject: subject.to_string(),
                fingerprint: fp,
                version: next,
                id: Some(id),
            };
            let path = self
                .location
                .child(&format!("subjects/{subject}/versions/{next:010}.json"));
            if self
                .put_once(&path, serde_json::to_vec(&registered).expect("serialises"))
                .await?
            {
                tracing::info!(subject, version = next, id, fingerprint = %fp, "registered schema");
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
        // Registering it would be refused before any rule is asked.
        if let Some((path, reason)) = schema.refused_at_registration() {
            return Ok(vec![Incompatibility { path, reason }]);
        }
        let versions = self.versions_or_empty(subject).await?;
        let fp = schema.fingerprint();
        if let Some(same) = versions.iter().find(|r| r.fingerprint == fp) {
            // Registering it would find that version, as `register` does.
            let issues = beyond_fingerprint(&self.load(&fp).await?.1, schema);
            return Ok(issues
                .into_iter()
                .map(|i| Incompatibility {
                    path: i.path,
                    reason: format!(
                        "{} from version {}, whose fingerprint this schema has (one Parsing Canonical Form): records could not tell the two apart",
                        i.reason, same.version
                    ),
                })
                .collect());
        }
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
        let obj: PointerObject = self
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

    async fn by_id(&self, id: u32) -> Result<(String, Arc<Schema>)> {
        let obj: PointerObject = self
            .get_json(&self.id_path(id), || format!("schema with id {id}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = crate::conformance::V1;
    const SUBJECT: &str = crate::conformance::SUBJECT;

    #[test]
    fn ids_are_the_fingerprints_first_31_bits_and_wrap_within_java_ints() {
        let mut fp = Fingerprint([0; 32]);
        fp.0[..4].copy_from_slice(&[0xff, 0x00, 0x00, 0x2a]);
        assert_eq!(first_id(&fp), 0x7f00_002a);
        assert_eq!(first_id(&Fingerprint([0; 32])), 1, "0 is not an id");
        assert_eq!(next_id(7), 8);
        assert_eq!(next_id(MAX_ID), 1);
    }

    #[tokio::test]
    async fn a_schema_whose_id_is_taken_by_another_takes_the_next_free_one() {
        let registry = StoreRegistry::in_memory();
        let fp = Schema::parse(V1).unwrap().fingerprint();
        let first = first_id(&fp);
        // Another schema holds the first two candidates.
        for id in [first, next_id(first)] {
            let other = PointerObject {
                fingerprint: Fingerprint([7; 32]).to_hex(),
            };
            registry
                .put_once(&registry.id_path(id), serde_json::to_vec(&other).unwrap())
                .await
                .unwrap();
        }
        let registered = registry.register(SUBJECT, V1).await.unwrap();
        let id = registered.id.expect("an id");
        assert_eq!(id, next_id(next_id(first)));
        let (subject, schema) = registry.by_id(id).await.unwrap();
        assert_eq!((subject.as_str(), schema.fingerprint()), (SUBJECT, fp));
        // Registering again finds the id it took rather than a fourth one.
        let again = registry.register(SUBJECT, V1).await.unwrap();
        assert_eq!(again.id, Some(id));
        assert!(matches!(
            registry.by_id(next_id(id)).await,
            Err(Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_version_stored_before_ids_existed_gets_one_when_registered_again() {
        let registry = StoreRegistry::in_memory();
        let schema = Schema::parse(V1).unwrap();
        let fp = schema.fingerprint();
        // What an older silt stored: the schema and its version, no id.
        let body = serde_json::to_vec(&SchemaObject {
            subject: SUBJECT.into(),
            schema: schema.json().to_string(),
        })
        .unwrap();
        registry
            .put_once(&registry.schema_path(&fp), body)
            .await
            .unwrap();
        let old = format!(r#"{{"subject":"{SUBJECT}","fingerprint":"{fp}","version":1}}"#);
        registry
            .put_once(
                &registry
                    .location
                    .child(&format!("subjects/{SUBJECT}/versions/{:010}.json", 1)),
                old.into_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(registry.versions(SUBJECT).await.unwrap()[0].id, None);
        assert!(registry.by_id(first_id(&fp)).await.is_err());

        let again = registry.register(SUBJECT, V1).await.unwrap();
        assert!(matches!(again, Registration::Existing(_)));
        assert_eq!(again.id, Some(first_id(&fp)));
        assert_eq!(
            registry.by_id(first_id(&fp)).await.unwrap().1.fingerprint(),
            fp
        );
    }
}
