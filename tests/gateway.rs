//! End to end through the gateway: `silt gateway serve` as its own process, the testdata's
//! events sent as plain JSON over HTTP (with producer retries), SIGTERM, `silt run`, and the
//! lake holds exactly the expected events.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

const SUBJECT: &str = "com.gilt.clickstream.v1.ProductPageViewedEvent";

/// `silt gateway serve` onto file streams in `streams`, checking against the registry folder
/// `registry`, its stderr to `stderr`: the process, its stdout after the banner, and its
/// address.
fn serve(
    registry: &std::path::Path,
    streams: &std::path::Path,
    stderr: Stdio,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStdout>,
    String,
) {
    let mut gateway = silt()
        .args(["gateway", "serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(format!("file://{}", registry.display()))
        .arg("--sink")
        .arg(format!("file://{}", streams.display()))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(gateway.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    (gateway, stdout, base)
}

#[test]
fn gateway_to_file_stream_to_lake_exactly() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    register_testdata(dir.path());
    let streams = dir.path().join("streams");
    let (mut gateway, mut stdout, base) =
        serve(&dir.path().join("registry"), &streams, Stdio::inherit());

    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("expected.json")).unwrap())
            .unwrap();
    let events: Vec<Value> = expected["events"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(uuid, e)| {
            json!({"uuid": uuid, "productId": e["productId"], "saleId": e["saleId"], "channel": e["channel"]})
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let url = format!("{base}/streams/{SUBJECT}/events");
        for batch in events.chunks(64) {
            let r = c.post(&url).json(&batch).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }
        // A producer that did not see its answers sends 30 events again, one by one.
        for e in &events[..30] {
            let r = c
                .put(format!("{url}/{}", e["uuid"].as_str().unwrap()))
                .json(e)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
        // A bad batch puts nothing.
        let mut bad = events[..3].to_vec();
        bad[1]["productId"] = json!("x");
        let r = c.post(&url).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400);
    });

    // SIGTERM: the gateway drains and says what it did.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(gateway.wait().unwrap().success());
    assert!(rest.contains("430 events accepted, 1 refused"), "{rest}");

    let job = write_job(dir.path(), "viagateway", &streams.join(SUBJECT), "");
    let s = run_json(&job);
    assert_eq!(s["rows_written"]["clickstream"], 400, "{s}");
    assert_eq!(s["duplicates"], 30, "{s}");
    assert_eq!(s["rejected"], 0, "{s}");
    assert_lake_holds_expected(&dir.path().join("lake/clickstream"));
}

/// A gateway started on a registry with no subject (most often a typo in `--registry`: a
/// folder that does not exist reads as an empty registry) says so at its start, rather than
/// answering 404 to every stream without a word.
#[test]
fn a_gateway_on_an_empty_registry_says_so_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gateway, mut stdout, base) = serve(
        &dir.path().join("regsitry"),
        &dir.path().join("streams"),
        Stdio::piped(),
    );
    // Serving (its signal handling in place) once it answers.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/streams/{SUBJECT}/events"))
            .body("[]")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 404);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::io::Read::read_to_string(&mut stdout, &mut String::new()).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut gateway.stderr.take().unwrap(), &mut err).unwrap();
    assert!(gateway.wait().unwrap().success());
    assert!(
        err.contains("regsitry holds no subject yet: every stream is unknown (404)"),
        "{err}"
    );
}
