//! Helpers for tests against a Kinesis stand-in (kinesalite), shared by this crate's tests and
//! the end-to-end tests.

use std::time::Duration;

use aws_sdk_kinesis::types::StreamStatus;

use crate::{client, KinesisOptions};

/// The stand-in's endpoint from `SILT_KINESIS_ENDPOINT` (set by `scripts/test.sh`), or `None`
/// (the test is skipped) unless `SILT_REQUIRE_STAND_INS` demands it.
pub fn endpoint() -> Option<String> {
    match std::env::var("SILT_KINESIS_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) => {
            assert!(
                std::env::var_os("SILT_REQUIRE_STAND_INS").is_none(),
                "SILT_REQUIRE_STAND_INS is set but SILT_KINESIS_ENDPOINT is not"
            );
            eprintln!("skipped: no Kinesis stand-in (run scripts/test.sh)");
            None
        }
    }
}

/// A client for an endpoint with dummy credentials.
pub async fn test_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // Test processes only: the stand-ins accept any credentials.
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    client(&KinesisOptions {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
    })
    .await
}

/// A unique stream name with a prefix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", rand::random::<u64>())
}

/// Creates a stream and waits until it is active.
pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    assert!(
        crate::ensure_stream(client, name, shards)
            .await
            .expect("create stream"),
        "{name} existed already"
    );
}

/// Waits until a stream is active (after creation or a reshard).
pub async fn wait_active(client: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..200 {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("describe");
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} never became active");
}

/// A small HTTP proxy in front of a stand-in that answers a share of the calls it is told to
/// fault with a throttling error (`ProvisionedThroughputExceededException`, HTTP 400) or a
/// 500, and forwards everything else. It runs on its own thread until dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// How many calls it faulted.
    pub injected: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FaultProxy {
    /// Faults `rate` of the calls whose `X-Amz-Target` ends with one of `operations`
    /// (e.g. `GetRecords`, `PutRecords`), spread evenly (deterministic, so a test is
    /// repeatable: with 0.3, calls 1, 4 and 7 of every ten); every fifth fault is a 500, the
    /// rest throttling.
    pub fn start(upstream: &str, rate: f64, operations: &[&str]) -> FaultProxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let ops: Vec<String> = operations.iter().map(|s| s.to_string()).collect();
        let injected = Arc::new(AtomicU64::new(0));
        let counter = injected.clone();
        let seen = Arc::new(AtomicU64::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();

        async fn read_message(
            s: &mut tokio::net::TcpStream,
            buf: &mut Vec<u8>,
        ) -> Option<(Vec<u8>, String)> {
            // Reads one HTTP/1.1 message with a Content-Length body; returns it and its headers.
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let total = end + 4 + len;
                    while buf.len() < total {
                        let mut chunk = [0u8; 65536];
                        let n = s.read(&mut chunk).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let msg: Vec<u8> = buf.drain(..total).collect();
                    return Some((msg, head));
                }
                let mut chunk = [0u8; 65536];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }

        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let (mut client, _) = tokio::select! {
                        _ = &mut stopped => break,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let (upstream, ops, counter, seen) = (upstream.clone(), ops.clone(), counter.clone(), seen.clone());
                    conns.spawn(async move {
                        let mut buf = Vec::new();
                        while let Some((req, head)) = read_message(&mut client, &mut buf).await {
                            let target = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("x-amz-target").then(|| v.trim().to_string())
                                })
                                .unwrap_or_default();
                            let faulty = ops.iter().any(|o| target.ends_with(o.as_str())) && {
                                // Call k is faulted when the running share of faults would
                                // otherwise fall below `rate`.
                                let k = seen.fetch_add(1, Ordering::Relaxed);
                                ((k + 1) as f64 * rate).floor() > (k as f64 * rate).floor()
                            };
                            if faulty {
                                let n = counter.fetch_add(1, Ordering::Relaxed);
                                let (status, body) = if n % 5 == 4 {
                                    ("500 Internal Server Error", r#"{"__type":"InternalFailure","message":"injected"}"#)
                                } else {
                                    ("400 Bad Request", r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded (injected)"}"#)
                                };
                                let resp = format!(
                                    "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
                                    body.len()
                                );
                                if client.write_all(resp.as_bytes()).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                            let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else { return };
                            if up.write_all(&req).await.is_err() {
                                return;
                            }
                            let mut ubuf = Vec::new();
                            let Some((resp, _)) = read_message(&mut up, &mut ubuf).await else { return };
                            if client.write_all(&resp).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                conns.abort_all();
            });
        });
        FaultProxy {
            endpoint,
            injected,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}
