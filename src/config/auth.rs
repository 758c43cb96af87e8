//! The `[auth]` table of app.toml (SPEC §12): which keys this server
//! accepts, by role. It only reads and validates; what a role may do is
//! `crate::auth`'s business.
//!
//! The lists are checked so that a key means one thing: an empty key, a
//! key listed under two roles, or the shipped placeholder as an extra key
//! is a configuration error, not a surprise at the first request.

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, PLACEHOLDER_KEY};

/// `[auth]` as written (or as another layer sets it); `None` takes the
/// default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    pub security_keys: Option<Vec<String>>,
    pub admin_keys: Option<Vec<String>>,
    pub peer_keys: Option<Vec<String>>,
}

impl AuthFile {
    /// Every setting of `upper` that is set wins over this layer's.
    pub(crate) fn overlay(self, upper: AuthFile) -> AuthFile {
        AuthFile {
            security_keys: upper.security_keys.or(self.security_keys),
            admin_keys: upper.admin_keys.or(self.admin_keys),
            peer_keys: upper.peer_keys.or(self.peer_keys),
        }
    }

    /// The settings, checked against each other and against
    /// `security_key`.
    pub(crate) fn settings(
        self,
        file: &Path,
        security_key: &str,
    ) -> Result<AuthSettings, ConfigError> {
        let settings = AuthSettings {
            security_keys: self.security_keys.unwrap_or_default(),
            admin_keys: self.admin_keys.unwrap_or_default(),
            peer_keys: self.peer_keys.unwrap_or_default(),
        };
        let lists = [
            ("auth.security_keys", &settings.security_keys),
            ("auth.admin_keys", &settings.admin_keys),
            ("auth.peer_keys", &settings.peer_keys),
        ];
        for (name, keys) in lists {
            if keys.iter().any(String::is_empty) {
                return Err(ConfigError::new(file, name, "lists an empty key"));
            }
            // The placeholder is public: as an extra key it would open the
            // role to anyone who read the shipped file.
            if keys.iter().any(|k| k == PLACEHOLDER_KEY) {
                return Err(ConfigError::new(
                    file,
                    name,
                    format!("lists the shipped placeholder `{PLACEHOLDER_KEY}`; use a secret key"),
                ));
            }
        }
        let owners = std::iter::once(("security_key", security_key))
            .chain(
                lists
                    .iter()
                    .flat_map(|(name, keys)| keys.iter().map(|k| (*name, k.as_str()))),
            )
            .collect::<Vec<_>>();
        for (i, (name, key)) in owners.iter().enumerate() {
            if let Some((other, _)) = owners[..i]
                .iter()
                .find(|(other, k)| k == key && other != name)
            {
                // The key itself is never quoted: the message ends up in
                // tickets and screenshots.
                return Err(ConfigError::new(
                    file,
                    *name,
                    format!("a key here is also in `{other}`; a key has one role"),
                ));
            }
        }
        Ok(settings)
    }
}

/// The keys this server accepts besides `security_key`, by role.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// More keys with `security_key`'s rights (upload, the page,
    /// `uploaderrors`): a key can be rotated without downtime.
    pub security_keys: Vec<String>,
    /// Keys that may also delete and restore; none: nobody may.
    pub admin_keys: Vec<String>,
    /// The keys of peer actions, the same on every server: the first is
    /// sent, any is accepted. None: the servers.xml.config keys, as before.
    pub peer_keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(file: AuthFile) -> Result<AuthSettings, String> {
        file.settings(Path::new("app.toml"), "upload-key")
            .map_err(|e| e.to_string())
    }

    fn keys(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|k| (*k).to_owned()).collect())
    }

    #[test]
    fn defaults_are_empty() {
        let s = check(AuthFile::default()).expect("valid");
        assert!(s.security_keys.is_empty() && s.admin_keys.is_empty() && s.peer_keys.is_empty());
    }

    #[test]
    fn a_key_in_two_roles_names_both() {
        let err = check(AuthFile {
            admin_keys: keys(&["a1", "shared"]),
            peer_keys: keys(&["shared"]),
            ..AuthFile::default()
        })
        .expect_err("two roles");
        assert!(
            err.contains("auth.peer_keys") && err.contains("auth.admin_keys"),
            "{err}"
        );
        assert!(!err.contains("shared"), "the key is not quoted: {err}");
        let err = check(AuthFile {
            admin_keys: keys(&["upload-key"]),
            ..AuthFile::default()
        })
        .expect_err("security_key as admin key");
        assert!(
            err.contains("auth.admin_keys") && err.contains("`security_key`"),
            "{err}"
        );
    }

    #[test]
    fn empty_and_placeholder_keys_are_refused() {
        let err = check(AuthFile {
            peer_keys: keys(&[""]),
            ..AuthFile::default()
        })
        .expect_err("empty");
        assert!(
            err.contains("auth.peer_keys") && err.contains("empty"),
            "{err}"
        );
        let err = check(AuthFile {
            admin_keys: keys(&[PLACEHOLDER_KEY]),
            ..AuthFile::default()
        })
        .expect_err("placeholder");
        assert!(
            err.contains("auth.admin_keys") && err.contains("placeholder"),
            "{err}"
        );
    }

    #[test]
    fn the_same_key_twice_in_one_role_is_harmless() {
        let s = check(AuthFile {
            security_keys: keys(&["u2", "u2"]),
            ..AuthFile::default()
        })
        .expect("valid");
        assert_eq!(s.security_keys.len(), 2);
    }
}
