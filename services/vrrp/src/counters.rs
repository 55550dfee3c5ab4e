//! What a virtual router counts, for the control API and the logs.

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Too short for its headers or address list.
    Truncated,
    /// Bad IPv4 header.
    BadIpHeader,
    /// TTL / hop limit not 255.
    WrongTtl,
    /// Not VRRP version 3.
    WrongVersion,
    /// Not an advertisement.
    WrongType,
    /// Checksum mismatch.
    BadChecksum,
    /// Forbidden field values.
    Invalid,
    /// A VRID we do not run on this interface.
    ForeignVrid,
    /// The address list differs from ours (logged; RFC 5798 7.1 lets us go on).
    AddressMismatch,
    /// We are the address owner (priority 255) and ignore others' adverts.
    OwnerIgnores,
}

/// Counters of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Valid adverts accepted for this VRID.
    pub adverts_rx: u64,
    /// Adverts sent.
    pub adverts_tx: u64,
    /// Priority-0 adverts received.
    pub priority_zero_rx: u64,
    /// Priority-0 adverts sent.
    pub priority_zero_tx: u64,
    /// Transitions into Master.
    pub became_master: u64,
    /// Transitions into Backup (from Master or Initialize).
    pub became_backup: u64,
    /// Gratuitous ARPs / unsolicited NAs sent.
    pub announcements_tx: u64,
    /// Drops by reason, in [`DropReason`] order.
    pub dropped: std::collections::BTreeMap<DropReason, u64>,
}
