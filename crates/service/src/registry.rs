//! `silt registry serve`: SPEC 4's HTTP API over any [`SchemaRegistry`] (the "Keymaster").
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /subjects` | 200, the subject names |
//! | `PUT /subjects/{subject}/schemas` | 201 `{subject, fingerprint, version, id}` when new, 200 when already registered, 409 with `{error, issues: [{path, reason}]}` when incompatible, 400 when not valid Avro or not named as the subject |
//! | `GET /subjects/{subject}/schemas/{fingerprint}` | 200 the schema, or 404 |
//! | `GET /subjects/{subject}/latestSchema` | 200 the schema, or 404 |
//! | `GET /subjects/{subject}/versions` | 200 `[{subject, fingerprint, version, id}]`, or 404 |
//! | `POST /subjects/{subject}/versions` | Confluent's registration: body `{"schema": "<text>"}`, 200 `{"id": n}`; 409 or 422 with `{error_code, message}` |
//! | `GET /subjects/{subject}/versions/{n or latest}` | Confluent's version: 200 `{subject, id, version, schema: "<text>"}`, or 404 |
//! | `POST /subjects/{subject}` | Confluent's lookup: body `{"schema": "<text>"}`, 200 the version that holds it, or 404 |
//! | `POST /subjects/{subject}/compatibility` | 200 `{compatible, mode, issues}`: would this schema be accepted? |
//! | `GET /schemas/{fingerprint}` | 200 `{subject, schema}` |
//! | `GET /schemas/rabin/{hex}` | 200 `{subject, schema}` by CRC-64-AVRO fingerprint |
//! | `GET /schemas/ids/{id}` | 200 `{schema: "<text>", subject}` by registry-wide id, as Confluent's registry answers |
//!
//! The Confluent routes let producers that use Confluent's Avro serializers (with the
//! record-name subject strategy: a subject is the schema's full name) register with and frame
//! records for this registry, and jobs with `framing = "confluent"` resolve their ids here.
//! | `GET`, `PUT /config/{subject}` | the subject's compatibility rule `{compatibility}` |
//! | `DELETE` anything | 405 |
//! | `GET /health`, `/metrics`, `/openapi.json` | operations |

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use silt_registry::{Compatibility, Registration, SchemaRegistry};
use silt_wire::Fingerprint;
use utoipa::{OpenApi, ToSchema};

use crate::metrics::{self, Metrics};

#[derive(Clone)]
struct AppState {
    registry: Arc<dyn SchemaRegistry>,
}

/// A registered version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionBody {
    pub subject: String,
    /// Lower-case hex SHA-256 of the Parsing Canonical Form.
    pub fingerprint: String,
    pub version: u32,
    /// The schema's registry-wide id (the Confluent framing's schema id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

impl From<silt_registry::Registered> for VersionBody {
    fn from(r: silt_registry::Registered) -> Self {
        Self {
            subject: r.subject,
            fingerprint: r.fingerprint.to_hex(),
            version: r.version,
            id: r.id,
        }
    }
}

/// A schema found by id, in the shape of Confluent's `GET /schemas/ids/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdSchemaBody {
    /// The schema's JSON text, as a string.
    pub schema: String,
    pub subject: String,
}

/// Confluent's registration request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfluentRegisterBody {
    /// The schema's JSON text, as a string.
    pub schema: String,
    /// `AVRO` (the default); other types are refused.
    #[serde(default)]
    pub schema_type: Option<String>,
    /// Confluent's schema references (named types of other subjects): refused, saying so;
    /// a schema here is whole, its named types inlined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub references: Vec<serde_json::Value>,
}

/// Confluent's registration answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfluentIdBody {
    pub id: u32,
}

/// A version in Confluent's shape.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfluentVersionBody {
    pub subject: String,
    pub id: u32,
    pub version: u32,
    /// The schema's JSON text, as a string.
    pub schema: String,
}

/// Confluent's error answer, with the offending fields when incompatible.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfluentErrorBody {
    pub error_code: u32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<IssueBody>,
}

/// One reason a schema breaks its subject's rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssueBody {
    /// Where in the schema, e.g. `/fields/productId/type`.
    pub path: String,
    pub reason: String,
}

/// An error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// For 409: every offending field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<IssueBody>,
    /// For a 409 that is no compatibility rule's: the fingerprint and version of the
    /// registered schema the new one shares its fingerprint with but differs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// A schema found by fingerprint alone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubjectSchemaBody {
    pub subject: String,
    /// The schema (JSON).
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

/// A subject's compatibility rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigBody {
    /// BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE.
    pub compatibility: String,
}

/// Whether a schema would be accepted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckBody {
    pub compatible: bool,
    pub mode: String,
    pub issues: Vec<IssueBody>,
}

fn issue_bodies(issues: Vec<silt_wire::resolution::Incompatibility>) -> Vec<IssueBody> {
    issues
        .into_iter()
        .map(|i| IssueBody {
            path: i.path,
            reason: i.reason,
        })
        .collect()
}

fn error(status: StatusCode, e: impl std::fmt::Display) -> Response {
    (
        status,
        Json(ErrorBody {
            error: e.to_string(),
            issues: vec![],
            fingerprint: None,
            version: None,
        }),
    )
        .into_response()
}

fn registry_error(e: silt_registry::Error) -> Response {
    use silt_registry::Error as E;
    match e {
        E::NotFound { .. } => error(StatusCode::NOT_FOUND, e),
        E::InvalidSchema(_) | E::SubjectMismatch { .. } => error(StatusCode::BAD_REQUEST, e),
        E::Incompatible {
            subject,
            mode,
            issues,
        } => (
            StatusCode::CONFLICT,
            Json(ErrorBody {
                error: format!("the schema is not {mode} compatible with subject `{subject}`"),
                issues: issue_bodies(issues),
                fingerprint: None,
                version: None,
            }),
        )
            .into_response(),
        E::FingerprintTaken {
            ref fingerprint,
            version,
            ..
        } => (
            StatusCode::CONFLICT,
            Json(ErrorBody {
                error: e.to_string(),
                issues: issue_bodies(e.issues().to_vec()),
                fingerprint: Some(fingerprint.to_hex()),
                version: Some(version),
            }),
        )
            .into_response(),
        // Its storage failing (a bucket gone, S3 down): the service is unavailable.
        E::Storage { .. } => error(StatusCode::SERVICE_UNAVAILABLE, e),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other),
    }
}

fn schema_json(text: &str) -> Response {
    ([("content-type", "application/json")], text.to_string()).into_response()
}

// The error is the ready HTTP answer; handlers return it as is. A path that is no fingerprint
// names no schema: 404, as SPEC 4 answers for any schema not found, with why.
#[allow(clippy::result_large_err)]
fn fingerprint(text: &str) -> Result<Fingerprint, Response> {
    text.parse().map_err(|e| {
        error(
            StatusCode::NOT_FOUND,
            format!("no schema has that fingerprint: {e}"),
        )
    })
}

#[utoipa::path(get, path = "/subjects", responses((status = 200, body = [String], description = "Subject names")))]
async fn subjects(State(s): State<AppState>) -> Response {
    match s.registry.subjects().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(put, path = "/subjects/{subject}/schemas", request_body(content = Object, description = "The schema's JSON text"),
    params(("subject" = String, Path, description = "The schema's full name")),
    responses((status = 201, body = VersionBody, description = "Registered as a new version"),
        (status = 200, body = VersionBody, description = "Already registered"),
        (status = 409, body = ErrorBody, description = "Breaks the subject's compatibility rule; lists each offending field"),
        (status = 400, body = ErrorBody, description = "Not valid Avro, or its full name is not the subject")))]
async fn register(
    State(s): State<AppState>,
    Path(subject): Path<String>,
    body: String,
) -> Response {
    match s.registry.register(&subject, &body).await {
        Ok(r) => {
            let status = if matches!(r, Registration::Created(_)) {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(VersionBody::from((*r).clone()))).into_response()
        }
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(get, path = "/subjects/{subject}/schemas/{fingerprint}",
    params(("subject" = String, Path), ("fingerprint" = String, Path)),
    responses((status = 200, body = Object, description = "The schema"), (status = 404, body = ErrorBody)))]
async fn schema(
    State(s): State<AppState>,
    Path((subject, fp)): Path<(String, String)>,
) -> Response {
    let fp = match fingerprint(&fp) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match s.registry.schema(&subject, &fp).await {
        Ok(schema) => schema_json(schema.json()),
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(get, path = "/subjects/{subject}/latestSchema", params(("subject" = String, Path)),
    responses((status = 200, body = Object, description = "The latest schema"), (status = 404, body = ErrorBody)))]
async fn latest(State(s): State<AppState>, Path(subject): Path<String>) -> Response {
    match s.registry.latest(&subject).await {
        Ok(schema) => schema_json(schema.json()),
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(get, path = "/subjects/{subject}/versions", params(("subject" = String, Path)),
    responses((status = 200, body = [VersionBody]), (status = 404, body = ErrorBody)))]
async fn versions(State(s): State<AppState>, Path(subject): Path<String>) -> Response {
    match s.registry.versions(&subject).await {
        Ok(v) => Json(v.into_iter().map(VersionBody::from).collect::<Vec<_>>()).into_response(),
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(post, path = "/subjects/{subject}/compatibility", request_body(content = Object, description = "The schema's JSON text"),
    params(("subject" = String, Path)), responses((status = 200, body = CheckBody), (status = 400, body = ErrorBody)))]
async fn check(State(s): State<AppState>, Path(subject): Path<String>, body: String) -> Response {
    let schema = match silt_wire::Schema::parse(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mode = match s.registry.compatibility(&subject).await {
        Ok(m) => m,
        Err(e) => return registry_error(e),
    };
    match s.registry.check(&subject, &schema).await {
        Ok(issues) => Json(CheckBody {
            compatible: issues.is_empty(),
            mode: mode.to_string(),
            issues: issue_bodies(issues),
        })
        .into_response(),
        Err(e) => registry_error(e),
    }
}

fn subject_schema(subject: String, schema: &silt_wire::Schema) -> Response {
    Json(SubjectSchemaBody {
        subject,
        schema: serde_json::from_str(schema.json()).unwrap_or(serde_json::Value::Null),
    })
    .into_response()
}

#[utoipa::path(get, path = "/schemas/{fingerprint}", params(("fingerprint" = String, Path)),
    responses((status = 200, body = SubjectSchemaBody), (status = 404, body = ErrorBody)))]
async fn by_fingerprint(State(s): State<AppState>, Path(fp): Path<String>) -> Response {
    let fp = match fingerprint(&fp) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match s.registry.by_fingerprint(&fp).await {
        Ok((subject, schema)) => subject_schema(subject, &schema),
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(get, path = "/schemas/rabin/{hex}", params(("hex" = String, Path, description = "CRC-64-AVRO, 16 hex digits")),
    responses((status = 200, body = SubjectSchemaBody), (status = 404, body = ErrorBody)))]
async fn by_rabin(State(s): State<AppState>, Path(hex): Path<String>) -> Response {
    let Ok(fp) = u64::from_str_radix(&hex, 16) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{hex}` is not 16 hex digits"),
        );
    };
    match s.registry.by_rabin(fp).await {
        Ok((subject, schema)) => subject_schema(subject, &schema),
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(get, path = "/schemas/ids/{id}", params(("id" = u32, Path, description = "The schema's registry-wide id")),
    responses((status = 200, body = IdSchemaBody), (status = 404, body = ErrorBody)))]
async fn by_id(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u32>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a schema id (a positive integer)"),
        );
    };
    match s.registry.by_id(id).await {
        Ok((subject, schema)) => Json(IdSchemaBody {
            schema: schema.json().to_string(),
            subject,
        })
        .into_response(),
        Err(e) => registry_error(e),
    }
}

fn confluent_error(
    status: StatusCode,
    error_code: u32,
    message: impl std::fmt::Display,
) -> Response {
    (
        status,
        Json(ConfluentErrorBody {
            error_code,
            message: message.to_string(),
            issues: vec![],
        }),
    )
        .into_response()
}

/// The body of Confluent's registration and lookup: `{"schema": "...", "schemaType": "AVRO"}`.
// The error is the ready HTTP answer; handlers return it as is.
#[allow(clippy::result_large_err)]
fn confluent_request(body: &str) -> Result<ConfluentRegisterBody, Response> {
    let request: ConfluentRegisterBody = serde_json::from_str(body).map_err(|e| {
        confluent_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("the body is not {{\"schema\": \"<the schema's JSON text>\"}}: {e}"),
        )
    })?;
    if let Some(t) = request.schema_type.as_deref().filter(|t| *t != "AVRO") {
        return Err(confluent_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("schemaType {t}: this registry holds Avro schemas only"),
        ));
    }
    if !request.references.is_empty() {
        // Else the schema's first use of a referenced type was "unknown type".
        return Err(confluent_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!(
                "schema references ({} of them) are not taken: a schema here is whole, with its named types defined inline (an Avro serializer's auto.register.schemas with inlined types, or the schema written out)",
                request.references.len()
            ),
        ));
    }
    Ok(request)
}

/// A subject's versions, or Confluent's "subject not found".
#[allow(clippy::result_large_err)]
async fn confluent_versions(
    s: &AppState,
    subject: &str,
) -> Result<Vec<silt_registry::Registered>, Response> {
    s.registry.versions(subject).await.map_err(|e| match e {
        silt_registry::Error::NotFound { .. } => confluent_error(
            StatusCode::NOT_FOUND,
            40401,
            format!("subject `{subject}` not found"),
        ),
        e => confluent_error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e),
    })
}

/// One version with its schema text, in Confluent's shape.
async fn confluent_version_answer(s: &AppState, r: &silt_registry::Registered) -> Response {
    let Some(id) = r.id else {
        return confluent_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            format!(
                "`{}` version {} was registered before schemas had ids: register it again to give it one",
                r.subject, r.version
            ),
        );
    };
    match s.registry.schema(&r.subject, &r.fingerprint).await {
        Ok(schema) => Json(ConfluentVersionBody {
            subject: r.subject.clone(),
            id,
            version: r.version,
            schema: schema.json().to_string(),
        })
        .into_response(),
        Err(e) => confluent_error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e),
    }
}

#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}",
    params(("subject" = String, Path), ("version" = String, Path, description = "A version number, or `latest`")),
    responses((status = 200, body = ConfluentVersionBody), (status = 404, body = ConfluentErrorBody)))]
async fn confluent_version(
    State(s): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, Response> {
    let versions = confluent_versions(&s, &subject).await?;
    let found = match version.as_str() {
        "latest" | "-1" => versions.last(),
        n => {
            let n = n.parse::<u32>().map_err(|_| {
                confluent_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42202,
                    format!("`{version}` is not a version (a number, or latest)"),
                )
            })?;
            versions.iter().find(|r| r.version == n)
        }
    };
    match found {
        Some(r) => Ok(confluent_version_answer(&s, r).await),
        None => Err(confluent_error(
            StatusCode::NOT_FOUND,
            40402,
            format!("subject `{subject}` has no version {version}"),
        )),
    }
}

#[utoipa::path(post, path = "/subjects/{subject}", request_body = ConfluentRegisterBody,
    params(("subject" = String, Path)),
    responses((status = 200, body = ConfluentVersionBody, description = "The version that holds this schema"),
        (status = 404, body = ConfluentErrorBody, description = "Unknown subject, or the schema is not one of its versions")))]
async fn confluent_lookup(
    State(s): State<AppState>,
    Path(subject): Path<String>,
    body: String,
) -> Result<Response, Response> {
    let request = confluent_request(&body)?;
    let fp = silt_wire::Schema::parse(&request.schema)
        .map_err(|e| confluent_error(StatusCode::UNPROCESSABLE_ENTITY, 42201, e))?
        .fingerprint();
    let versions = confluent_versions(&s, &subject).await?;
    match versions.iter().find(|r| r.fingerprint == fp) {
        Some(r) => Ok(confluent_version_answer(&s, r).await),
        None => Err(confluent_error(
            StatusCode::NOT_FOUND,
            40403,
            format!("the schema (fingerprint {fp}) is not a version of `{subject}`"),
        )),
    }
}

#[utoipa::path(post, path = "/subjects/{subject}/versions", request_body = ConfluentRegisterBody,
    params(("subject" = String, Path, description = "The schema's full name")),
    responses((status = 200, body = ConfluentIdBody, description = "Registered, now or before"),
        (status = 409, body = ConfluentErrorBody, description = "Breaks the subject's compatibility rule"),
        (status = 422, body = ConfluentErrorBody, description = "Not valid Avro, not Avro, or its full name is not the subject")))]
async fn confluent_register(
    State(s): State<AppState>,
    Path(subject): Path<String>,
    body: String,
) -> Result<Response, Response> {
    use silt_registry::Error as E;
    let request = confluent_request(&body)?;
    Ok(match s.registry.register(&subject, &request.schema).await {
        Ok(r) => match r.id {
            Some(id) => Json(ConfluentIdBody { id }).into_response(),
            None => confluent_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                format!("the registry gave `{subject}` version {} no id", r.version),
            ),
        },
        Err(e @ (E::InvalidSchema(_) | E::SubjectMismatch { .. })) => {
            confluent_error(StatusCode::UNPROCESSABLE_ENTITY, 42201, e)
        }
        Err(E::Incompatible {
            subject,
            mode,
            issues,
        }) => (
            StatusCode::CONFLICT,
            Json(ConfluentErrorBody {
                error_code: 409,
                message: format!("the schema is not {mode} compatible with subject `{subject}`"),
                issues: issue_bodies(issues),
            }),
        )
            .into_response(),
        Err(e @ E::FingerprintTaken { .. }) => (
            StatusCode::CONFLICT,
            Json(ConfluentErrorBody {
                error_code: 409,
                message: e.to_string(),
                issues: issue_bodies(e.issues().to_vec()),
            }),
        )
            .into_response(),
        Err(e) => confluent_error(StatusCode::INTERNAL_SERVER_ERROR, 50001, e),
    })
}

#[utoipa::path(get, path = "/config/{subject}", params(("subject" = String, Path)), responses((status = 200, body = ConfigBody)))]
async fn get_config(State(s): State<AppState>, Path(subject): Path<String>) -> Response {
    match s.registry.compatibility(&subject).await {
        Ok(m) => Json(ConfigBody {
            compatibility: m.to_string(),
        })
        .into_response(),
        Err(e) => registry_error(e),
    }
}

#[utoipa::path(put, path = "/config/{subject}", params(("subject" = String, Path)), request_body = ConfigBody,
    responses((status = 200, body = ConfigBody), (status = 400, body = ErrorBody)))]
async fn put_config(
    State(s): State<AppState>,
    Path(subject): Path<String>,
    body: String,
) -> Response {
    // Read whatever the content type says, as the registration routes do (`curl -d` sends
    // a form's).
    let body: ConfigBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"compatibility\": \"<rule>\"}}: {e}"),
            )
        }
    };
    let mode: Compatibility = match body.compatibility.parse() {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match s.registry.set_compatibility(&subject, mode).await {
        Ok(()) => Json(ConfigBody {
            compatibility: mode.to_string(),
        })
        .into_response(),
        Err(e) => registry_error(e),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "silt schema registry",
        description = "Schemas stored immutably, looked up by subject and SHA-256 fingerprint, with per-subject compatibility rules."
    ),
    paths(
        subjects,
        register,
        schema,
        latest,
        versions,
        check,
        by_fingerprint,
        by_rabin,
        by_id,
        confluent_register,
        confluent_version,
        confluent_lookup,
        get_config,
        put_config
    ),
    components(schemas(
        VersionBody,
        IssueBody,
        ErrorBody,
        SubjectSchemaBody,
        ConfigBody,
        CheckBody,
        IdSchemaBody,
        ConfluentRegisterBody,
        ConfluentIdBody,
        ConfluentVersionBody,
        ConfluentErrorBody
    ))
)]
struct RegistryApi;

/// The OpenAPI 3 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    RegistryApi::openapi()
}

/// The service's routes.
pub fn router(registry: Arc<dyn SchemaRegistry>) -> Router {
    let api = Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(confluent_lookup))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(confluent_version),
        )
        .route("/subjects/{subject}/schemas", put(register))
        .route("/subjects/{subject}/schemas/{fingerprint}", get(schema))
        .route("/subjects/{subject}/latestSchema", get(latest))
        .route(
            "/subjects/{subject}/versions",
            get(versions).post(confluent_register),
        )
        .route("/subjects/{subject}/compatibility", post(check))
        .route("/schemas/{fingerprint}", get(by_fingerprint))
        .route("/schemas/rabin/{hex}", get(by_rabin))
        .route("/schemas/ids/{id}", get(by_id))
        .route("/config/{subject}", get(get_config).put(put_config))
        .with_state(AppState { registry })
        .fallback(|method: Method| async move {
            if method == Method::DELETE {
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "schemas are immutable: there is no delete",
                )
            } else {
                error(StatusCode::NOT_FOUND, "no such route")
            }
        })
        .method_not_allowed_fallback(|method: Method| async move {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed here"),
            )
        });
    metrics::with_operations(api, openapi(), Metrics::new("silt_registry"))
}

/// Serves until `shutdown` is cancelled; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<dyn SchemaRegistry>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
