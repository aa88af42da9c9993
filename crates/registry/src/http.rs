//! A [`SchemaRegistry`] over the registry's HTTP API (`silt registry serve`), for consumers and
//! producers that reach the registry as a service.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use silt_wire::resolution::Incompatibility;
use silt_wire::{Fingerprint, Schema};

use crate::{Compatibility, Error, Registered, Registration, Result, SchemaRegistry};

/// An HTTP client of the registry service.
#[derive(Debug, Clone)]
pub struct HttpRegistry {
    base: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct VersionBody {
    subject: String,
    fingerprint: String,
    version: u32,
    #[serde(default)]
    id: Option<u32>,
}

#[derive(Deserialize)]
struct IssueBody {
    path: String,
    reason: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    issues: Vec<IssueBody>,
    /// Set on a 409 for a schema sharing a registered version's fingerprint.
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Deserialize)]
struct SubjectSchemaBody {
    subject: String,
    schema: serde_json::Value,
}

#[derive(Deserialize)]
struct CheckBody {
    issues: Vec<IssueBody>,
}

#[derive(Deserialize, serde::Serialize)]
struct ConfigBody {
    compatibility: String,
}

fn transport(e: reqwest::Error) -> Error {
    Error::Storage {
        source: object_store::Error::Generic {
            store: "http registry",
            source: Box::new(e),
        },
    }
}

impl HttpRegistry {
    /// A client for a registry at `base` (`http://127.0.0.1:8081`).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn fail(&self, subject: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let body: ErrorBody = resp.json().await.unwrap_or(ErrorBody {
            error: format!("HTTP {status}"),
            issues: vec![],
            fingerprint: None,
            version: None,
        });
        let issues = body
            .issues
            .into_iter()
            .map(|i| Incompatibility {
                path: i.path,
                reason: i.reason,
            })
            .collect();
        let taken = body.fingerprint.as_deref().map(str::parse::<Fingerprint>);
        match (status.as_u16(), taken, body.version) {
            (404, ..) => Error::NotFound { what: body.error },
            (409, Some(Ok(fingerprint)), Some(version)) => Error::FingerprintTaken {
                subject: subject.to_string(),
                version,
                fingerprint,
                issues,
            },
            (409, ..) => Error::Incompatible {
                subject: subject.to_string(),
                mode: self.compatibility(subject).await.unwrap_or_default(),
                issues,
            },
            (400, ..) => Error::InvalidSchema(silt_wire::Error::InvalidSchema {
                path: String::new(),
                reason: body.error,
            }),
            // The service is up but cannot answer (its storage failing): an outage, as when
            // it cannot be reached, not a corrupt registry.
            (500..=599, ..) => Error::Storage {
                source: object_store::Error::Generic {
                    store: "http registry",
                    source: format!("HTTP {status}: {}", body.error).into(),
                },
            },
            _ => Error::Corrupt {
                path: self.base.clone(),
                reason: format!("HTTP {status}: {}", body.error),
            },
        }
    }

    /// GET `path`; a non-2xx answer becomes the error it stands for.
    async fn get_ok(&self, subject: &str, path: &str) -> Result<reqwest::Response> {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(self.fail(subject, resp).await);
        }
        Ok(resp)
    }

    async fn schema_at(&self, subject: &str, path: &str) -> Result<Arc<Schema>> {
        let resp = self.get_ok(subject, path).await?;
        let text = resp.text().await.map_err(transport)?;
        Ok(Arc::new(Schema::parse(&text)?))
    }

    async fn subject_schema(&self, path: &str) -> Result<(String, Arc<Schema>)> {
        let resp = self.get_ok("", path).await?;
        let body: SubjectSchemaBody = resp.json().await.map_err(transport)?;
        // The schema is its JSON, or (Confluent's `/schemas/ids/{id}`) its text as a string.
        let schema = match body.schema {
            serde_json::Value::String(text) => Schema::parse(&text)?,
            json => Schema::parse(&json.to_string())?,
        };
        Ok((body.subject, Arc::new(schema)))
    }
}

fn registered(v: VersionBody) -> Result<Registered> {
    Ok(Registered {
        subject: v.subject,
        fingerprint: v.fingerprint.parse()?,
        version: v.version,
        id: v.id,
    })
}

#[async_trait]
impl SchemaRegistry for HttpRegistry {
    async fn register(&self, subject: &str, text: &str) -> Result<Registration> {
        let resp = self
            .client
            .put(self.url(&format!("/subjects/{subject}/schemas")))
            .header("content-type", "application/json")
            .body(text.to_string())
            .send()
            .await
            .map_err(transport)?;
        match resp.status().as_u16() {
            201 => Ok(Registration::Created(registered(
                resp.json().await.map_err(transport)?,
            )?)),
            200 => Ok(Registration::Existing(registered(
                resp.json().await.map_err(transport)?,
            )?)),
            400 => {
                // Say exactly what the server refused: the same checks, made here.
                crate::parse_for_subject(subject, text)?;
                Err(self.fail(subject, resp).await)
            }
            _ => Err(self.fail(subject, resp).await),
        }
    }

    async fn check(&self, subject: &str, schema: &Schema) -> Result<Vec<Incompatibility>> {
        let resp = self
            .client
            .post(self.url(&format!("/subjects/{subject}/compatibility")))
            .body(schema.json().to_string())
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(self.fail(subject, resp).await);
        }
        let body: CheckBody = resp.json().await.map_err(transport)?;
        Ok(body
            .issues
            .into_iter()
            .map(|i| Incompatibility {
                path: i.path,
                reason: i.reason,
            })
            .collect())
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        let resp = self.get_ok("", "/subjects").await?;
        resp.json().await.map_err(transport)
    }

    async fn versions(&self, subject: &str) -> Result<Vec<Registered>> {
        let resp = self
            .get_ok(subject, &format!("/subjects/{subject}/versions"))
            .await?;
        let v: Vec<VersionBody> = resp.json().await.map_err(transport)?;
        v.into_iter().map(registered).collect()
    }

    async fn schema(&self, subject: &str, fingerprint: &Fingerprint) -> Result<Arc<Schema>> {
        self.schema_at(
            subject,
            &format!("/subjects/{subject}/schemas/{fingerprint}"),
        )
        .await
    }

    async fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<(String, Arc<Schema>)> {
        self.subject_schema(&format!("/schemas/{fingerprint}"))
            .await
    }

    async fn by_rabin(&self, fingerprint: u64) -> Result<(String, Arc<Schema>)> {
        self.subject_schema(&format!("/schemas/rabin/{fingerprint:016x}"))
            .await
    }

    async fn by_id(&self, id: u32) -> Result<(String, Arc<Schema>)> {
        self.subject_schema(&format!("/schemas/ids/{id}")).await
    }

    async fn latest(&self, subject: &str) -> Result<Arc<Schema>> {
        self.schema_at(subject, &format!("/subjects/{subject}/latestSchema"))
            .await
    }

    async fn compatibility(&self, subject: &str) -> Result<Compatibility> {
        let resp = self
            .client
            .get(self.url(&format!("/config/{subject}")))
            .send()
            .await
            .map_err(transport)?;
        let body: ConfigBody = resp.json().await.map_err(transport)?;
        body.compatibility
            .parse()
            .map_err(|e: String| Error::Corrupt {
                path: self.base.clone(),
                reason: e,
            })
    }

    async fn set_compatibility(&self, subject: &str, mode: Compatibility) -> Result<()> {
        let resp = self
            .client
            .put(self.url(&format!("/config/{subject}")))
            .json(&ConfigBody {
                compatibility: mode.to_string(),
            })
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(self.fail(subject, resp).await);
        }
        Ok(())
    }
}
