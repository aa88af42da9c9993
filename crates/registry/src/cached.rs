//! A caching wrapper for consumers: a job looks up the same few fingerprints millions of times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use silt_wire::resolution::Incompatibility;
use silt_wire::{Fingerprint, Schema};

use crate::{Compatibility, Error, Registered, Registration, Result, SchemaRegistry};

/// Caches lookups by fingerprint for ever (schemas are immutable, see the
/// [`SchemaRegistry`] contract) and misses for `negative_ttl`, so that a stream full of
/// records with an unknown fingerprint does not send a request per record, while a schema
/// registered a moment later is still found soon. `latest` is cached for `latest_ttl`.
#[derive(Debug)]
pub struct CachedRegistry<R> {
    inner: R,
    negative_ttl: Duration,
    latest_ttl: Duration,
    hits: Mutex<HashMap<Fingerprint, (String, Arc<Schema>)>>,
    misses: Mutex<HashMap<Fingerprint, Instant>>,
    latest: Mutex<HashMap<String, (Instant, Arc<Schema>)>>,
}

impl<R: SchemaRegistry> CachedRegistry<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            negative_ttl: Duration::from_secs(30),
            latest_ttl: Duration::from_secs(30),
            hits: Default::default(),
            misses: Default::default(),
            latest: Default::default(),
        }
    }

    /// How long a "not found" is remembered.
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// How long the latest version of a subject is remembered.
    pub fn with_latest_ttl(mut self, ttl: Duration) -> Self {
        self.latest_ttl = ttl;
        self
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// A schema found by another key is a hit by fingerprint too.
    fn remember(&self, found: &(String, Arc<Schema>)) {
        self.hits
            .lock()
            .expect("not poisoned")
            .insert(found.1.fingerprint(), found.clone());
    }
}

#[async_trait]
impl<R: SchemaRegistry> SchemaRegistry for CachedRegistry<R> {
    async fn register(&self, subject: &str, text: &str) -> Result<Registration> {
        let r = self.inner.register(subject, text).await?;
        self.misses
            .lock()
            .expect("not poisoned")
            .remove(&r.fingerprint);
        self.latest.lock().expect("not poisoned").remove(subject);
        Ok(r)
    }

    async fn check(&self, subject: &str, schema: &Schema) -> Result<Vec<Incompatibility>> {
        self.inner.check(subject, schema).await
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        self.inner.subjects().await
    }

    async fn versions(&self, subject: &str) -> Result<Vec<Registered>> {
        self.inner.versions(subject).await
    }

    async fn schema(&self, subject: &str, fingerprint: &Fingerprint) -> Result<Arc<Schema>> {
        match self.by_fingerprint(fingerprint).await {
            Ok((s, schema)) if s == subject => Ok(schema),
            Ok(_) | Err(Error::NotFound { .. }) => Err(Error::NotFound {
                what: format!("schema {fingerprint} of subject `{subject}`"),
            }),
            Err(e) => Err(e),
        }
    }

    async fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<(String, Arc<Schema>)> {
        if let Some(hit) = self.hits.lock().expect("not poisoned").get(fingerprint) {
            return Ok(hit.clone());
        }
        if let Some(at) = self.misses.lock().expect("not poisoned").get(fingerprint) {
            if at.elapsed() < self.negative_ttl {
                return Err(Error::NotFound {
                    what: format!("schema with fingerprint {fingerprint}"),
                });
            }
        }
        match self.inner.by_fingerprint(fingerprint).await {
            Ok(found) => {
                self.hits
                    .lock()
                    .expect("not poisoned")
                    .insert(*fingerprint, found.clone());
                Ok(found)
            }
            Err(Error::NotFound { what }) => {
                self.misses
                    .lock()
                    .expect("not poisoned")
                    .insert(*fingerprint, Instant::now());
                Err(Error::NotFound { what })
            }
            Err(e) => Err(e),
        }
    }

    async fn by_rabin(&self, fingerprint: u64) -> Result<(String, Arc<Schema>)> {
        let found = self.inner.by_rabin(fingerprint).await?;
        self.remember(&found);
        Ok(found)
    }

    async fn by_id(&self, id: u32) -> Result<(String, Arc<Schema>)> {
        let found = self.inner.by_id(id).await?;
        self.remember(&found);
        Ok(found)
    }

    async fn latest(&self, subject: &str) -> Result<Arc<Schema>> {
        if let Some((at, s)) = self.latest.lock().expect("not poisoned").get(subject) {
            if at.elapsed() < self.latest_ttl {
                return Ok(s.clone());
            }
        }
        let s = self.inner.latest(subject).await?;
        self.latest
            .lock()
            .expect("not poisoned")
            .insert(subject.to_string(), (Instant::now(), s.clone()));
        Ok(s)
    }

    async fn compatibility(&self, subject: &str) -> Result<Compatibility> {
        self.inner.compatibility(subject).await
    }

    async fn set_compatibility(&self, subject: &str, mode: Compatibility) -> Result<()> {
        self.inner.set_compatibility(subject, mode).await
    }
}
