//! The registry conformance suite against each implementation that needs no server.

use silt_registry::{conformance, CachedRegistry, StoreRegistry};

#[tokio::test]
async fn in_memory_store() {
    conformance::run_all(StoreRegistry::in_memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder() {
    let dirs: Vec<tempfile::TempDir> = (0..conformance::CHECKS)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let d = &dirs[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)];
        silt_registry::open(&format!("file://{}", d.path().display()), d.path()).unwrap()
    })
    .await;
}

#[tokio::test]
async fn cached_wrapper() {
    conformance::run_all(|| CachedRegistry::new(StoreRegistry::in_memory())).await;
}

#[tokio::test]
async fn cached_wrapper_remembers_misses_then_finds_new_schemas() {
    use silt_registry::SchemaRegistry;
    let inner = StoreRegistry::in_memory();
    let cached =
        CachedRegistry::new(inner.clone()).with_negative_ttl(std::time::Duration::from_millis(50));
    let schema = silt_wire::Schema::parse(conformance::V1).unwrap();
    assert!(cached.by_fingerprint(&schema.fingerprint()).await.is_err());
    // Registered behind the cache's back: the miss is remembered for a while...
    inner
        .register(conformance::SUBJECT, conformance::V1)
        .await
        .unwrap();
    assert!(cached.by_fingerprint(&schema.fingerprint()).await.is_err());
    // ...and forgotten after the negative TTL.
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    assert!(cached.by_fingerprint(&schema.fingerprint()).await.is_ok());
}

/// The same suite on S3 through `object_store`, against the moto stand-in that
/// `scripts/test.sh` starts (it exports `SILT_S3_ENDPOINT` and makes the bucket `silt-test`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket_on_the_stand_in() {
    if !silt_storage::testing::s3_stand_in() {
        return;
    }
    let run = silt_storage::testing::unique("registry");
    let next = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        silt_registry::open(
            &format!("s3://silt-test/{run}-{n}"),
            std::path::Path::new("/"),
        )
        .unwrap()
    })
    .await;
}
