//! The registry's behaviour, written once and run against every implementation (memory,
//! local folder, S3 through the emulator, the HTTP client).
//!
//! Each check takes a registry that holds nothing yet and panics with a message on failure.

use crate::{Compatibility, Error, Registration, SchemaRegistry};

/// A subject's first schema.
pub const V1: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
    {"name":"uuid","type":"gfc.avro.UUID"},{"name":"productId","type":"long"}]}"#;
/// A backward-compatible second version (a field with a default).
pub const V2: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
    {"name":"uuid","type":"gfc.avro.UUID"},{"name":"productId","type":"long"},
    {"name":"channel","type":["null","string"],"default":null}]}"#;
/// Not backward compatible with [`V1`]: a new field without a default.
pub const BREAKING: &str = r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[
    {"name":"uuid","type":"gfc.avro.UUID"},{"name":"productId","type":"long"},
    {"name":"saleId","type":"long"}]}"#;
pub const SUBJECT: &str = "conf.v1.Viewed";

/// Register, re-register, look up by subject+fingerprint, by fingerprint alone, by CRC-64,
/// by id, latest, list; not-found answers.
pub async fn register_and_look_up(r: &dyn SchemaRegistry) {
    let first = r.register(SUBJECT, V1).await.expect("register v1");
    assert!(matches!(first, Registration::Created(_)), "{first:?}");
    assert_eq!(first.version, 1);
    let again = r.register(SUBJECT, V1).await.expect("register v1 again");
    assert_eq!(again, Registration::Existing((*first).clone()));
    let second = r.register(SUBJECT, V2).await.expect("register v2");
    assert_eq!(second.version, 2);

    assert_eq!(r.subjects().await.unwrap(), vec![SUBJECT.to_string()]);
    let versions = r.versions(SUBJECT).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        r.latest(SUBJECT).await.unwrap().fingerprint(),
        second.fingerprint
    );
    let s1 = r.schema(SUBJECT, &first.fingerprint).await.unwrap();
    assert_eq!(s1.fingerprint(), first.fingerprint);
    let (subject, s) = r.by_fingerprint(&second.fingerprint).await.unwrap();
    assert_eq!(
        (subject.as_str(), s.fingerprint()),
        (SUBJECT, second.fingerprint)
    );
    let (_, s) = r.by_rabin(s1.rabin_fingerprint()).await.unwrap();
    assert_eq!(s.fingerprint(), first.fingerprint);
    let (first_id, second_id) = (first.id.expect("an id"), second.id.expect("an id"));
    assert_ne!(first_id, second_id);
    assert!((1..=i32::MAX as u32).contains(&first_id), "{first_id}");
    let (subject, s) = r.by_id(second_id).await.unwrap();
    assert_eq!(
        (subject.as_str(), s.fingerprint()),
        (SUBJECT, second.fingerprint)
    );
    assert_eq!(
        r.by_id(first_id).await.unwrap().1.fingerprint(),
        first.fingerprint
    );
    assert_eq!(
        versions.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![Some(first_id), Some(second_id)]
    );
    // Standard types were inlined: the stored text stands alone.
    assert!(s1.json().contains("\"size\":16"), "{}", s1.json());

    let unknown = silt_wire::Fingerprint([9; 32]);
    assert!(matches!(
        r.by_fingerprint(&unknown).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        r.schema(SUBJECT, &unknown).await,
        Err(Error::NotFound { .. })
    ));
    let unused = (1..).find(|i| ![first_id, second_id].contains(i)).unwrap();
    assert!(matches!(r.by_id(unused).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        r.latest("no.such.Subject").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        r.versions("no.such.Subject").await,
        Err(Error::NotFound { .. })
    ));
}

/// Incompatible schemas are refused with field paths; the rule can be changed per subject.
pub async fn compatibility_rules(r: &dyn SchemaRegistry) {
    r.register(SUBJECT, V1).await.expect("register v1");
    assert_eq!(
        r.compatibility(SUBJECT).await.unwrap(),
        Compatibility::Backward
    );
    match r.register(SUBJECT, BREAKING).await {
        Err(Error::Incompatible { issues, mode, .. }) => {
            assert_eq!(mode, Compatibility::Backward);
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].path, "/fields/saleId");
            assert_eq!(
                issues[0].reason,
                "reader field has no default and the writer does not write it"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    r.set_compatibility(SUBJECT, Compatibility::None)
        .await
        .unwrap();
    assert_eq!(r.compatibility(SUBJECT).await.unwrap(), Compatibility::None);
    let forced = r
        .register(SUBJECT, BREAKING)
        .await
        .expect("NONE lets it through");
    assert_eq!(forced.version, 2);
}

/// Wrong subject names and invalid Avro are refused and register nothing.
pub async fn invalid_registrations(r: &dyn SchemaRegistry) {
    assert!(matches!(
        r.register("other.Subject", V1).await,
        Err(Error::SubjectMismatch { .. })
    ));
    assert!(matches!(
        r.register(SUBJECT, r#"{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[{"name":"a","type":"nope"}]}"#)
            .await,
        Err(Error::InvalidSchema(_))
    ));
    // What no job could store: a recursive record, a field named as a metadata column of the
    // lake (SPEC 8), a decimal wider than Arrow's, a record of no fields, no event id (SPEC 3)
    // or one of another type; nor what Spark could not read (two names differing only in
    // case). `check` says so too.
    let viewed = |fields: &str| {
        format!(r#"{{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[{fields}]}}"#)
    };
    let uuid = r#"{"name":"uuid","type":"gfc.avro.UUID"}"#;
    for (text, path, words) in [
        (
            viewed(&format!(
                r#"{uuid},{{"name":"root","type":{{"type":"record","name":"Node","fields":[
                {{"name":"v","type":"int"}},{{"name":"kids","type":{{"type":"array","items":"Node"}}}}]}}}}"#
            )),
            "/fields/root/type/fields/kids/type/items",
            "record `conf.v1.Node` holds itself",
        ),
        (
            viewed(&format!(r#"{uuid},{{"name":"_stream","type":"string"}}"#)),
            "/fields/_stream",
            "the name of a metadata column",
        ),
        (
            viewed(&format!(
                r#"{uuid},{{"name":"amounts","type":{{"type":"map","values":["null",
                {{"type":"bytes","logicalType":"decimal","precision":77,"scale":2}}]}}}}"#
            )),
            "/fields/amounts/type/values",
            "a decimal of precision 77: the lake's decimals hold at most 76 digits",
        ),
        (
            viewed(&format!(
                r#"{uuid},{{"name":"big","type":{{"type":"bytes","logicalType":"decimal","precision":39,"scale":2}}}}"#
            )),
            "/fields/big/type",
            "a decimal of precision 39: Spark reads decimals of at most 38 digits",
        ),
        (
            viewed(&format!(
                r#"{uuid},{{"name":"marks","type":{{"type":"array","items":
                {{"type":"record","name":"Mark","fields":[]}}}}}}"#
            )),
            "/fields/marks/type/items",
            "record `conf.v1.Mark` has no fields",
        ),
        (
            viewed(&format!(
                r#"{uuid},{{"name":"r","type":{{"type":"record","name":"R","fields":[
                {{"name":"x","type":"int"}},{{"name":"none","type":"null"}}]}}}}"#
            )),
            "/fields/r/type/fields/none",
            "a field of type `null` in record `conf.v1.R`",
        ),
        (
            viewed(&format!(
                r#"{uuid},{{"name":"pay","type":{{"type":"record","name":"Pay","fields":[
                {{"name":"amount","type":"long"}},{{"name":"Amount","type":"long"}}]}}}}"#
            )),
            "/fields/pay/type/fields/Amount",
            "fields `amount` and `Amount` differ only in case",
        ),
        (
            viewed(&format!(r#"{uuid},{{"name":"_Stream","type":"string"}}"#)),
            "/fields/_Stream",
            "differs only in case from a metadata column",
        ),
        (
            viewed(r#"{"name":"productId","type":"long"}"#),
            "/fields",
            "needs a top-level `uuid` field",
        ),
        (
            viewed(r#"{"name":"uuid","type":"long"}"#),
            "/fields/uuid/type",
            "needs a top-level `uuid` field",
        ),
    ] {
        match r.register(SUBJECT, &text).await {
            Err(Error::InvalidSchema(e)) => {
                let e = e.to_string();
                assert!(e.contains(path) && e.contains(words), "{e}");
            }
            other => panic!("expected a refusal at {path}, got {other:?}"),
        }
        let issues = r
            .check(SUBJECT, &silt_wire::Schema::parse(&text).unwrap())
            .await
            .unwrap();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].path == path && issues[0].reason.contains(words),
            "{issues:?}"
        );
    }
    assert!(r.subjects().await.unwrap().is_empty());
}

/// A schema with a registered version's fingerprint (one Parsing Canonical Form) but another
/// logical type or default is refused naming what differs, not answered "already registered";
/// the same schema again (its docs apart) is.
pub async fn fingerprint_shared_with_a_different_schema(r: &dyn SchemaRegistry) {
    let schema = |scale: u32, default: &str| {
        format!(
            r#"{{"type":"record","name":"Paid","namespace":"conf.v1","fields":[{{"name":"uuid","type":"gfc.avro.UUID"}},
            {{"name":"amount","type":{{"type":"bytes","logicalType":"decimal","precision":10,"scale":{scale}}}}},
            {{"name":"note","type":"string"{default}}}]}}"#
        )
    };
    let subject = "conf.v1.Paid";
    let v1 = r
        .register(subject, &schema(2, ""))
        .await
        .expect("register v1");
    assert!(matches!(v1, Registration::Created(_)));
    let documented = schema(2, r#","doc":"a note""#);
    match r.register(subject, &documented).await {
        Ok(Registration::Existing(e)) => assert_eq!(e.version, 1),
        other => panic!("a doc alone changes nothing read: {other:?}"),
    }
    let parsed = |text: &str| silt_wire::Schema::parse(text).expect("valid");
    for (text, path, reason) in [
        (
            schema(4, ""),
            "/fields/amount/type",
            "logical type changed from decimal(10, 2) to decimal(10, 4)",
        ),
        (
            schema(2, r#","default":"none""#),
            "/fields/note/default",
            r#"default changed from none to "none""#,
        ),
    ] {
        assert_eq!(
            parsed(&text).fingerprint(),
            v1.fingerprint,
            "one canonical form"
        );
        match r.register(subject, &text).await {
            Err(Error::FingerprintTaken {
                version,
                fingerprint,
                issues,
                ..
            }) => {
                assert_eq!((version, fingerprint), (1, v1.fingerprint));
                assert_eq!(issues.len(), 1, "{issues:?}");
                assert_eq!(
                    (issues[0].path.as_str(), issues[0].reason.as_str()),
                    (path, reason)
                );
            }
            other => panic!("expected FingerprintTaken for {path}, got {other:?}"),
        }
        let checked = r.check(subject, &parsed(&text)).await.expect("check");
        assert_eq!(checked.len(), 1, "{checked:?}");
        assert_eq!(checked[0].path, path);
        assert!(
            checked[0].reason.starts_with(reason),
            "{}",
            checked[0].reason
        );
    }
    assert_eq!(
        r.versions(subject).await.unwrap().len(),
        1,
        "nothing registered"
    );
    assert_eq!(
        r.latest(subject).await.unwrap().json(),
        parsed(&schema(2, "")).json()
    );
}

/// Registrations racing on one subject get distinct, gap-free versions.
pub async fn racing_registrations_get_distinct_versions(r: &dyn SchemaRegistry) {
    r.register(SUBJECT, V1).await.expect("register v1");
    r.set_compatibility(SUBJECT, Compatibility::None)
        .await
        .unwrap();
    let texts: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"type":"record","name":"Viewed","namespace":"conf.v1","fields":[{{"name":"uuid","type":"gfc.avro.UUID"}},{{"name":"f{i}","type":"long","default":{i}}}]}}"#
            )
        })
        .collect();
    let results = futures::future::join_all(texts.iter().map(|t| r.register(SUBJECT, t))).await;
    let registered: Vec<_> = results.into_iter().map(|x| x.expect("registers")).collect();
    let mut versions: Vec<u32> = registered.iter().map(|r| r.version).collect();
    versions.sort();
    assert_eq!(versions, (2..=9).collect::<Vec<_>>());
    let mut ids: Vec<u32> = registered.iter().map(|r| r.id.expect("an id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "every schema has its own id");
}

/// How many registries [`run_all`] makes: one per check.
pub const CHECKS: usize = 5;

/// Every check, each on a fresh registry made by `make` ([`CHECKS`] of them).
pub async fn run_all<R: SchemaRegistry, F: Fn() -> R>(make: F) {
    register_and_look_up(&make()).await;
    compatibility_rules(&make()).await;
    invalid_registrations(&make()).await;
    racing_registrations_get_distinct_versions(&make()).await;
    fingerprint_shared_with_a_different_schema(&make()).await;
}
