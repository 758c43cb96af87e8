//! Reading what another server answered, without trusting it: at most a few
//! KiB of a body is read (then the connection is dropped), a success is only
//! the service's own envelope, and any text taken from the answer has its
//! control characters escaped before it reaches a log line, the journal or
//! an answer of ours (a peer's `\n` must not forge a log line, nor its ESC
//! drive an operator's terminal).
//!
//! Shared by the replicator (a peer's `sync` answer) and the `replay --url`
//! command (a server's `uploaderrors` answer).

use serde_json::Value;

/// The response header in which every `do.ashx` answer names the server
/// that gave it (its `server_name`): a copy counts only when it names the
/// peer it was sent to, so a Uri that leads elsewhere (back to this server,
/// to another peer) never passes for a stored copy.
pub const SERVER_HEADER: &str = "x-multiserver-server";

/// Reads at most `limit` bytes of `response`'s body, calling `progress` for
/// every chunk, then drops the response: an unfinished body closes its
/// connection instead of being read to the end.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    mut progress: impl FnMut(),
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < limit {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        progress();
        let take = chunk.len().min(limit - body.len());
        body.extend_from_slice(&chunk[..take]);
    }
    Ok(body)
}

/// The `resp` object of a JSON envelope `{"resp":{…}}`, if `body` is one.
pub fn envelope(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Object(mut outer) => match outer.remove("resp")? {
            Value::Object(resp) => Some(resp),
            _ => None,
        },
        _ => None,
    }
}

/// `{"resp":{"success":1,…}}`: the service's own success answer.
pub fn is_success(resp: &serde_json::Map<String, Value>) -> bool {
    resp.get("success").and_then(Value::as_u64) == Some(1)
}

/// The error an answer gives: the envelope's `error` (JSON or XML) if there
/// is one, else the body's first characters; escaped, at most `limit`
/// characters.
pub fn error_text(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let from_json = envelope(body).and_then(|resp| match resp.get("error") {
        Some(Value::String(e)) => Some(e.clone()),
        _ => None,
    });
    let from_xml = || {
        text.split_once("<error>")
            .and_then(|(_, rest)| rest.split_once("</error>"))
            .map(|(e, _)| e.to_owned())
    };
    let inner = from_json.or_else(from_xml);
    let chosen = inner.as_deref().unwrap_or(&text).trim();
    escape_controls(&chosen.chars().take(limit).collect::<String>())
}

/// `text` with every control character written as a Rust escape (`\n`,
/// `\u{1b}`), and so are the Unicode line separators and the bidirectional
/// overrides, which can reorder what a terminal shows.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response whose body arrives in `chunks`.
    fn response(chunks: Vec<&'static [u8]>) -> reqwest::Response {
        let chunks = chunks.into_iter().map(Ok::<_, std::io::Error>);
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        axum::http::Response::new(body).into()
    }

    /// Reads `chunks` with `limit`: the body kept and the chunks pulled.
    async fn read(chunks: &[&'static [u8]], limit: usize) -> (Vec<u8>, usize) {
        let mut pulled = 0;
        let body = read_limited(response(chunks.to_vec()), limit, || pulled += 1)
            .await
            .expect("read");
        (body, pulled)
    }

    #[tokio::test]
    async fn at_most_limit_bytes_are_read_then_reading_stops() {
        let chunks: [&[u8]; 4] = [b"abc", b"def", b"ghi", b"jkl"];
        assert_eq!(read(&chunks, 5).await, (b"abcde".to_vec(), 2));
        assert_eq!(read(&chunks, 6).await, (b"abcdef".to_vec(), 2));
        assert_eq!(read(&chunks, 0).await, (Vec::new(), 0));
        assert_eq!(read(&chunks, 100).await, (b"abcdefghijkl".to_vec(), 4));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("a\nINFO forged\r\x1b[31m\u{202e}b 中"),
            "a\\nINFO forged\\r\\u{1b}[31m\\u{202e}b 中"
        );
    }

    #[test]
    fn only_the_envelope_with_success_1_is_a_success() {
        let ok = |body: &str| envelope(body.as_bytes()).is_some_and(|r| is_success(&r));
        assert!(ok(r#"{"resp":{"success":1,"path":"2014/4/15/a.jpg"}}"#));
        assert!(!ok(r#"{"resp":{"success":0}}"#));
        assert!(!ok(r#"{"resp":{"success":"1"}}"#));
        assert!(!ok("<resp><success>1</success></resp>"));
        assert!(!ok("<html>ok</html>"));
        assert!(!ok(r#"{"success":1}"#));
        assert!(!ok(""));
    }

    #[test]
    fn error_text_prefers_the_envelope_error() {
        assert_eq!(
            error_text(br#"{"resp":{"success":0,"error":"bad\npath"}}"#, 100),
            "bad\\npath"
        );
        assert_eq!(
            error_text(b"<resp><success>0</success><error>full</error></resp>", 100),
            "full"
        );
        assert_eq!(error_text(b"  <html>\x1b oops", 8), "<html>\\u{1b} ");
    }
}
