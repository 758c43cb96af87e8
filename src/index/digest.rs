//! The digest of a set of index entries: the XOR of one SHA-256 per entry.
//! XOR makes it independent of order and lets one entry be added or taken
//! out without looking at the others; an entry's hash covers its name and
//! content hash (a file) or its name alone (a tombstone), so a swapped file
//! or a missed delete changes the digest, not only a missing name.

use std::fmt;

use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of_file(name: &str, sha256: &str) -> Self {
        Self(
            Sha256::new()
                .chain_update(b"file\0")
                .chain_update(name)
                .chain_update(b"\0")
                .chain_update(sha256.to_ascii_lowercase())
                .finalize()
                .into(),
        )
    }

    pub fn of_tombstone(name: &str) -> Self {
        Self(
            Sha256::new()
                .chain_update(b"tombstone\0")
                .chain_update(name)
                .finalize()
                .into(),
        )
    }

    /// Adds or takes out (the same operation) `other`.
    pub fn toggle(&mut self, other: Digest) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a ^= b;
        }
    }

    pub fn parse(hex: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_and_taking_out_undoes_adding() {
        let a = Digest::of_file("a.jpg", &"00".repeat(32));
        let b = Digest::of_tombstone("b.jpg");
        let (mut x, mut y) = (Digest::default(), Digest::default());
        x.toggle(a);
        x.toggle(b);
        y.toggle(b);
        y.toggle(a);
        assert_eq!(x, y);
        x.toggle(a);
        x.toggle(b);
        assert_eq!(x, Digest::default());
        assert_eq!(Digest::parse(&y.to_string()), Some(y));
    }

    /// Two servers compare digests over the wire, so the hash of an entry
    /// is a format: pinned here by `sha256sum` of the bytes it covers.
    #[test]
    fn an_entry_hashes_its_kind_name_and_content_hash() {
        let sha = "0F".repeat(32);
        // printf 'file\0a.jpg\0' + 32 × "0f" | sha256sum
        assert_eq!(
            Digest::of_file("a.jpg", &sha).to_string(),
            "41ae83930350fe37e91312318afd9deb9c68ca387924444652107c748e32af30"
        );
        // printf 'tombstone\0a.jpg' | sha256sum
        assert_eq!(
            Digest::of_tombstone("a.jpg").to_string(),
            "6fda6d3da2aa40dcdd0c5829b8cc33ea16a2c9a7fcaf3bd1bb1998186fc51986"
        );
    }

    #[test]
    fn toggling_is_a_bytewise_xor() {
        let mut digest = Digest([0b0101; 32]);
        digest.toggle(Digest([0b0011; 32]));
        assert_eq!(digest, Digest([0b0110; 32]));
        assert_eq!(digest.to_string(), "06".repeat(32));
    }

    #[test]
    fn a_swapped_file_changes_the_digest() {
        assert_ne!(
            Digest::of_file("a.jpg", &"00".repeat(32)),
            Digest::of_file("a.jpg", &"01".repeat(32))
        );
        assert_ne!(
            Digest::of_file("a.jpg", &"00".repeat(32)),
            Digest::of_tombstone("a.jpg")
        );
    }
}
