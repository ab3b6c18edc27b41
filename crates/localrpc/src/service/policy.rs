//! Who may call what: authorization from the peer's credentials (SO_PEERCRED).
//!
//! A policy is attached to an interface or a single method and checked after routing, before
//! the parameters are checked or the handler runs; a refused caller gets
//! `org.varlink.service.PermissionDenied` and the connection stays open.

use std::collections::BTreeSet;

use super::context::PeerCredentials;

/// Which callers are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    everyone: bool,
    root: bool,
    own_uid: bool,
    uids: BTreeSet<u32>,
    gids: BTreeSet<u32>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy::everyone()
    }
}

impl AccessPolicy {
    /// Everybody who can connect may call (the default).
    pub fn everyone() -> Self {
        AccessPolicy {
            everyone: true,
            root: true,
            own_uid: true,
            uids: BTreeSet::new(),
            gids: BTreeSet::new(),
        }
    }

    /// Only root and the uid the daemon runs as; extend with [`AccessPolicy::allow_uid`] and
    /// [`AccessPolicy::allow_gid`].
    pub fn root_and_self() -> Self {
        AccessPolicy {
            everyone: false,
            ..AccessPolicy::everyone()
        }
    }

    /// Also allows callers with this uid.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.uids.insert(uid);
        self
    }

    /// Also allows callers whose primary gid is this one.
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.gids.insert(gid);
        self
    }

    /// True when every caller is allowed.
    pub fn allows_everyone(&self) -> bool {
        self.everyone
    }

    /// Whether `peer` may call. Callers without credentials (TCP) are allowed only by a
    /// policy that allows everyone.
    pub fn allows(&self, peer: Option<&PeerCredentials>) -> bool {
        if self.everyone {
            return true;
        }
        let Some(peer) = peer else { return false };
        (self.root && peer.uid == 0)
            || (self.own_uid && peer.uid == rustix::process::geteuid().as_raw())
            || self.uids.contains(&peer.uid)
            || self.gids.contains(&peer.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> PeerCredentials {
        PeerCredentials {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn restricted_policy_allows_root_self_and_listed_ids() {
        let own = rustix::process::geteuid().as_raw();
        let policy = AccessPolicy::root_and_self().allow_uid(4242).allow_gid(77);
        assert!(policy.allows(Some(&peer(0, 0))));
        assert!(policy.allows(Some(&peer(own, 1))));
        assert!(policy.allows(Some(&peer(4242, 1))));
        assert!(policy.allows(Some(&peer(5000, 77))));
        let stranger = if own == 65534 { 65533 } else { 65534 };
        assert!(!policy.allows(Some(&peer(stranger, stranger))));
        assert!(!policy.allows(None), "no credentials (TCP): refused");
        assert!(AccessPolicy::everyone().allows(None));
    }
}
