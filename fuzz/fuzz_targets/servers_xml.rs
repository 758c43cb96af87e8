//! `config::servers::parse`, the reader of servers.xml.config: never a panic
//! on any text; what it accepts has non-empty unique names and http(s) URIs;
//! a well-formed file of valid entries is read back exactly, whatever its
//! attribute values hold once escaped.

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use multiserver_upload::config::servers;

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(String),
    Built(File),
}

#[derive(Debug, Arbitrary)]
struct File {
    declaration: bool,
    comment: Option<String>,
    entries: Vec<Entry>,
    /// Something more inside `<Servers>`: an unknown element or text.
    extra: Option<String>,
}

#[derive(Debug, Arbitrary)]
struct Entry {
    name: String,
    uri: Uri,
    key: String,
    /// Attribute order: name, uri, key rotated by this.
    rotate: u8,
    self_closing: bool,
}

#[derive(Debug, Arbitrary)]
enum Uri {
    Http {
        https: bool,
        host: Vec<u8>,
        port: Option<u16>,
        path: String,
    },
    Raw(String),
}

impl Uri {
    fn render(&self) -> String {
        match self {
            Uri::Http {
                https,
                host,
                port,
                path,
            } => {
                let host: String = host
                    .iter()
                    .map(|b| {
                        char::from(b"abcdefghijklmnopqrstuvwxyz0123456789.-"[usize::from(*b) % 38])
                    })
                    .collect();
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let scheme = if *https { "https" } else { "http" };
                format!("{scheme}://{host}{port}/{path}")
            }
            Uri::Raw(s) => s.clone(),
        }
    }
}

fn attr(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn plain_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn valid_uri(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fuzz_target!(|input: Input| {
    let path = Path::new("servers.xml.config");
    let (text, expected) = match input {
        Input::Raw(text) => (text, None),
        Input::Built(file) => {
            let mut text = String::new();
            if file.declaration {
                text.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n");
            }
            text.push_str("<Servers>\n");
            let mut readable = file.extra.is_none();
            if let Some(c) = &file.comment {
                readable &= !c.contains("--") && !c.ends_with('-') && plain_text(c);
                text.push_str(&format!("  <!--{c}-->\n"));
            }
            let mut want = Vec::new();
            let mut names = HashSet::new();
            for e in &file.entries {
                let uri = e.uri.render();
                let mut attrs = [
                    format!("Name=\"{}\"", attr(&e.name)),
                    format!("Uri=\"{}\"", attr(&uri)),
                    format!("SecurityKey=\"{}\"", attr(&e.key)),
                ];
                attrs.rotate_left(usize::from(e.rotate % 3));
                let close = if e.self_closing { " />" } else { "></Server>" };
                text.push_str(&format!("  <Server {}{close}\n", attrs.join(" ")));
                readable &= plain_text(&e.name) && plain_text(&uri) && plain_text(&e.key);
                readable &= !e.name.trim().is_empty() && names.insert(e.name.clone());
                readable &= valid_uri(&uri);
                want.push((e.name.clone(), uri, e.key.clone()));
            }
            if let Some(extra) = &file.extra {
                text.push_str(extra);
            }
            text.push_str("</Servers>\n");
            (text, readable.then_some(want))
        }
    };
    let result = servers::parse(path, &text);
    if let Ok(entries) = &result {
        let mut names = HashSet::new();
        for e in entries {
            assert!(!e.name.trim().is_empty(), "{text:?}");
            assert!(names.insert(&e.name), "{text:?}: {} twice", e.name);
            assert!(valid_uri(&e.uri), "{text:?}: {}", e.uri);
        }
    }
    if let Some(want) = expected {
        let got: Vec<(String, String, String)> = match result {
            Ok(entries) => entries
                .into_iter()
                .map(|e| (e.name, e.uri, e.security_key))
                .collect(),
            Err(e) => panic!("{text:?} refused: {e}"),
        };
        assert_eq!(got, want, "{text:?}");
    }
});
