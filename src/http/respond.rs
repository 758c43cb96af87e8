//! The answer envelope of the original tool: `<resp>…</resp>` in XML (the
//! default) or `{"resp":{…}}` in JSON, chosen by `format`.
//!
//! Answers are built once as an ordered JSON map and rendered to either form,
//! so the two can never disagree: objects become elements, arrays become
//! repeated elements named by the singular of their key (`files` → `file`),
//! booleans and `success` are `1`/`0`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Xml,
    Json,
}

impl Format {
    /// `format=json` (any case) is JSON; anything else is the original XML.
    pub fn from_param(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Xml,
        }
    }
}

/// Renders `resp` as the whole answer, with `status`. Answers are about one
/// request (links, counts, errors): never cached, never sniffed.
pub fn answer(format: Format, status: StatusCode, resp: Map<String, Value>) -> Response {
    let resp = Value::Object(resp);
    let (content_type, body) = match format {
        Format::Json => (
            "application/json; charset=utf-8",
            serde_json::json!({ "resp": resp }).to_string(),
        ),
        Format::Xml => {
            let mut out = String::with_capacity(256);
            element(&mut out, "resp", &resp);
            ("text/xml; charset=utf-8", out)
        }
    };
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            let item = name.strip_suffix('s').unwrap_or("item");
            for v in items {
                element(out, item, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in map {
                element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Bool(b) => out.push_str(&format!("<{name}>{}</{name}>", u8::from(*b))),
        Value::Number(n) => out.push_str(&format!("<{name}>{n}</{name}>")),
        Value::String(s) => {
            out.push_str(&format!("<{name}>"));
            out.push_str(&quick_xml::escape::escape(xml_chars(s).as_str()));
            out.push_str(&format!("</{name}>"));
        }
    }
}

/// XML 1.0 cannot carry most control characters, even escaped, nor U+FFFE
/// and U+FFFF; .NET's reader (the original's clients) throws on them, and a
/// client that retries would store its file twice. The other Unicode
/// noncharacters are replaced too: they are never text.
fn xml_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            let control = c.is_control() && !matches!(c, '\t' | '\n' | '\r');
            let code = u32::from(c);
            let noncharacter = (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE;
            if control || noncharacter {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn original_shapes() {
        let resp = || map(json!({"success": 1, "link": "http://i-1.xx.com/2014/4/15/a.jpg"}));
        assert_eq!(
            body(answer(Format::Xml, StatusCode::OK, resp())).await,
            "<resp><success>1</success><link>http://i-1.xx.com/2014/4/15/a.jpg</link></resp>"
        );
        assert_eq!(
            body(answer(Format::Json, StatusCode::OK, resp())).await,
            r#"{"resp":{"success":1,"link":"http://i-1.xx.com/2014/4/15/a.jpg"}}"#
        );
    }

    #[tokio::test]
    async fn lists_escaping_and_control_characters() {
        let resp = map(json!({"success": 0, "files": [{"name": "<a&b>\u{1}.jpg", "ok": true}]}));
        assert_eq!(
            body(answer(Format::Xml, StatusCode::OK, resp)).await,
            "<resp><success>0</success><files><file><name>&lt;a&amp;b&gt;\u{FFFD}.jpg</name><ok>1</ok></file></files></resp>"
        );
        assert_eq!(Format::from_param(Some("JSON")), Format::Json);
        let resp = map(json!({"error": "a\u{FFFE}b\u{FFFF}c\u{FDD0}d\u{10FFFF}e\u{1FFFE}"}));
        assert_eq!(
            body(answer(Format::Xml, StatusCode::OK, resp)).await,
            "<resp><error>a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e\u{FFFD}</error></resp>"
        );
        assert_eq!(Format::from_param(Some("yaml")), Format::Xml);
    }
}
