//! The registry service over real HTTP on 127.0.0.1 with ephemeral ports.

use std::sync::Arc;

use silt_registry::{conformance, HttpRegistry, SchemaRegistry, StoreRegistry};
use tokio_util::sync::CancellationToken;

struct Server {
    base: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(Arc::new(StoreRegistry::in_memory())).await
    }

    async fn start_with(registry: Arc<dyn SchemaRegistry>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(silt_service::registry::serve(
            listener,
            registry,
            stop.clone(),
        ));
        Server { base, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// GETs `url` and parses its JSON answer.
async fn get_json(c: &reqwest::Client, url: String) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_client_passes_the_registry_conformance_suite() {
    let mut servers = Vec::new();
    for _ in 0..conformance::CHECKS {
        servers.push(Server::start().await);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        HttpRegistry::new(&servers[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)].base)
    })
    .await;
    for s in servers {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_api_table() {
    let server = Server::start().await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    let subject = conformance::SUBJECT;

    let r = c.get(url("/subjects")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Vec<String>>().await.unwrap(), Vec::<String>::new());

    let r = c
        .put(url(&format!("/subjects/{subject}/schemas")))
        .body(conformance::V1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["subject"], subject);
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp.len(), 64);

    let r = c
        .put(url(&format!("/subjects/{subject}/schemas")))
        .body(conformance::V1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "already registered");

    let r = c
        .put(url(&format!("/subjects/{subject}/schemas")))
        .body(conformance::BREAKING)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["issues"][0]["path"], "/fields/saleId");
    assert_eq!(
        v["issues"][0]["reason"],
        "reader field has no default and the writer does not write it"
    );

    let r = c
        .put(url(&format!("/subjects/{subject}/schemas")))
        .body("{not avro")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(url("/subjects/other.Name/schemas"))
        .body(conformance::V1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("is not the subject"));

    let r = c
        .get(url(&format!("/subjects/{subject}/schemas/{fp}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let schema: serde_json::Value = r.json().await.unwrap();
    assert_eq!(schema["name"], "Viewed");
    let missing = "0".repeat(64);
    let r = c
        .get(url(&format!("/subjects/{subject}/schemas/{missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = c
        .get(url(&format!("/subjects/{subject}/latestSchema")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(url("/subjects/no.Such/latestSchema"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = c.get(url(&format!("/schemas/{fp}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["subject"], subject);
    assert_eq!(v["schema"]["name"], "Viewed");
    let r = c
        .get(url(&format!("/schemas/{missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Not a fingerprint at all: no schema has it either (SPEC 4: 200 or 404), and says why.
    for path in [
        format!("/subjects/{subject}/schemas/abcd"),
        "/schemas/ABCD".to_string(),
    ] {
        let r = c.get(url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("64 lower-case hex digits"), "{path}: {text}");
    }

    for path in [
        "/subjects",
        &format!("/subjects/{subject}/schemas/{fp}"),
        "/anything/at/all",
    ] {
        let r = c.delete(url(path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "DELETE {path}");
    }

    let r = c
        .put(url(&format!("/config/{subject}")))
        .json(&serde_json::json!({"compatibility": "NONE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = get_json(&c, url(&format!("/config/{subject}"))).await;
    assert_eq!(v["compatibility"], "NONE");
    // Any content type (`curl -d` sends a form's); a body that is not the rule says so.
    let r = c
        .put(url(&format!("/config/{subject}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"compatibility": "FULL"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(url(&format!("/config/{subject}")))
        .body("FULL")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with(r#"the body is not {"compatibility": "<rule>"}"#),
        "{v}"
    );
    let v: serde_json::Value = get_json(&c, url(&format!("/config/{subject}"))).await;
    assert_eq!(v["compatibility"], "FULL");

    let doc: serde_json::Value = get_json(&c, url("/openapi.json")).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(
        doc["paths"]["/subjects/{subject}/schemas"]["put"].is_object(),
        "{doc}"
    );
    assert_eq!(
        c.get(url("/health"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let metrics = c
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("silt_registry_requests_total{method=\"PUT\",route=\"/subjects/{subject}/schemas\",status=\"409\"} 1"), "{metrics}");
    assert!(
        metrics.contains("silt_registry_request_seconds_bucket"),
        "{metrics}"
    );
    server.stop().await;
}

/// What a producer with Confluent's Avro serializer (record-name subject strategy) and a
/// consumer with its deserializer ask of a registry: register, get an id, fetch by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_clients_register_and_fetch_schemas_by_id() {
    let server = Server::start().await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    let subject = conformance::SUBJECT;
    let register = |text: &str, schema_type: Option<&str>| {
        let mut body = serde_json::json!({ "schema": text });
        if let Some(t) = schema_type {
            body["schemaType"] = t.into();
        }
        c.post(url(&format!("/subjects/{subject}/versions")))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
    };

    let r = register(conformance::V1, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .expect("an integer id");
    let r = register(conformance::V1, Some("AVRO")).await.unwrap();
    assert_eq!(r.status(), 200, "registering again answers the same id");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["id"], id);

    // Confluent's answer: the schema as a string, which parses to the registered schema.
    let r = c
        .get(url(&format!("/schemas/ids/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["subject"], subject);
    let text = v["schema"].as_str().expect("the schema as a string");
    let v1 = silt_wire::Schema::parse(conformance::V1).unwrap();
    assert_eq!(
        silt_wire::Schema::parse(text).unwrap().fingerprint(),
        v1.fingerprint()
    );
    // The id is the one our own API reports for the version.
    let versions: serde_json::Value =
        get_json(&c, url(&format!("/subjects/{subject}/versions"))).await;
    assert_eq!(versions[0]["id"], id);

    // A serializer that does not register (auto.register.schemas=false) looks its schema up;
    // one with use.latest.version asks for the latest version.
    let r = c
        .post(url(&format!("/subjects/{subject}")))
        .body(serde_json::json!({ "schema": conformance::V1 }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["id"].as_u64(), v["version"].as_u64()),
        (Some(id), Some(1)),
        "{v}"
    );
    let r = c
        .post(url(&format!("/subjects/{subject}")))
        .body(serde_json::json!({ "schema": conformance::V2 }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "V2 is not registered yet");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error_code"],
        40403
    );
    let v2_id = register(conformance::V2, None)
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["id"]
        .clone();
    for (version, want_id, want_version) in
        [("latest", &v2_id, 2), ("1", &serde_json::json!(id), 1)]
    {
        let r = c
            .get(url(&format!("/subjects/{subject}/versions/{version}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{version}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (&v["id"], v["version"].as_u64()),
            (want_id, Some(want_version)),
            "{v}"
        );
        assert_eq!(v["subject"], subject);
        silt_wire::Schema::parse(v["schema"].as_str().unwrap()).unwrap();
    }
    for (path, status, code) in [
        (format!("/subjects/{subject}/versions/3"), 404, 40402),
        (format!("/subjects/{subject}/versions/x"), 422, 42202),
        ("/subjects/no.Such/versions/latest".to_string(), 404, 40401),
    ] {
        let r = c.get(url(&path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["error_code"],
            code,
            "{path}"
        );
    }

    let r = register(conformance::BREAKING, None).await.unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], 409);
    assert_eq!(v["issues"][0]["path"], "/fields/saleId");
    // V1 with a default on a field: the fingerprint of V1 (defaults are not in the
    // canonical form), so not a new version, and not V1 either.
    let defaulted = conformance::V1.replace(
        r#"{"name":"productId","type":"long"}"#,
        r#"{"name":"productId","type":"long","default":0}"#,
    );
    let r = register(&defaulted, None).await.unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], 409);
    assert_eq!(v["issues"][0]["path"], "/fields/productId/default");
    assert!(
        v["message"].as_str().unwrap().contains("of version 1 of"),
        "{v}"
    );
    for (text, schema_type, words) in [
        ("{not avro", None, "invalid schema"),
        (conformance::V1, Some("PROTOBUF"), "Avro schemas only"),
    ] {
        let r = register(text, schema_type).await.unwrap();
        assert_eq!(r.status(), 422, "{text} {schema_type:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error_code"], 42201);
        assert!(v["message"].as_str().unwrap().contains(words), "{v}");
    }
    let r = c
        .post(url("/subjects/other.Name/versions"))
        .body(serde_json::json!({ "schema": conformance::V1 }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Schema references (a serializer's named types of other subjects): said so, not
    // "unknown type" of the first one used.
    let r = c
        .post(url(&format!("/subjects/{subject}/versions")))
        .body(
            serde_json::json!({ "schema": conformance::V1,
                "references": [{"name": "conf.v1.Other", "subject": "conf.v1.Other", "version": 1}] })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("schema references (1 of them) are not taken"),
        "{v}"
    );

    let unused = if id == 1 { 2 } else { id - 1 };
    let r = c
        .get(url(&format!("/schemas/ids/{unused}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(url("/schemas/ids/seven")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await;
}

/// A registry whose storage fails (its bucket does not exist) answers 503 with the S3 error
/// told short, and an HTTP client of it sees an outage (`Storage`), which a following job
/// waits out, rather than a corrupt registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_whose_storage_fails_answers_503_and_its_clients_see_an_outage() {
    if !silt_storage::testing::s3_stand_in() {
        return;
    }
    let bucket = silt_storage::testing::unique("no-such-bucket");
    let registry =
        silt_registry::open(&format!("s3://{bucket}/r"), std::path::Path::new("/")).unwrap();
    let server = Server::start_with(Arc::new(registry)).await;
    let r = reqwest::get(format!("{}/subjects", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "NoSuchBucket: The specified bucket does not exist (bucket `{bucket}`)"
        )),
        "{error}"
    );
    assert!(!error.contains("<?xml"), "{error}");
    let client = HttpRegistry::new(&server.base);
    match client.subjects().await {
        Err(silt_registry::Error::Storage { .. }) => {}
        other => panic!("expected an outage (Storage), got {other:?}"),
    }
    server.stop().await;
}
