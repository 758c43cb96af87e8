//! The `[auth]` table of app.toml (SPEC §12): which keys this server
//! accepts, by role, and the secrets and lifetimes of upload tokens. It
//! only reads and validates; what a role may do is `crate::auth`'s
//! business.
//!
//! The lists are checked so that a key means one thing: an empty key, a
//! key listed under two roles, or the shipped placeholder as an extra key
//! is a configuration error, not a surprise at the first request.

use std::fmt;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::declare::settings_table;
use super::{ConfigError, PLACEHOLDER_KEY};
use crate::auth::token::{Lifetime, TokenSecrets};

/// Shortest token secret accepted: a token and its claims are public, so a
/// short secret could be found by trying them all offline.
const MIN_SECRET_LEN: usize = 16;

settings_table! {
    /// `[auth]` as written (or as another layer sets it); `None` takes the
    /// default.
    pub(crate) struct AuthFile in "auth." (env: true) {
        /// more keys with `security_key`'s rights: upload, the page, `uploaderrors`
        /// (see "Keys and tokens")
        security_keys: Vec<String> = Value("");
        /// keys that may also `delete` and `restore`; none: nobody may
        admin_keys: Vec<String> = Value("");
        /// the keys of peer actions, the same on every server: the first is sent,
        /// any is accepted, nothing else is; empty: peers send each other's
        /// `security_key` (servers.xml.config), with a warning at start
        peer_keys: Vec<String> = Value("");
        /// upload token secrets, id → secret (16 characters or more), the same on
        /// every server; the first listed mints `action=token` tokens, every
        /// listed one verifies; empty: no tokens. Environment: `k2=…,k1=…` in order
        token_secrets: OrderedSecrets = Value("");
        /// how far a back end's clock and this server's may disagree about a
        /// token's `exp` (0: not at all)
        clock_skew_secs: u64 = Value("60");
        /// longest life of a token: `action=token` caps `ttl_secs` at it, and a
        /// token minted elsewhere whose `exp` is further away than this (plus the
        /// skew) is refused
        max_token_secs: u64 = Value("86400");
    }
}

/// `token_secrets = { k2 = "…", k1 = "…" }` in the order written: the
/// first one mints.
#[derive(Debug, Default)]
pub(crate) struct OrderedSecrets(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedSecrets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = OrderedSecrets;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of secret ids and secrets, like { k1 = \"…\" }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut secrets = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    secrets.push(entry);
                }
                Ok(OrderedSecrets(secrets))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

impl AuthFile {
    /// The settings, checked against each other and against
    /// `security_key`.
    pub(crate) fn settings(
        self,
        file: &Path,
        security_key: &str,
    ) -> Result<AuthSettings, ConfigError> {
        let unset = |key: &str| ConfigError::new(file, key, "is not set and has no default");
        let settings = AuthSettings {
            security_keys: self.security_keys.unwrap_or_default(),
            admin_keys: self.admin_keys.unwrap_or_default(),
            peer_keys: self.peer_keys.unwrap_or_default(),
            token_secrets: token_secrets(file, self.token_secrets.unwrap_or_default().0)?,
            clock_skew_secs: self
                .clock_skew_secs
                .ok_or_else(|| unset("auth.clock_skew_secs"))?,
            max_token_secs: match self
                .max_token_secs
                .ok_or_else(|| unset("auth.max_token_secs"))?
            {
                0 => {
                    return Err(ConfigError::new(
                        file,
                        "auth.max_token_secs",
                        "must be greater than 0",
                    ));
                }
                n => n,
            },
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

/// The token secrets, checked: a usable id, a secret long enough.
fn token_secrets(file: &Path, secrets: Vec<(String, String)>) -> Result<TokenSecrets, ConfigError> {
    for (id, secret) in &secrets {
        let problem = if id.is_empty() || id.chars().any(char::is_control) {
            Some("an id is empty or has a control character".to_owned())
        } else if secret.chars().count() < MIN_SECRET_LEN {
            // The secret itself is never quoted, as keys are not.
            Some(format!(
                "the secret of `{id}` is shorter than {MIN_SECRET_LEN} characters; \
                 use a long random one"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::new(file, "auth.token_secrets", problem));
        }
    }
    Ok(TokenSecrets::new(secrets))
}

/// The keys this server accepts besides `security_key`, by role, and the
/// upload tokens it takes.
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
    /// Upload token secrets by id; the first mints, any verifies.
    pub token_secrets: TokenSecrets,
    /// How far the clocks of a minting back end and of this server may
    /// disagree about a token's `exp`.
    pub clock_skew_secs: u64,
    /// Longest life of a token: `action=token` caps its TTL at this, and a
    /// token minted elsewhere that expires later is refused.
    pub max_token_secs: u64,
}

impl AuthSettings {
    pub fn lifetime(&self) -> Lifetime {
        Lifetime {
            clock_skew_secs: self.clock_skew_secs,
            max_token_secs: self.max_token_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(file: AuthFile) -> Result<AuthSettings, String> {
        AuthFile::defaults()
            .expect("defaults")
            .overlay(file)
            .settings(Path::new("app.toml"), "upload-key")
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

    fn read(text: &str) -> Result<AuthSettings, String> {
        #[derive(Deserialize)]
        struct Doc {
            auth: AuthFile,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        check(doc.auth)
    }

    #[test]
    fn the_first_listed_token_secret_mints_whatever_its_name() {
        let s = read(
            "[auth]\ntoken_secrets = { zz = \"0123456789abcdef-new\", aa = \"0123456789abcdef-old\" }\n",
        )
        .expect("valid");
        assert_eq!(s.token_secrets.ids().collect::<Vec<_>>(), ["zz", "aa"]);
        let s = read(
            "[auth.token_secrets]\nb = \"0123456789abcdef-b\"\nc = \"0123456789abcdef-c\"\na = \"0123456789abcdef-a\"\n",
        )
        .expect("valid");
        assert_eq!(s.token_secrets.ids().collect::<Vec<_>>(), ["b", "c", "a"]);
        assert_eq!((s.clock_skew_secs, s.max_token_secs), (60, 86_400));
    }

    #[test]
    fn a_short_token_secret_is_refused_without_being_shown() {
        let err = read("[auth]\ntoken_secrets = { k1 = \"short-one\" }\n").expect_err("short");
        assert!(
            err.contains("auth.token_secrets") && err.contains("k1"),
            "{err}"
        );
        assert!(!err.contains("short-one"), "{err}");
        let err = read("[auth]\nmax_token_secs = 0\n").expect_err("zero");
        assert!(err.contains("auth.max_token_secs"), "{err}");
        assert!(read("[auth]\ntoken_secrets = { k1 = 5 }\n").is_err());
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
