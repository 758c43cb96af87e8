//! `StoredPath::parse`, the gate of `sync` and of stored-file reads: never a
//! panic; accepted exactly when the independent oracle says the string is of
//! the stored-file pattern; an accepted path prints back as the same string
//! and maps to four plain path components below `data_dir`.

#![no_main]

use std::path::Component;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use multiserver_upload::storage::StoredPath;
use multiserver_upload_fuzz::{PathInput, is_stored_path};

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(String),
    Built(PathInput),
}

fuzz_target!(|input: Input| {
    let s = match input {
        Input::Raw(s) => s,
        Input::Built(p) => p.render(),
    };
    let parsed = StoredPath::parse(&s);
    assert_eq!(parsed.is_some(), is_stored_path(&s), "{s:?}");
    let Some(path) = parsed else {
        return;
    };
    assert_eq!(path.to_string(), s);
    assert_eq!(StoredPath::parse(&path.to_string()), Some(path.clone()));
    let parts: Vec<String> = path
        .to_relative_path()
        .components()
        .map(|c| match c {
            Component::Normal(p) => p.to_string_lossy().into_owned(),
            other => panic!("{s:?} maps to {other:?}"),
        })
        .collect();
    assert_eq!(parts.len(), 4, "{s:?}");
    assert_eq!(parts.join("/"), s);
    assert_eq!(parts[3], path.file_name());
    assert!(s.ends_with(&format!(".{}", path.image_type().extension())));
});
