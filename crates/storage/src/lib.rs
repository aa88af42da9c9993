//! # silt-storage: one way from a location URL to an object store
//!
//! The lake, the schema registry and the checkpoints all live behind `Arc<dyn ObjectStore>`
//! (there is no second storage abstraction); this crate only turns the URLs that job files and
//! commands use into a store and a prefix:
//!
//! | URL | store |
//! |---|---|
//! | `file:///abs/dir`, `file://rel/dir`, a bare path | [`LocalFileSystem`] (relative paths resolve against a base folder, the job file's) |
//! | `memory://name` | one [`InMemory`] per name for the life of the process (tests, examples) |
//! | `s3://bucket/prefix` | S3 through `object_store`, configured from the usual `AWS_*` environment (endpoint, region, credentials), with conditional puts |
//!
//! ```
//! let loc = silt_storage::open("memory://example/lake", std::path::Path::new("."))?;
//! assert_eq!(loc.prefix.as_ref(), "lake");
//! # Ok::<(), silt_storage::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

/// Errors turning a URL into a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid location `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot open `{url}`: {}", describe(source))]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// For tests against the S3 stand-in that `scripts/test.sh` starts.
pub mod testing {
    /// Whether the S3 stand-in is there (`SILT_S3_ENDPOINT`); without it a test skips, saying
    /// so, unless `SILT_REQUIRE_STAND_INS` asks for it (then it fails).
    pub fn s3_stand_in() -> bool {
        if std::env::var_os("SILT_S3_ENDPOINT").is_some() {
            return true;
        }
        assert!(
            std::env::var_os("SILT_REQUIRE_STAND_INS").is_none(),
            "SILT_REQUIRE_STAND_INS is set but SILT_S3_ENDPOINT is not"
        );
        eprintln!("skipped: no S3 stand-in (run scripts/test.sh)");
        false
    }

    /// A name of its own for this run: `prefix-` and the time in nanoseconds, in hex.
    pub fn unique(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        format!("{prefix}-{nanos:x}")
    }
}

/// An object store error as one line, an S3 answer's XML body told short
/// ([`short_s3_error`]): what errors that hold one show.
pub fn describe(e: &object_store::Error) -> String {
    short_s3_error(&e.to_string()).into_owned()
}

/// An S3 error answer's XML body (`<?xml ...><Error><Code>NoSuchBucket</Code><Message>...`,
/// which object_store puts in its message whole, request and host ids included) as its code,
/// message and the bucket or key it names: `NoSuchBucket: The specified bucket does not exist
/// (bucket nolake)`.
pub fn short_s3_error(text: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = text.find("<?xml") else {
        return text.into();
    };
    let body = &text[start..];
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let from = body.find(&open)? + open.len();
        let len = body[from..].find(&format!("</{name}>"))?;
        Some(&body[from..from + len])
    };
    let Some(code) = tag("Code") else {
        return text.into();
    };
    let mut short = format!("{}{code}", &text[..start]);
    if let Some(m) = tag("Message") {
        short.push_str(": ");
        short.push_str(m);
    }
    if let Some(b) = tag("BucketName") {
        short.push_str(&format!(" (bucket `{b}`)"));
    } else if let Some(k) = tag("Key") {
        short.push_str(&format!(" (key `{k}`)"));
    }
    let end = body
        .find("</Error>")
        .map_or(text.len(), |e| start + e + "</Error>".len());
    short.push_str(&text[end..]);
    short.into()
}

/// A store and the prefix inside it that a URL names.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store (shared: cloning a location shares its connections).
    pub store: Arc<dyn ObjectStore>,
    /// Where inside the store the location starts.
    pub prefix: ObjectPath,
    /// The URL as resolved (relative file paths made absolute), for messages.
    pub url: String,
}

impl Location {
    /// A path below this location (`parts` joined with `/`).
    pub fn child(&self, rel: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// The object at `key` below this location, `key` taken as the store names it (as
    /// [`relative`](Self::relative) gives it back): nothing is encoded, so `a%2Fb` is the
    /// object `a%2Fb`, where [`child`](Self::child) names `a%252Fb` (the store's encoding of
    /// the text `a%2Fb`). A key the store could not hold (a `.` or `..` segment, a control
    /// character) is encoded as `child` encodes it.
    pub fn key(&self, key: &str) -> ObjectPath {
        let key = key.trim_matches('/');
        if key.is_empty() {
            return self.prefix.clone();
        }
        let full = if self.prefix.as_ref().is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix.as_ref())
        };
        ObjectPath::parse(full).unwrap_or_else(|_| self.child(key))
    }

    /// The location of a sub-folder.
    pub fn join(&self, rel: &str) -> Location {
        Location {
            store: self.store.clone(),
            prefix: self.child(rel),
            url: format!(
                "{}/{}",
                self.url.trim_end_matches('/'),
                rel.trim_matches('/')
            ),
        }
    }

    /// This location's path relative to the prefix, or `None` when `path` lies outside it.
    pub fn relative(&self, path: &ObjectPath) -> Option<String> {
        path.prefix_match(&self.prefix).map(|parts| {
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
    }

    /// A local folder as a location (made if missing).
    pub fn local(dir: &Path) -> Result<Location> {
        open(&format!("file://{}", dir.display()), Path::new("/"))
    }
}

fn memory_store(name: &str) -> Arc<InMemory> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

/// Settings for `s3://` locations that override the AWS environment (a job's `[storage]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint URL (a stand-in, MinIO, a VPC endpoint); `http://` allows plain HTTP.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Opens a location URL. `base` is the folder that relative `file://` paths (and bare paths)
/// resolve against: the job file's folder for job files, the working folder for commands.
pub fn open(url: &str, base: &Path) -> Result<Location> {
    open_with(url, base, &S3Options::default())
}

/// [`open`], with S3 settings that take precedence over the environment.
pub fn open_with(url: &str, base: &Path, s3: &S3Options) -> Result<Location> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if let Some(rest) = url.strip_prefix("memory://") {
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok(Location {
            store: memory_store(name),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            url: url.to_string(),
        });
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket"));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = s3.endpoint.clone().or_else(|| {
            std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok()
        });
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(&endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build().map_err(|source| Error::Open {
            url: url.to_string(),
            source,
        })?;
        return Ok(Location {
            store: Arc::new(store),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            url: url.to_string(),
        });
    }
    let path = match url.strip_prefix("file://") {
        Some(p) => p,
        None if url.contains("://") => {
            return Err(invalid("unknown scheme (use file://, memory:// or s3://)"));
        }
        None => url,
    };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    let dir: PathBuf = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        base.join(path)
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| invalid(&format!("cannot create folder {}: {e}", dir.display())))?;
    let dir = dir.canonicalize().map_err(|e| invalid(&e.to_string()))?;
    let store = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|source| Error::Open {
            url: url.to_string(),
            source,
        })?
        .with_automatic_cleanup(true);
    Ok(Location {
        store: Arc::new(store),
        prefix: ObjectPath::default(),
        url: format!("file://{}", dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_error_body_is_told_by_its_code_message_and_what_it_names() {
        let xml = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>nolake</BucketName><RequestId>yC5k</RequestId><HostId>9Gj=</HostId></Error>";
        assert_eq!(
            short_s3_error(xml),
            "Server returned non-2xx status code: 404 Not Found: NoSuchBucket: The specified bucket does not exist (bucket `nolake`)"
        );
        let key = "403: <?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><Key>a/b.json</Key></Error> after 3 retries";
        assert_eq!(
            short_s3_error(key),
            "403: AccessDenied: Access Denied (key `a/b.json`) after 3 retries"
        );
        for plain in ["no xml <Code>here</Code>", "<?xml but no code"] {
            assert_eq!(short_s3_error(plain), plain);
        }
        let e = object_store::Error::Generic {
            store: "S3",
            source: xml.into(),
        };
        assert!(
            describe(&e).ends_with("(bucket `nolake`)"),
            "{}",
            describe(&e)
        );
    }

    #[test]
    fn relative_file_paths_resolve_against_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let loc = open("file://sub/registry", dir.path()).unwrap();
        assert!(dir.path().join("sub/registry").is_dir());
        assert!(loc.url.ends_with("sub/registry"));
        let bare = open("other", dir.path()).unwrap();
        assert!(bare.url.ends_with("/other"));
    }

    #[test]
    fn memory_locations_with_one_name_share_a_store() {
        let a = open("memory://shared-test/x", Path::new(".")).unwrap();
        let b = open("memory://shared-test/y", Path::new(".")).unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert_eq!(b.prefix.as_ref(), "y");
        assert_eq!(a.child("t/dt=1").as_ref(), "x/t/dt=1");
    }

    #[test]
    fn a_key_is_taken_as_the_store_names_it() {
        let a = open("memory://key-test/x", Path::new(".")).unwrap();
        assert_eq!(a.child("t/k=a%2Fb").as_ref(), "x/t/k=a%252Fb");
        assert_eq!(a.key("t/k=a%2Fb").as_ref(), "x/t/k=a%2Fb");
        assert_eq!(a.key("t/k=Zürich").as_ref(), "x/t/k=Zürich");
        let listed = a.key("t/k=a%2Fb/part-1.parquet");
        assert_eq!(a.relative(&listed).unwrap(), "t/k=a%2Fb/part-1.parquet");
        // What the store cannot hold is encoded rather than refused.
        assert_eq!(a.key("t/../u").as_ref(), a.child("t/../u").as_ref());
        let root = open("memory://key-test", Path::new(".")).unwrap();
        assert_eq!(root.key("k=%23").as_ref(), "k=%23");
    }

    #[test]
    fn unknown_schemes_are_named() {
        let err = open("ftp://x", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("unknown scheme"), "{err}");
    }
}
