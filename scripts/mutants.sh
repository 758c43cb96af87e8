#!/usr/bin/env bash
# Mutation testing of the pure-logic files (parsers and checks) with unit
# tests alone: cargo-mutants changes one operator, return value or match arm
# at a time and runs `cargo test --lib`; a mutant that no test notices is a
# behaviour nothing pins down. Not part of scripts/test.sh or CI (one to
# four hours on 2 cores for every file); run it before resolving an issue
# that touches these files. Equivalent mutants are kept out in .cargo/mutants.toml, each with
# its reason.
#
#   scripts/mutants.sh                        every file below
#   scripts/mutants.sh src/storage/sniff.rs   only the files named
#
# Results go to mutants.out/ (caught.txt, missed.txt, timeout.txt,
# unviable.txt, one log per mutant under log/; docs/testing.md says how
# to read them); the exit status is 2 when a mutant was missed, 3 when
# none was but some timed out (a walk made to loop forever).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked

files=(
    src/images/frames.rs
    src/images/strip.rs
    src/replication/answer.rs
    src/repair/wire.rs
    src/storage/sniff.rs
    src/storage/path.rs
    src/storage/variant_path.rs
    src/index/digest.rs
    src/index/tree.rs
    src/http/params.rs
    src/config/servers.rs
    src/config/cors.rs
    src/auth/token.rs
    src/auth/mod.rs
    src/auth/keys.rs
    src/journal/mod.rs
)
if [ "$#" -gt 0 ]; then
    files=("$@")
fi

args=()
for file in "${files[@]}"; do
    args+=(--file "$file")
done
# Of the journal, only how lines are read and counted; its locking and
# renaming are the integration tests' work. Of auth, the rights table, keys
# by role and tokens; the spent-token counts (src/auth/spent.rs) are a
# database, the integration tests' work too.
journal='\b(JournalEntry::attempted|Counters::\w+|Line::count|Journal::read_lines|ends_with_newline)\b'

exec nice -n 10 cargo mutants "${args[@]}" \
    --re "^src/(images|index|replication|repair|storage|http|config|auth)/|$journal" \
    --cargo-arg=--lib --jobs 1 --timeout 60
