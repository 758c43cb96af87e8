//! Who may do what (SPEC §12): the credentials a request can carry and what
//! each may do. It knows nothing of HTTP: the HTTP edge (`http::auth`)
//! finds what a request presents and asks here.

pub mod spent;
pub mod token;

use std::time::{SystemTime, UNIX_EPOCH};

use spent::{Spent, SpentError};
use token::{Claims, Lifetime, Refusal, TokenSecrets};

/// Unix seconds now: the clock tokens are checked against.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Upload tokens as this server checks them: `[auth]`'s secrets and
/// lifetimes, and the files each token has stored here.
#[derive(Debug, Clone)]
pub struct Tokens {
    secrets: TokenSecrets,
    lifetime: Lifetime,
    spent: Spent,
}

/// Why a token may not store a file: refused, or the counts could not be
/// read or written (then nothing is stored either).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Counts(#[from] SpentError),
}

impl Tokens {
    pub fn new(secrets: TokenSecrets, lifetime: Lifetime, spent: Spent) -> Self {
        Self {
            secrets,
            lifetime,
            spent,
        }
    }

    /// Whether this server takes tokens at all (`[auth] token_secrets`).
    pub fn enabled(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The claims of `token`, presented by a request from `origin`, if it
    /// is valid and has a file left.
    pub async fn check(&self, token: &str, origin: Option<&[u8]>) -> Result<Claims, TokenError> {
        let claims = token::verify(token, &self.secrets, self.lifetime, now(), origin)?;
        if let (Some(jti), Some(max)) = (&claims.jti, claims.max_files)
            && self.spent.is_spent(jti, max).await?
        {
            return Err(Refusal::Spent.into());
        }
        Ok(claims)
    }

    /// Counts a file about to be received with `claims`: refused when the
    /// token has none left. Durable when it returns.
    pub async fn take_file(&self, claims: &Claims) -> Result<(), TokenError> {
        let (Some(jti), Some(max)) = (&claims.jti, claims.max_files) else {
            return Ok(());
        };
        if self.spent.take(jti, claims.exp, max, now()).await? {
            Ok(())
        } else {
            Err(Refusal::Spent.into())
        }
    }

    /// Gives back a file counted by [`Tokens::take_file`] that was not
    /// stored.
    pub async fn give_back(&self, claims: &Claims) {
        let (Some(jti), Some(_)) = (&claims.jti, claims.max_files) else {
            return;
        };
        if let Err(e) = self.spent.give_back(jti).await {
            tracing::error!(error = %e, "a refused file's place could not be given back to its token");
        }
    }
}
