//! URL and referrer functions, so that pulling `utm_source` or a search keyword out of a URL
//! is one readable call instead of a wall of `split_part` and `substring`.
//!
//! | function | answer |
//! |---|---|
//! | `url_param(url, name)` | the first value of a query parameter, decoded (`+` and `%XX`), or NULL |
//! | `url_host(url)` | the host, lower-case, or NULL |
//! | `url_path(url)` | the path, or NULL |
//! | `search_engine(referrer)` | `google`, `bing`, `yahoo`, `duckduckgo`, `baidu`, `yandex`, `ecosia`, or NULL |
//! | `search_keyword(referrer)` | the search terms of a search-engine referrer, or NULL |
//!
//! Relative URLs (`/p/123?utm_source=x`) have a path and parameters but no host; text that is
//! not a URL gives NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

const RELATIVE_BASE: &str = "http://relative.invalid";

fn parse(text: &str) -> Option<url::Url> {
    let t = text.trim();
    match url::Url::parse(t) {
        Ok(u) if u.has_host() => Some(u),
        Ok(_) => None,
        Err(_) if t.starts_with('/') => url::Url::parse(RELATIVE_BASE).and_then(|b| b.join(t)).ok(),
        Err(_) => None,
    }
}

/// The host of an absolute URL (a relative one has none).
fn host(u: &url::Url) -> Option<String> {
    u.host_str()
        .filter(|h| *h != "relative.invalid")
        .map(|h| h.to_ascii_lowercase())
}

fn param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The engine a referrer came from, and the query parameter its search terms travel in.
fn engine(u: &url::Url) -> Option<(&'static str, &'static str)> {
    let host = u.host_str()?.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let has = |name: &str| labels.contains(&name);
    if has("google") {
        Some(("google", "q"))
    } else if has("bing") {
        Some(("bing", "q"))
    } else if has("yahoo") {
        Some(("yahoo", "p"))
    } else if has("duckduckgo") {
        Some(("duckduckgo", "q"))
    } else if has("baidu") {
        Some(("baidu", "wd"))
    } else if has("yandex") {
        Some(("yandex", "text"))
    } else if has("ecosia") {
        Some(("ecosia", "q"))
    } else {
        None
    }
}

fn strings(v: &ColumnarValue, rows: usize) -> datafusion::error::Result<ArrayRef> {
    let a = v.clone().into_array(rows)?;
    Ok(if a.data_type() == &DataType::Utf8 {
        a
    } else {
        arrow::compute::cast(&a, &DataType::Utf8)?
    })
}

fn rows_of(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

fn unary(name: &str, f: fn(&url::Url) -> Option<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let a = strings(&args[0], rows)?;
            let a = a.as_any().downcast_ref::<StringArray>().expect("utf8");
            let mut out = StringBuilder::with_capacity(rows, rows * 8);
            for i in 0..rows {
                match (!a.is_null(i))
                    .then(|| parse(a.value(i)))
                    .flatten()
                    .and_then(|u| f(&u))
                {
                    Some(v) => out.append_value(v),
                    None => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

fn url_param_udf() -> ScalarUDF {
    create_udf(
        "url_param",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let (u, n) = (strings(&args[0], rows)?, strings(&args[1], rows)?);
            let u = u.as_any().downcast_ref::<StringArray>().expect("utf8");
            let n = n.as_any().downcast_ref::<StringArray>().expect("utf8");
            let mut out = StringBuilder::with_capacity(rows, rows * 8);
            for i in 0..rows {
                let v = (!u.is_null(i) && !n.is_null(i))
                    .then(|| parse(u.value(i)))
                    .flatten()
                    .and_then(|url| param(&url, n.value(i)));
                match v {
                    Some(v) => out.append_value(v),
                    None => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// Registers every function in a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(url_param_udf());
    ctx.register_udf(unary("url_host", host));
    ctx.register_udf(unary("url_path", |u| Some(u.path().to_string())));
    ctx.register_udf(unary("search_engine", |u| {
        engine(u).map(|(e, _)| e.to_string())
    }));
    ctx.register_udf(unary("search_keyword", |u| {
        let (_, p) = engine(u)?;
        param(u, p).filter(|k| !k.trim().is_empty())
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one(sql: &str) -> String {
        let ctx = crate::session();
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let c = b[0].column(0);
        let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        if c.is_null(0) {
            "NULL".into()
        } else {
            c.value(0).to_string()
        }
    }

    #[tokio::test]
    async fn url_functions() {
        let u = "'https://www.Shop.com/p/123?utm_source=news%20letter&utm_medium=email&x=a+b'";
        assert_eq!(
            one(&format!("SELECT url_param({u}, 'utm_source')")).await,
            "news letter"
        );
        assert_eq!(one(&format!("SELECT url_param({u}, 'x')")).await, "a b");
        assert_eq!(
            one(&format!("SELECT url_param({u}, 'utm_term')")).await,
            "NULL"
        );
        assert_eq!(one(&format!("SELECT url_host({u})")).await, "www.shop.com");
        assert_eq!(one(&format!("SELECT url_path({u})")).await, "/p/123");
        assert_eq!(
            one("SELECT url_param('/sale?utm_campaign=noon', 'utm_campaign')").await,
            "noon"
        );
        assert_eq!(one("SELECT url_param(NULL, 'a')").await, "NULL");
        assert_eq!(one("SELECT url_host('/p/1?a=b')").await, "NULL");
        assert_eq!(one("SELECT url_path('not a url')").await, "NULL");
    }

    #[tokio::test]
    async fn referrer_functions() {
        assert_eq!(
            one("SELECT search_keyword('https://www.google.co.uk/search?q=red+shoes&hl=en')").await,
            "red shoes"
        );
        assert_eq!(
            one("SELECT search_engine('https://www.google.co.uk/search?q=red+shoes')").await,
            "google"
        );
        assert_eq!(
            one("SELECT search_keyword('https://search.yahoo.com/search?p=boots')").await,
            "boots"
        );
        assert_eq!(
            one("SELECT search_keyword('https://www.baidu.com/s?wd=%E9%9E%8B')").await,
            "鞋"
        );
        assert_eq!(
            one("SELECT search_keyword('https://example.com/?q=not-a-search')").await,
            "NULL"
        );
        assert_eq!(one("SELECT search_engine('not a url')").await, "NULL");
    }
}
