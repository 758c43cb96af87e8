//! The `[auth]` table of app.toml (SPEC §12): upload tokens' secrets and
//! lifetimes. It only reads and validates; what a credential may do is
//! `crate::auth`'s business.

use std::fmt;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::ConfigError;
use crate::auth::token::{Lifetime, TokenSecrets};

/// Shortest token secret accepted: a token and its claims are public, so a
/// short secret could be found by trying them all offline.
const MIN_SECRET_LEN: usize = 16;

/// `[auth]` as written (or as another layer sets it); `None` takes the
/// default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    pub token_secrets: Option<OrderedSecrets>,
    pub clock_skew_secs: Option<u64>,
    pub max_token_secs: Option<u64>,
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
    /// Every setting of `upper` that is set wins over this layer's.
    pub(crate) fn overlay(self, upper: AuthFile) -> AuthFile {
        AuthFile {
            token_secrets: upper.token_secrets.or(self.token_secrets),
            clock_skew_secs: upper.clock_skew_secs.or(self.clock_skew_secs),
            max_token_secs: upper.max_token_secs.or(self.max_token_secs),
        }
    }

    /// The settings, checked.
    pub(crate) fn settings(self, file: &Path) -> Result<AuthSettings, ConfigError> {
        let secrets = self.token_secrets.unwrap_or_default().0;
        for (id, secret) in &secrets {
            let problem = if id.is_empty() || id.chars().any(char::is_control) {
                Some("an id is empty or has a control character".to_owned())
            } else if secret.chars().count() < MIN_SECRET_LEN {
                // The secret itself is never quoted: the message ends up
                // in tickets and screenshots.
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
        let max_token_secs = match self.max_token_secs.unwrap_or(86_400) {
            0 => {
                return Err(ConfigError::new(
                    file,
                    "auth.max_token_secs",
                    "must be greater than 0",
                ));
            }
            n => n,
        };
        Ok(AuthSettings {
            token_secrets: TokenSecrets::new(secrets),
            clock_skew_secs: self.clock_skew_secs.unwrap_or(60),
            max_token_secs,
        })
    }
}

/// Who may do what, as configured.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
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

    fn read(text: &str) -> Result<AuthSettings, String> {
        #[derive(Deserialize)]
        struct Doc {
            auth: AuthFile,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        doc.auth
            .settings(Path::new("app.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_first_listed_secret_mints_whatever_its_name() {
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
    fn a_short_secret_is_refused_without_being_shown() {
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
}
