//! Who may do what (SPEC §12): the [`Credential`] a request carries and
//! the one table of what each may do. It knows nothing of HTTP: the HTTP
//! edge (`http::auth`) finds what a request presents and asks here.
//!
//! Least privilege: the upload key keeps the original's rights and no
//! more, deleting needs an admin key, and peer actions need a peer key once
//! `[auth] peer_keys` is set (without it, a server's own `security_key` is
//! also what its peers send it, as the original had it).

mod keys;

pub use keys::{Keys, key_for_peer};

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
            Self::Upload => matches!(action, A::Upload | A::Page | A::Replay),
            Self::Admin => matches!(
                action,
                A::Upload | A::Page | A::Replay | A::Delete | A::Restore
            ),
            Self::Peer => action.is_peer(),
            Self::Shared => Self::Upload.may(action, admin_configured).is_ok() || action.is_peer(),
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
            assert!(Credential::Shared.may(action, true).is_ok(), "{action:?}");
            assert!(
                matches!(
                    Credential::Upload.may(action, true),
                    Err(Refusal::NeedsPeer(_))
                ),
                "{action:?}"
            );
            assert!(Credential::Admin.may(action, true).is_err(), "{action:?}");
        }
        assert!(Credential::Peer.may(Action::Delete, true).is_err());
    }
}
