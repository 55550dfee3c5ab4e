//! What a virtual router counts, for the control API and the logs.

use crate::packet::PacketError;

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
    /// Gratuitous ARPs / unsolicited NAs sent (one per VIP per announcement round).
    pub announcements_tx: u64,
    /// Drops by reason, in [`DropReason`] order.
    pub dropped: std::collections::BTreeMap<DropReason, u64>,
}

impl From<&PacketError> for DropReason {
    fn from(error: &PacketError) -> Self {
        match error {
            PacketError::Truncated(_) => Self::Truncated,
            PacketError::BadIpHeader(_) => Self::BadIpHeader,
            PacketError::WrongTtl(_) => Self::WrongTtl,
            PacketError::WrongVersion(_) => Self::WrongVersion,
            PacketError::WrongType(_) => Self::WrongType,
            PacketError::BadChecksum { .. } => Self::BadChecksum,
            PacketError::Invalid(_) => Self::Invalid,
        }
    }
}

impl DropReason {
    /// Every reason, in order (for listing all counters, zeros included).
    pub const ALL: [DropReason; 10] = [
        Self::Truncated,
        Self::BadIpHeader,
        Self::WrongTtl,
        Self::WrongVersion,
        Self::WrongType,
        Self::BadChecksum,
        Self::Invalid,
        Self::ForeignVrid,
        Self::AddressMismatch,
        Self::OwnerIgnores,
    ];

    /// A stable snake_case name for logs and the control API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::BadIpHeader => "bad_ip_header",
            Self::WrongTtl => "wrong_ttl",
            Self::WrongVersion => "wrong_version",
            Self::WrongType => "wrong_type",
            Self::BadChecksum => "bad_checksum",
            Self::Invalid => "invalid",
            Self::ForeignVrid => "foreign_vrid",
            Self::AddressMismatch => "address_mismatch",
            Self::OwnerIgnores => "owner_ignores",
        }
    }
}

impl Counters {
    /// How many packets were dropped for `reason` (0 when never).
    pub fn get(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }

    /// Counts one drop for `reason`.
    pub fn count_drop(&mut self, reason: DropReason) {
        *self.dropped.entry(reason).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_packet_error_maps_to_its_reason() {
        let cases = [
            (PacketError::Truncated("x"), DropReason::Truncated),
            (PacketError::BadIpHeader("x"), DropReason::BadIpHeader),
            (PacketError::WrongTtl(1), DropReason::WrongTtl),
            (PacketError::WrongVersion(2), DropReason::WrongVersion),
            (PacketError::WrongType(2), DropReason::WrongType),
            (
                PacketError::BadChecksum {
                    got: 1,
                    expected: 2,
                },
                DropReason::BadChecksum,
            ),
            (PacketError::Invalid("x"), DropReason::Invalid),
        ];
        for (error, reason) in cases {
            assert_eq!(DropReason::from(&error), reason, "{error}");
        }
    }

    #[test]
    fn get_counts_and_defaults_to_zero() {
        let mut counters = Counters::default();
        assert_eq!(counters.get(DropReason::BadChecksum), 0);
        counters.count_drop(DropReason::BadChecksum);
        counters.count_drop(DropReason::BadChecksum);
        assert_eq!(counters.get(DropReason::BadChecksum), 2);
        assert_eq!(counters.get(DropReason::Invalid), 0);
    }

    #[test]
    fn names_are_distinct_and_all_is_sorted() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        assert!(DropReason::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
