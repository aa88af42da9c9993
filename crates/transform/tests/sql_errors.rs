//! What an analyst reads when a statement over silt's session fails.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use silt_transform::{session, sql_error_text};

async fn error_of(sql: &str) -> String {
    let ctx = session();
    let batch = RecordBatch::try_from_iter([
        ("productId", Arc::new(Int64Array::from(vec![7, 8])) as _),
        (
            "dt",
            Arc::new(StringArray::from(vec!["2025-11-25", "2025-11-26"])) as _,
        ),
    ])
    .unwrap();
    ctx.register_batch("clickstream", batch).unwrap();
    let result = match ctx.sql(sql).await {
        Ok(df) => df.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    sql_error_text(&result.expect_err(sql).to_string())
}

#[tokio::test]
async fn a_name_in_the_wrong_case_is_not_told_to_turn_off_a_setting_silt_has_off() {
    let text = error_of("SELECT productid FROM clickstream").await;
    assert!(text.contains("productId"), "{text}");
    assert!(text.contains("double quotes"), "{text}");
    assert!(!text.contains("enable_ident_normalization"), "{text}");
}

#[tokio::test]
async fn an_unquoted_date_compared_with_a_partition_says_to_quote_it() {
    let text = error_of("SELECT count(*) FROM clickstream WHERE dt = 2025-11-25").await;
    assert!(text.contains("Cannot cast string '2025-11-25'"), "{text}");
    assert!(
        text.contains("quote the value you compare it with, as in dt = '2025-11-25'"),
        "{text}"
    );
    // Other errors are left as DataFusion words them.
    let text = error_of("SELECT nope(1)").await;
    assert!(!text.contains("quote the value"), "{text}");
}

#[tokio::test]
async fn a_statement_that_does_not_parse_is_told_once_as_a_syntax_error() {
    let expected =
        "SQL syntax error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1";
    assert_eq!(error_of("SELEC 1").await, expected);
    // The CLI's one line adds the error's cause, the parser's own words for the same thing.
    let chained = "SQL error: ParserError(\"Expected: an SQL statement, found: SELEC at Line: 1, Column: 1\"): sql parser error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1";
    assert_eq!(sql_error_text(chained), expected);
    let text = error_of("SELECT 'abc").await;
    assert!(
        text.starts_with("SQL syntax error: Unterminated string literal"),
        "{text}"
    );
    assert!(!text.contains("TokenizerError("), "{text}");
    let chained = "SQL error: TokenizerError(\"Unterminated string literal at Line: 1, Column: 8\"): sql parser error: Unterminated string literal at Line: 1, Column: 8";
    assert_eq!(
        sql_error_text(chained),
        "SQL syntax error: Unterminated string literal at Line: 1, Column: 8"
    );
}

#[tokio::test]
async fn two_statements_in_one_are_told_to_go_one_at_a_time() {
    let text = error_of("SELECT 1; SELECT 2").await;
    assert!(
        text.contains("one statement at a time: `silt query` runs one (`silt sql` takes several"),
        "{text}"
    );
}
