//! The compatibility rules, table-driven: each case names a rule, the earlier versions, the
//! new schema, and the exact `(path, reason)` list the registry must answer with.

use silt_registry::Compatibility::{self, *};
use silt_wire::Schema;

fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"E","namespace":"t","fields":[{fields}]}}"#)
}

struct Case {
    name: &'static str,
    mode: Compatibility,
    previous: Vec<String>,
    new: String,
    expect: Vec<(&'static str, &'static str)>,
}

fn case(
    name: &'static str,
    mode: Compatibility,
    previous: &[&str],
    new: &str,
    expect: &[(&'static str, &'static str)],
) -> Case {
    Case {
        name,
        mode,
        previous: previous.iter().map(|f| record(f)).collect(),
        new: record(new),
        expect: expect.to_vec(),
    }
}

const ID: &str = r#"{"name":"id","type":"long"}"#;

fn cases() -> Vec<Case> {
    let opt_s = r#"{"name":"s","type":["null","string"],"default":null}"#;
    let enum_ab = r#"{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"]}}"#;
    let enum_abc = r#"{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B","C"]}}"#;
    let enum_ab_def =
        r#"{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"],"default":"A"}}"#;
    vec![
        // Adding and removing fields.
        case("add field with default", Backward, &[ID], &format!("{ID},{opt_s}"), &[]),
        case("add field without default", Backward, &[ID], &format!(r#"{ID},{{"name":"n","type":"int"}}"#),
            &[("/fields/n", "reader field has no default and the writer does not write it")]),
        case("remove field", Backward, &[&format!(r#"{ID},{{"name":"n","type":"int"}}"#)], ID, &[]),
        case("remove field without default, forward", Forward, &[&format!(r#"{ID},{{"name":"n","type":"int"}}"#)], ID,
            &[("/fields/n", "the previous schema cannot read the new one: reader field has no default and the writer does not write it")]),
        case("remove field with default, forward", Forward, &[&format!(r#"{ID},{{"name":"n","type":"int","default":0}}"#)], ID, &[]),
        case("add field without default, forward", Forward, &[ID], &format!(r#"{ID},{{"name":"n","type":"int"}}"#), &[]),
        case("add field with default, full", Full, &[ID], &format!("{ID},{opt_s}"), &[]),
        case("add field without default, full", Full, &[ID], &format!(r#"{ID},{{"name":"n","type":"int"}}"#),
            &[("/fields/n", "the new schema cannot read the previous one: reader field has no default and the writer does not write it")]),
        case("a type changed both ways, full", Full, &[r#"{"name":"x","type":"int"}"#], r#"{"name":"x","type":"string"}"#,
            &[("/fields/x/type", "the new schema cannot read the previous one: type changed from `int` to `string`, which Avro cannot promote"),
              ("/fields/x/type", "the previous schema cannot read the new one: type changed from `string` to `int`, which Avro cannot promote")]),
        case("remove field without default, full", Full, &[&format!(r#"{ID},{{"name":"n","type":"int"}}"#)], ID,
            &[("/fields/n", "the previous schema cannot read the new one: reader field has no default and the writer does not write it")]),
        case("two offending fields", Backward, &[ID], &format!(r#"{ID},{{"name":"a","type":"int"}},{{"name":"b","type":"string"}}"#),
            &[("/fields/a", "reader field has no default and the writer does not write it"),
              ("/fields/b", "reader field has no default and the writer does not write it")]),
        // Promotions.
        case("int to long", Backward, &[r#"{"name":"x","type":"int"}"#], r#"{"name":"x","type":"long"}"#, &[]),
        case("int to float", Backward, &[r#"{"name":"x","type":"int"}"#], r#"{"name":"x","type":"float"}"#, &[]),
        case("int to double", Backward, &[r#"{"name":"x","type":"int"}"#], r#"{"name":"x","type":"double"}"#, &[]),
        case("long to float", Backward, &[r#"{"name":"x","type":"long"}"#], r#"{"name":"x","type":"float"}"#, &[]),
        case("long to double", Backward, &[r#"{"name":"x","type":"long"}"#], r#"{"name":"x","type":"double"}"#, &[]),
        case("float to double", Backward, &[r#"{"name":"x","type":"float"}"#], r#"{"name":"x","type":"double"}"#, &[]),
        case("string to bytes", Backward, &[r#"{"name":"x","type":"string"}"#], r#"{"name":"x","type":"bytes"}"#, &[]),
        case("bytes to string", Backward, &[r#"{"name":"x","type":"bytes"}"#], r#"{"name":"x","type":"string"}"#, &[]),
        case("long to int narrows", Backward, &[r#"{"name":"x","type":"long"}"#], r#"{"name":"x","type":"int"}"#,
            &[("/fields/x/type", "type changed from `long` to `int`, which Avro cannot promote")]),
        case("int to long, forward", Forward, &[r#"{"name":"x","type":"int"}"#], r#"{"name":"x","type":"long"}"#,
            &[("/fields/x/type", "the previous schema cannot read the new one: type changed from `long` to `int`, which Avro cannot promote")]),
        case("double to float", Backward, &[r#"{"name":"x","type":"double"}"#], r#"{"name":"x","type":"float"}"#,
            &[("/fields/x/type", "type changed from `double` to `float`, which Avro cannot promote")]),
        case("string to int", Backward, &[r#"{"name":"x","type":"string"}"#], r#"{"name":"x","type":"int"}"#,
            &[("/fields/x/type", "type changed from `string` to `int`, which Avro cannot promote")]),
        case("string to array", Backward, &[r#"{"name":"x","type":"string"}"#], r#"{"name":"x","type":{"type":"array","items":"string"}}"#,
            &[("/fields/x/type", "type changed from `string` to `array<string>`")]),
        // Unions.
        case("widen union", Backward, &[r#"{"name":"x","type":["null","int"]}"#], r#"{"name":"x","type":["null","int","string"]}"#, &[]),
        case("narrow union", Backward, &[r#"{"name":"x","type":["null","int","string"]}"#], r#"{"name":"x","type":["null","int"]}"#,
            &[("/fields/x/type", "the writer's union branch `string` has no matching branch in the reader's union [null, int]")]),
        case("narrow union, forward is fine", Forward, &[r#"{"name":"x","type":["null","int","string"]}"#], r#"{"name":"x","type":["null","int"]}"#, &[]),
        case("plain to union", Backward, &[r#"{"name":"x","type":"int"}"#], r#"{"name":"x","type":["null","int"],"default":null}"#, &[]),
        case("union to plain", Backward, &[r#"{"name":"x","type":["null","int"]}"#], r#"{"name":"x","type":"int"}"#,
            &[("/fields/x/type", "the writer may write `null` (a branch of its union [null, int]), which the reader's `int` cannot read")]),
        // Records of one short name in two namespaces: each writer branch reads as its own
        // (it was read as the first one, and `b.Item` lacked `a.Item`'s field).
        case("union of two records of one short name, a field added to the second", Backward,
            &[r#"{"name":"x","type":["null",{"type":"record","name":"Item","namespace":"a","fields":[{"name":"p","type":"int"}]},{"type":"record","name":"Item","namespace":"b","fields":[{"name":"q","type":"string"}]}]}"#],
            r#"{"name":"x","type":["null",{"type":"record","name":"Item","namespace":"a","fields":[{"name":"p","type":"int"}]},{"type":"record","name":"Item","namespace":"b","fields":[{"name":"q","type":"string"},{"name":"r","type":"int","default":0}]}]}"#,
            &[]),
        case("union branch promoted", Backward, &[r#"{"name":"x","type":["null","int"]}"#], r#"{"name":"x","type":["null","long"]}"#, &[]),
        case("plain into union without it", Backward, &[r#"{"name":"x","type":"string"}"#], r#"{"name":"x","type":["null","int"]}"#,
            &[("/fields/x/type", "the reader's union [null, int] has no branch for the writer's `string`")]),
        // Enums.
        case("enum adds symbol", Backward, &[enum_ab], enum_abc, &[]),
        case("enum removes symbol", Backward, &[enum_abc], enum_ab,
            &[("/fields/k/type/symbols", "writer symbol `C` is not in the reader's enum `t.K`, which has no default")]),
        case("enum removes symbol, reader default", Backward, &[enum_abc], enum_ab_def, &[]),
        case("enum adds symbol, forward", Forward, &[enum_ab], enum_abc,
            &[("/fields/k/type/symbols", "the previous schema cannot read the new one: writer symbol `C` is not in the reader's enum `t.K`, which has no default")]),
        case("enum renamed", Backward, &[enum_ab], r#"{"name":"k","type":{"type":"enum","name":"J","symbols":["A","B"]}}"#,
            &[("/fields/k/type", "named type `t.J` cannot read `t.K`: the names differ (an alias would match them)")]),
        case("enum renamed with alias", Backward, &[enum_ab], r#"{"name":"k","type":{"type":"enum","name":"J","aliases":["K"],"symbols":["A","B"]}}"#, &[]),
        // Fixed.
        case("fixed same", Backward, &[r#"{"name":"f","type":{"type":"fixed","name":"F","size":16}}"#], r#"{"name":"f","type":{"type":"fixed","name":"F","size":16}}"#, &[]),
        case("fixed resized", Backward, &[r#"{"name":"f","type":{"type":"fixed","name":"F","size":16}}"#], r#"{"name":"f","type":{"type":"fixed","name":"F","size":8}}"#,
            &[("/fields/f/type/size", "fixed `t.F` changed size from 16 to 8")]),
        case("fixed renamed", Backward, &[r#"{"name":"f","type":{"type":"fixed","name":"F","size":16}}"#], r#"{"name":"f","type":{"type":"fixed","name":"G","size":16}}"#,
            &[("/fields/f/type", "named type `t.G` cannot read `t.F`: the names differ (an alias would match them)")]),
        // Nested records, arrays, maps.
        case("nested record adds field with default", Backward,
            &[r#"{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"z","type":"string"}]}}"#],
            r#"{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"z","type":"string"},{"name":"y","type":"int","default":0}]}}"#, &[]),
        case("nested record adds field without default", Backward,
            &[r#"{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"z","type":"string"}]}}"#],
            r#"{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"z","type":"string"},{"name":"y","type":"int"}]}}"#,
            &[("/fields/a/type/fields/y", "reader field has no default and the writer does not write it")]),
        case("nested field type change", Backward,
            &[r#"{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"z","type":"string"}]}}"#],
            r#"{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"z","type":"boolean"}]}}"#,
            &[("/fields/a/type/fields/z/type", "type changed from `string` to `boolean`, which Avro cannot promote")]),
        case("array items promoted", Backward, &[r#"{"name":"a","type":{"type":"array","items":"int"}}"#], r#"{"name":"a","type":{"type":"array","items":"long"}}"#, &[]),
        case("array items narrowed", Backward, &[r#"{"name":"a","type":{"type":"array","items":"long"}}"#], r#"{"name":"a","type":{"type":"array","items":"int"}}"#,
            &[("/fields/a/type/items", "type changed from `long` to `int`, which Avro cannot promote")]),
        case("map values changed", Backward, &[r#"{"name":"m","type":{"type":"map","values":"string"}}"#], r#"{"name":"m","type":{"type":"map","values":"double"}}"#,
            &[("/fields/m/type/values", "type changed from `string` to `double`, which Avro cannot promote")]),
        case("array of records adds field without default", Backward,
            &[r#"{"name":"a","type":{"type":"array","items":{"type":"record","name":"L","fields":[]}}}"#],
            r#"{"name":"a","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"q","type":"int"}]}}}"#,
            &[("/fields/a/type/items/fields/q", "reader field has no default and the writer does not write it")]),
        // Aliases.
        case("field renamed with alias", Backward, &[r#"{"name":"old","type":"long"}"#], r#"{"name":"new","type":"long","aliases":["old"]}"#, &[]),
        case("field renamed without alias", Backward, &[r#"{"name":"old","type":"long"}"#], r#"{"name":"new","type":"long"}"#,
            &[("/fields/new", "reader field has no default and the writer does not write it")]),
        // Decimals.
        case("decimal precision grows", Backward,
            &[r#"{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}"#],
            r#"{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}}"#, &[]),
        case("decimal scale changes", Backward,
            &[r#"{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}"#],
            r#"{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":3}}"#,
            &[("/fields/d/type", "decimal changed from (9, 2) to (9, 3): the scale must stay and the precision may only grow")]),
        // Transitive rules.
        case("backward is checked against the latest only", Backward,
            &[&format!(r#"{ID},{{"name":"n","type":"int"}}"#), ID], &format!(r#"{ID},{{"name":"n","type":"string","default":""}}"#), &[]),
        case("backward transitive sees every version", BackwardTransitive,
            &[&format!(r#"{ID},{{"name":"n","type":"int"}}"#), ID], &format!(r#"{ID},{{"name":"n","type":"string","default":""}}"#),
            &[("/fields/n/type", "type changed from `int` to `string`, which Avro cannot promote (against version 1)")]),
        case("forward transitive sees every version", ForwardTransitive,
            &[&format!(r#"{ID},{{"name":"n","type":"int"}}"#), &format!(r#"{ID},{{"name":"n","type":"int","default":1}}"#)], ID,
            &[("/fields/n", "the previous schema cannot read the new one: reader field has no default and the writer does not write it (against version 1)")]),
        case("full transitive", FullTransitive, &[ID, &format!("{ID},{opt_s}")], &format!("{ID},{opt_s}"), &[]),
        case("timestamp unit changes", Backward,
            &[r#"{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}"#],
            r#"{"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}}"#,
            &[("/fields/t/type", "the unit changed from timestamp-millis to timestamp-micros: values written before would read 1000 times off (add a field for the new unit instead)")]),
        case("time unit changes with the int promoted to long", Backward,
            &[r#"{"name":"t","type":{"type":"int","logicalType":"time-millis"}}"#],
            r#"{"name":"t","type":{"type":"long","logicalType":"time-micros"}}"#,
            &[("/fields/t/type", "the unit changed from time-millis to time-micros: values written before would read 1000 times off (add a field for the new unit instead)")]),
        case("a plain long becomes a timestamp", Backward, &[r#"{"name":"t","type":"long"}"#],
            r#"{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}"#, &[]),
        case("timestamp becomes local, same unit", Full,
            &[r#"{"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}}"#],
            r#"{"name":"t","type":{"type":"long","logicalType":"local-timestamp-micros"}}"#, &[]),
        case("none accepts anything", None, &[ID], r#"{"name":"id","type":"string"}"#, &[]),
        case("first version is always fine", Backward, &[], ID, &[]),
    ]
}

#[test]
fn compatibility_table() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let new = Schema::parse(&c.new).unwrap_or_else(|e| panic!("{}: new schema: {e}", c.name));
        let previous: Vec<Schema> = c
            .previous
            .iter()
            .map(|p| Schema::parse(p).unwrap())
            .collect();
        let refs: Vec<&Schema> = previous.iter().collect();
        let got: Vec<(String, String)> = c
            .mode
            .check(&new, &refs)
            .into_iter()
            .map(|i| (i.path, i.reason))
            .collect();
        let want: Vec<(String, String)> = c
            .expect
            .iter()
            .map(|(p, r)| (p.to_string(), r.to_string()))
            .collect();
        if got != want {
            failures.push(format!(
                "{} ({}):\n  got  {got:?}\n  want {want:?}",
                c.name, c.mode
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rule_names_parse() {
    for m in Compatibility::ALL {
        assert_eq!(m.as_str().parse::<Compatibility>().unwrap(), m);
    }
    assert!("sideways"
        .parse::<Compatibility>()
        .unwrap_err()
        .contains("BACKWARD"));
}
