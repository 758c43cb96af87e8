//! The README stays a front page a newcomer can read through, and every page
//! of `docs/` can be found from it: a page not in its table is a page nobody
//! opens. The test command stays the README's second command (`.ci/run` runs
//! it as the README says).

use std::path::Path;

/// A few screens: what it is, the two commands, the tour, the table.
const README_MAX_LINES: usize = 150;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_readme_fits_on_a_few_screens_and_starts_with_the_two_commands() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; move detail into docs/"
    );
    let commands = readme
        .find("## Two commands")
        .expect("a `## Two commands` section");
    let first_other_section = readme
        .match_indices("\n## ")
        .map(|(at, _)| at)
        .find(|at| *at > commands);
    let section = &readme[commands..first_other_section.unwrap_or(readme.len())];
    assert!(section.contains("\ncargo run --release "), "{section}");
    assert!(section.contains("\nscripts/test.sh "), "{section}");
    assert!(
        read(".ci/run").contains("exec bash scripts/test.sh"),
        "CI no longer runs the README's test command"
    );
}

#[test]
fn every_page_of_docs_is_in_the_readmes_table() {
    let readme = read("README.md");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "docs/ has no page");
    let missing: Vec<&String> = pages
        .iter()
        .filter(|page| !readme.contains(&format!("| [docs/{page}](docs/{page}) |")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the README's table of docs/: {missing:?}"
    );
}
