//! Keys by role: which [`Credential`] a presented key is, and which key
//! this server sends its peers. Keys are kept and compared as SHA-256
//! digests in constant time, every known key each time, so neither the
//! answer's timing nor its length tells anything about a key.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Credential;
use crate::config::AuthSettings;

/// Every key this server accepts, as digests, with its role.
pub struct Keys {
    known: Vec<([u8; 32], Credential)>,
    /// Whether any admin key exists (how a refused delete is worded).
    admin_configured: bool,
}

impl Keys {
    /// The keys of a server whose own key is `security_key`.
    pub fn new(security_key: &str, auth: &AuthSettings) -> Self {
        // Without peer keys a peer sends this server its own security_key
        // (servers.xml.config), so that key is a peer's too.
        let own = if auth.peer_keys.is_empty() {
            Credential::Shared
        } else {
            Credential::Upload
        };
        let roles = [
            (&auth.security_keys, Credential::Upload),
            (&auth.admin_keys, Credential::Admin),
            (&auth.peer_keys, Credential::Peer),
        ];
        let known =
            std::iter::once((digest(security_key.as_bytes()), own))
                .chain(roles.into_iter().flat_map(|(keys, role)| {
                    keys.iter().map(move |k| (digest(k.as_bytes()), role))
                }))
                .collect();
        Self {
            known,
            admin_configured: !auth.admin_keys.is_empty(),
        }
    }

    /// The role of `presented`, if it is a key of this server.
    pub fn credential(&self, presented: &[u8]) -> Option<Credential> {
        let presented = digest(presented);
        // No early return: every key is compared whichever matches.
        self.known.iter().fold(None, |found, (key, role)| {
            if same_secret(key, &presented) {
                Some(*role)
            } else {
                found
            }
        })
    }

    pub fn admin_configured(&self) -> bool {
        self.admin_configured
    }
}

/// The key this server sends `peer`: the first peer key when there are
/// any (the same on every server), else the peer's own key from
/// servers.xml.config. Every request to a peer carries this one.
pub fn key_for_peer<'a>(auth: &'a AuthSettings, servers_xml_key: &'a str) -> &'a str {
    auth.peer_keys
        .first()
        .map_or(servers_xml_key, String::as_str)
}

/// The key a delete or restore passed on to a peer carries: the first
/// peer key, else this server's first admin key. Not the servers.xml.config
/// key: without peer keys that is also the upload key, and a passed-on
/// delete taken from it would let the upload key erase a file everywhere
/// (a tombstone spreads). So without peer keys every server lists the same
/// admin keys.
pub fn key_for_notice<'a>(auth: &'a AuthSettings, servers_xml_key: &'a str) -> &'a str {
    auth.peer_keys
        .first()
        .or(auth.admin_keys.first())
        .map_or(servers_xml_key, String::as_str)
}

/// Whether two keys are the same secret, by their digests. Digests, not
/// the keys: a byte-wise comparison, constant-time or not, returns at once
/// when the lengths differ and so tells the key's length; digests are
/// always 32 bytes.
fn same_secret(given: &[u8; 32], expected: &[u8; 32]) -> bool {
    given.ct_eq(expected).into()
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(security: &[&str], admin: &[&str], peer: &[&str]) -> AuthSettings {
        let owned = |l: &[&str]| l.iter().map(|k| (*k).to_owned()).collect();
        AuthSettings {
            security_keys: owned(security),
            admin_keys: owned(admin),
            peer_keys: owned(peer),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn a_key_has_its_role() {
        let keys = Keys::new("up", &auth(&["up2"], &["adm"], &["p-new", "p-old"]));
        assert_eq!(keys.credential(b"up"), Some(Credential::Upload));
        assert_eq!(keys.credential(b"up2"), Some(Credential::Upload));
        assert_eq!(keys.credential(b"adm"), Some(Credential::Admin));
        assert_eq!(keys.credential(b"p-old"), Some(Credential::Peer));
        assert_eq!(keys.credential(b"upx"), None);
        assert_eq!(keys.credential(b""), None);
        assert!(keys.admin_configured());
    }

    #[test]
    fn without_peer_keys_the_own_key_is_shared() {
        let keys = Keys::new("up", &auth(&["up2"], &[], &[]));
        assert_eq!(keys.credential(b"up"), Some(Credential::Shared));
        assert_eq!(keys.credential(b"up2"), Some(Credential::Upload));
        assert!(!keys.admin_configured());
    }

    #[test]
    fn the_first_peer_key_goes_to_every_peer() {
        assert_eq!(key_for_peer(&auth(&[], &[], &[]), "xml"), "xml");
        assert_eq!(key_for_peer(&auth(&[], &[], &["new", "old"]), "xml"), "new");
        assert_eq!(key_for_notice(&auth(&[], &[], &[]), "xml"), "xml");
        assert_eq!(key_for_notice(&auth(&[], &["a1", "a0"], &[]), "xml"), "a1");
        assert_eq!(
            key_for_notice(&auth(&[], &["a1"], &["p1", "p0"]), "xml"),
            "p1"
        );
    }
}
