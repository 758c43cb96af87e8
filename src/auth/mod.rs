//! Who may do what (SPEC §12): the [`Credential`] a request carries and
//! the one table of what each may do. It knows nothing of HTTP: the HTTP
//! edge (`http::auth`) finds what a request presents and asks here.
//!
//! Least privilege: the upload key keeps the original's rights and no
//! more, deleting needs an admin key, and peer actions need a peer key once
//! `[auth] peer_keys` is set (without it, a server's own `security_key` is
//! also what its peers send it, as the original had it). An upload token
//! uploads and does nothing else.

mod keys;
pub mod spent;
pub mod token;

use std::time::{SystemTime, UNIX_EPOCH};

pub use keys::{Keys, key_for_notice, key_for_peer};
use spent::{Spent, SpentError};
use token::{Claims, Lifetime, TokenSecrets};

/// Who a request is, by the key it presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `security_key` or one of `[auth] security_keys`.
    Upload,
    /// One of `[auth] admin_keys`.
    Admin,
    /// One of `[auth] peer_keys`.
    Peer,
    /// Without `[auth] peer_keys`: this server's `security_key`, which its
    /// peers send it too (servers.xml.config), so it carries both the
    /// upload and the peer rights.
    Shared,
    /// An upload token (`[auth] token_secrets`); its claims travel beside
    /// it to the upload, which they limit.
    Token,
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Upload,
    /// The upload page.
    Page,
    /// `uploaderrors`: replay the failure journal now.
    Replay,
    Delete,
    Restore,
    /// A peer's replica (`sync`).
    Sync,
    /// A delete or restore a peer passes on (it names itself).
    PeerNotice,
    /// A peer's word that a tombstone may go (`forget`).
    Forget,
    /// Repair's comparison of indexes (`digest`, `list`).
    Compare,
    /// A stored file fetched by a peer's repair or read-through.
    RepairRead,
    /// `action=token`: mint an upload token.
    MintToken,
    /// `action=stats`: read download counts. Peers may too: a server
    /// answering `cluster=1` asks each peer with its peer credential.
    Stats,
}

/// Why a known credential may not do an action: the 403's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} needs an admin key")]
    NeedsAdmin(&'static str),
    #[error("{0} needs an admin key and none is configured ([auth] admin_keys)")]
    NoAdminKey(&'static str),
    #[error("{0} is for peers and needs a peer key ([auth] peer_keys)")]
    NeedsPeer(&'static str),
    #[error("{0} is not allowed with this credential")]
    NotAllowed(&'static str),
}

impl Action {
    /// The action's name in a refusal.
    fn name(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Page => "the upload page",
            Self::Replay => "uploaderrors",
            Self::Delete => "delete",
            Self::Restore => "restore",
            Self::Sync => "sync",
            Self::PeerNotice => "a delete or restore passed on by a peer",
            Self::Forget => "forget",
            Self::Compare => "digest and list",
            Self::RepairRead => "a repair fetch",
            Self::MintToken => "minting a token",
            Self::Stats => "stats",
        }
    }

    /// Peer actions: taken by the peer credential only.
    fn is_peer(self) -> bool {
        matches!(
            self,
            Self::Sync | Self::PeerNotice | Self::Forget | Self::Compare | Self::RepairRead
        )
    }
}

impl Credential {
    /// Whether this credential may do `action` (the one table of rights);
    /// `admin_configured` words the refusal of a delete.
    pub fn may(self, action: Action, admin_configured: bool) -> Result<(), Refusal> {
        use Action as A;
        let allowed = match self {
            Self::Upload => matches!(
                action,
                A::Upload | A::Page | A::Replay | A::MintToken | A::Stats
            ),
            // A passed-on delete from an admin key is no more than the
            // admin may do anyway; it is how peers pass deletes on when
            // there are no peer keys.
            Self::Admin => matches!(
                action,
                A::Upload
                    | A::Page
                    | A::Replay
                    | A::MintToken
                    | A::Stats
                    | A::Delete
                    | A::Restore
                    | A::PeerNotice
            ),
            Self::Peer => action.is_peer() || action == A::Stats,
            // Not a passed-on delete: the shared key is the upload key too,
            // and a delete taken as a peer's leaves a tombstone that spreads.
            Self::Shared => {
                Self::Upload.may(action, admin_configured).is_ok()
                    || (action.is_peer() && action != A::PeerNotice)
            }
            Self::Token => action == A::Upload,
        };
        if allowed {
            return Ok(());
        }
        Err(match action {
            A::Delete | A::Restore if !admin_configured => Refusal::NoAdminKey(action.name()),
            A::Delete | A::Restore => Refusal::NeedsAdmin(action.name()),
            a if a.is_peer() => Refusal::NeedsPeer(a.name()),
            a => Refusal::NotAllowed(a.name()),
        })
    }
}

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
    /// The files each token stored here; `None` without token secrets
    /// (no token verifies then).
    spent: Option<Spent>,
}

/// Why a token may not store a file: refused, or the counts could not be
/// read or written (then nothing is stored either).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Refused(#[from] token::Refusal),
    #[error(transparent)]
    Counts(#[from] SpentError),
}

impl Tokens {
    pub fn new(secrets: TokenSecrets, lifetime: Lifetime, spent: Option<Spent>) -> Self {
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

    /// The claims of `token`, presented by a request from `origin` (its
    /// `Origin` header), if it is genuine and valid now.
    pub fn verify(&self, token: &str, origin: Option<&[u8]>) -> Result<Claims, token::Refusal> {
        token::verify(token, &self.secrets, self.lifetime, now(), origin)
    }

    /// Refuses a token that has no file left, before any is read.
    pub async fn ensure_unspent(&self, claims: &Claims) -> Result<(), TokenError> {
        if let (Some(spent), Some(jti), Some(max)) = (&self.spent, &claims.jti, claims.max_files)
            && spent.is_spent(jti, max).await?
        {
            return Err(token::Refusal::Spent.into());
        }
        Ok(())
    }

    /// Mints a token with the first secret (`None`: no secret is
    /// configured).
    pub fn mint(&self, request: &token::Request) -> Option<token::Minted> {
        token::mint(&self.secrets, self.lifetime.max_token_secs, request, now())
    }

    /// Counts a file about to be received with `claims`: refused when the
    /// token has none left. Durable when it returns.
    pub async fn take_file(&self, claims: &Claims) -> Result<(), TokenError> {
        let (Some(spent), Some(jti), Some(max)) = (&self.spent, &claims.jti, claims.max_files)
        else {
            return Ok(());
        };
        if spent.take(jti, claims.exp, max, now()).await? {
            Ok(())
        } else {
            Err(token::Refusal::Spent.into())
        }
    }

    /// Gives back a file counted by [`Tokens::take_file`] that was not
    /// stored.
    pub async fn give_back(&self, claims: &Claims) {
        let (Some(jti), Some(_)) = (&claims.jti, claims.max_files) else {
            return;
        };
        self.give_back_jti(jti).await;
    }

    /// Gives back a file counted for the token `jti` (one with
    /// `max_files`), e.g. by a resumable upload that ended without a file.
    pub async fn give_back_jti(&self, jti: &str) {
        let Some(spent) = &self.spent else {
            return;
        };
        if let Err(e) = spent.give_back(jti).await {
            tracing::error!(error = %e, "a refused file's place could not be given back to its token");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_key_keeps_the_originals_rights_only() {
        for action in [Action::Upload, Action::Page, Action::Replay] {
            assert!(Credential::Upload.may(action, true).is_ok(), "{action:?}");
            assert!(Credential::Admin.may(action, true).is_ok(), "{action:?}");
            assert!(Credential::Shared.may(action, true).is_ok(), "{action:?}");
            assert!(Credential::Peer.may(action, true).is_err(), "{action:?}");
        }
        assert_eq!(
            Credential::Upload.may(Action::Delete, true),
            Err(Refusal::NeedsAdmin("delete"))
        );
        assert_eq!(
            Credential::Shared.may(Action::Restore, false),
            Err(Refusal::NoAdminKey("restore"))
        );
        assert!(Credential::Admin.may(Action::Delete, true).is_ok());
    }

    #[test]
    fn peer_actions_take_the_peer_credential() {
        for action in [
            Action::Sync,
            Action::PeerNotice,
            Action::Forget,
            Action::Compare,
            Action::RepairRead,
        ] {
            assert!(Credential::Peer.may(action, true).is_ok(), "{action:?}");
            assert_eq!(
                Credential::Shared.may(action, true).is_ok(),
                action != Action::PeerNotice,
                "{action:?}"
            );
            assert!(
                matches!(
                    Credential::Upload.may(action, true),
                    Err(Refusal::NeedsPeer(_))
                ),
                "{action:?}"
            );
            assert_eq!(
                Credential::Admin.may(action, true).is_ok(),
                action == Action::PeerNotice,
                "{action:?}"
            );
        }
        assert!(Credential::Peer.may(Action::Delete, true).is_err());
    }

    #[test]
    fn a_token_only_uploads_and_the_upload_key_mints() {
        for action in [
            Action::Page,
            Action::Replay,
            Action::Delete,
            Action::Restore,
            Action::Sync,
            Action::PeerNotice,
            Action::Forget,
            Action::Compare,
            Action::RepairRead,
            Action::MintToken,
        ] {
            assert!(Credential::Token.may(action, true).is_err(), "{action:?}");
        }
        assert!(Credential::Token.may(Action::Upload, true).is_ok());
        for minting in [Credential::Upload, Credential::Admin, Credential::Shared] {
            assert!(minting.may(Action::MintToken, false).is_ok(), "{minting:?}");
        }
        assert!(Credential::Peer.may(Action::MintToken, false).is_err());
    }

    #[test]
    fn stats_take_an_admin_upload_or_peer_key_not_a_token() {
        for reading in [
            Credential::Upload,
            Credential::Admin,
            Credential::Shared,
            Credential::Peer,
        ] {
            assert!(reading.may(Action::Stats, true).is_ok(), "{reading:?}");
        }
        assert_eq!(
            Credential::Token.may(Action::Stats, true),
            Err(Refusal::NotAllowed("stats"))
        );
    }

    #[test]
    fn a_refusal_names_what_would_allow_it() {
        assert_eq!(
            Credential::Peer.may(Action::Upload, true),
            Err(Refusal::NotAllowed("upload"))
        );
        assert_eq!(
            Credential::Token.may(Action::Replay, true),
            Err(Refusal::NotAllowed("uploaderrors"))
        );
        assert_eq!(
            Credential::Token.may(Action::Sync, true),
            Err(Refusal::NeedsPeer("sync"))
        );
    }

    #[test]
    fn now_is_the_unix_clock() {
        let seconds = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
        };
        let before = seconds();
        let now = u64::try_from(now()).expect("after 1970");
        assert!((before..=seconds()).contains(&now), "{before} {now}");
    }

    const LIFETIME: Lifetime = Lifetime {
        clock_skew_secs: 60,
        max_token_secs: 86_400,
    };

    fn secrets() -> TokenSecrets {
        TokenSecrets::new(vec![("k1".into(), "s3cret-k1".into())])
    }

    #[test]
    fn tokens_are_taken_only_with_a_secret_and_minted_with_it() {
        let none = Tokens::new(TokenSecrets::default(), LIFETIME, None);
        assert!(!none.enabled());
        assert_eq!(none.mint(&token::Request::default()), None);
        let tokens = Tokens::new(secrets(), LIFETIME, None);
        assert!(tokens.enabled());
        let minted = tokens
            .mint(&token::Request::default())
            .expect("a secret to mint with");
        let claims = tokens.verify(&minted.token, None).expect("verifies now");
        assert_eq!((claims.kid.as_str(), claims.exp), ("k1", minted.exp));
    }

    #[tokio::test]
    async fn a_token_stores_max_files_and_gets_back_a_file_not_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spent = Spent::open(dir.path(), LIFETIME, now()).expect("open");
        let tokens = Tokens::new(secrets(), LIFETIME, Some(spent));
        let claims = Claims {
            kid: "k1".into(),
            exp: now() + 3600,
            max_bytes: None,
            max_files: Some(2),
            types: None,
            origin: None,
            jti: Some("j1".into()),
        };
        let is_spent = |r: Result<(), TokenError>| {
            matches!(r, Err(TokenError::Refused(token::Refusal::Spent)))
        };
        tokens.ensure_unspent(&claims).await.expect("two left");
        tokens.take_file(&claims).await.expect("the first");
        tokens.take_file(&claims).await.expect("the second");
        assert!(is_spent(tokens.take_file(&claims).await), "no third");
        assert!(is_spent(tokens.ensure_unspent(&claims).await));
        tokens.give_back(&claims).await;
        tokens
            .ensure_unspent(&claims)
            .await
            .expect("one given back");
        tokens.take_file(&claims).await.expect("taken again");
        assert!(is_spent(tokens.ensure_unspent(&claims).await));
        let unlimited = Claims {
            max_files: None,
            ..claims
        };
        for _ in 0..3 {
            tokens.take_file(&unlimited).await.expect("not counted");
        }
        tokens
            .ensure_unspent(&unlimited)
            .await
            .expect("never spent");
    }
}
