//! Parsing Canonical Form and fingerprints against the Avro specification and against
//! schemas fingerprinted by another implementation (fastavro, in `shared/testdata`).

use std::path::PathBuf;

use silt_wire::Schema;

fn testdata() -> PathBuf {
    silt_wire::testing::clickstream_small()
}

#[test]
fn testdata_fingerprints_are_reproduced_exactly() {
    let dir = testdata();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for v in ["v1", "v2"] {
        let text = std::fs::read_to_string(dir.join(format!("schemas/{v}.avsc"))).unwrap();
        let schema = Schema::parse(&text).unwrap();
        assert_eq!(
            schema.fingerprint().to_hex(),
            expected["fingerprints"][v].as_str().unwrap(),
            "{v}: canonical form {}",
            schema.canonical_form()
        );
    }
}

#[test]
fn a_schema_file_saved_with_a_byte_order_mark_reads_and_fingerprints_as_without() {
    let dir = testdata();
    let text = std::fs::read_to_string(dir.join("schemas/v2.avsc")).unwrap();
    let marked = Schema::parse(&format!("\u{feff}{text}")).unwrap();
    let plain = Schema::parse(&text).unwrap();
    assert_eq!(marked.fingerprint(), plain.fingerprint());
    assert_eq!(marked.json(), plain.json());
}

fn pcf(text: &str) -> String {
    Schema::parse(text).unwrap().canonical_form().to_string()
}

#[test]
fn primitives_reduce_to_their_names() {
    assert_eq!(pcf(r#""int""#), r#""int""#);
    assert_eq!(pcf(r#"{"type":"int"}"#), r#""int""#);
    assert_eq!(
        pcf(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
        r#""long""#
    );
    assert_eq!(
        pcf(r#"{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}"#),
        r#""bytes""#
    );
    assert_eq!(
        pcf(r#"{"type":"string","logicalType":"uuid"}"#),
        r#""string""#
    );
}

#[test]
fn fixed_with_logical_type_keeps_name_and_size_only() {
    assert_eq!(
        pcf(
            r#"{"type":"fixed","name":"D","namespace":"n","size":8,"logicalType":"decimal","precision":10,"scale":2,"aliases":["x"]}"#
        ),
        r#"{"name":"n.D","type":"fixed","size":8}"#
    );
}

#[test]
fn nested_names_inherit_the_enclosing_namespace_and_repeats_are_names() {
    let text = r#"{
      "type": "record", "name": "Order", "namespace": "shop.v1", "doc": "stripped",
      "aliases": ["OldOrder"],
      "fields": [
        {"name": "id", "type": "long", "doc": "stripped", "default": 0, "order": "descending"},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"], "default": "NEW"}},
        {"name": "prev", "type": ["null", "Status"]},
        {"name": "lines", "type": {"type": "array", "items": {
            "type": "record", "name": "Line", "fields": [
              {"name": "sku", "type": "string"},
              {"name": "price", "type": {"type": "record", "name": "Money", "namespace": "money",
                 "fields": [{"name": "cents", "type": "long"}, {"name": "cur", "type": {"type": "fixed", "name": "Cur", "size": 3}}]}}
            ]}}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "int", "money.Cur"]}},
        {"name": "next", "type": ["null", "Order"], "default": null}
      ]
    }"#;
    assert_eq!(
        pcf(text),
        concat!(
            r#"{"name":"shop.v1.Order","type":"record","fields":["#,
            r#"{"name":"id","type":"long"},"#,
            r#"{"name":"status","type":{"name":"shop.v1.Status","type":"enum","symbols":["NEW","PAID"]}},"#,
            r#"{"name":"prev","type":["null","shop.v1.Status"]},"#,
            r#"{"name":"lines","type":{"type":"array","items":{"name":"shop.v1.Line","type":"record","fields":["#,
            r#"{"name":"sku","type":"string"},"#,
            r#"{"name":"price","type":{"name":"money.Money","type":"record","fields":[{"name":"cents","type":"long"},"#,
            r#"{"name":"cur","type":{"name":"money.Cur","type":"fixed","size":3}}]}}]}}},"#,
            r#"{"name":"attrs","type":{"type":"map","values":["null","int","money.Cur"]}},"#,
            r#"{"name":"next","type":["null","shop.v1.Order"]}]}"#
        )
    );
}

#[test]
fn dotted_names_set_their_own_namespace() {
    assert_eq!(
        pcf(
            r#"{"type":"record","name":"a.b.R","namespace":"ignored","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}}]}"#
        ),
        r#"{"name":"a.b.R","type":"record","fields":[{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X"]}}]}"#
    );
}

#[test]
fn standard_types_are_inlined_and_fingerprint_like_the_written_out_schema() {
    let by_ref = Schema::parse(
        r#"{"type":"record","name":"E","namespace":"x","fields":[{"name":"uuid","type":"gfc.avro.UUID"},{"name":"price","type":"gfc.avro.Money"}]}"#,
    )
    .unwrap();
    assert!(by_ref.json().contains(r#""size":16"#), "{}", by_ref.json());
    let written = Schema::parse(by_ref.json()).unwrap();
    assert_eq!(by_ref.fingerprint(), written.fingerprint());
    assert!(by_ref
        .canonical_form()
        .contains(r#"{"name":"gfc.avro.UUID","type":"fixed","size":16}"#));
    assert!(by_ref
        .canonical_form()
        .contains(r#"{"name":"amount","type":"bytes"}"#));
}

#[test]
fn invalid_schemas_are_refused_with_a_path() {
    let cases = [
        (
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"nope"}]}"#,
            "/fields/a/type",
            "unknown type",
        ),
        (
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}"#,
            "/fields/a/default",
            "does not match",
        ),
        (
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":["int","int"]}]}"#,
            "/fields/a/type",
            "two branches",
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A","A"]}"#,
            "/symbols",
            "twice",
        ),
        (r#"{"type":"fixed","name":"F"}"#, "", "size"),
        (
            r#"{"type":"record","name":"1R","fields":[]}"#,
            "",
            "valid Avro name",
        ),
        (
            r#"{"type":"bytes","logicalType":"decimal","precision":2,"scale":3}"#,
            "",
            "scale",
        ),
        (r#"not json"#, "", "not JSON"),
    ];
    for (text, path, words) in cases {
        match Schema::parse(text) {
            Err(silt_wire::Error::InvalidSchema { path: p, reason }) => {
                assert_eq!(p, path, "{text}");
                assert!(reason.contains(words), "{text}: {reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}
