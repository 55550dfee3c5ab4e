//! nf_tables expressions as netlink attributes (`linux/netfilter/nf_tables.h`). Each
//! function returns one `NFTA_LIST_ELEM` payload: `NFTA_EXPR_NAME` + `NFTA_EXPR_DATA`.
//! Numeric attributes are big-endian; register contents (compare data, immediates, the
//! interface index) are raw bytes in the order the kernel evaluates them.

use crate::message::Attrs;

/// `NFTA_EXPR_NAME`.
const NFTA_EXPR_NAME: u16 = 1;
/// `NFTA_EXPR_DATA`.
const NFTA_EXPR_DATA: u16 = 2;

/// `NFTA_DATA_VALUE`.
const NFTA_DATA_VALUE: u16 = 1;
/// `NFTA_DATA_VERDICT`.
const NFTA_DATA_VERDICT: u16 = 2;
/// `NFTA_VERDICT_CODE`.
const NFTA_VERDICT_CODE: u16 = 1;

/// `NFT_REG_VERDICT`.
pub const REG_VERDICT: u32 = 0;
/// `NFT_REG_1`: a 128-bit register (an IPv6 address fits).
pub const REG_1: u32 = 1;
/// `NFT_REG_2`.
pub const REG_2: u32 = 2;

/// `NF_DROP`.
pub const NF_DROP: u32 = 0;
/// `NF_ACCEPT`.
pub const NF_ACCEPT: u32 = 1;

/// Where a payload load starts (`enum nft_payload_bases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    Network = 1,
    /// `NFT_PAYLOAD_TRANSPORT_HEADER`.
    Transport = 2,
}

/// `NFTA_PAYLOAD_*`.
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;

/// `NFTA_CMP_*`.
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;

/// Comparison operators (`enum nft_cmp_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `NFT_CMP_EQ`.
    Eq = 0,
    /// `NFT_CMP_NEQ`.
    Neq = 1,
}

/// `NFTA_META_*`.
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
/// `NFT_META_L4PROTO`: the transport protocol (IPv6: after extension headers).
pub const META_L4PROTO: u32 = 16;

/// `NFTA_BITWISE_*`.
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;

/// `NFTA_CT_*`.
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
/// `NFT_CT_STATE`: a 32-bit host-order bit set, see the `CT_STATE_*` bits.
pub const CT_STATE: u32 = 0;
/// `NF_CT_STATE_INVALID_BIT`: the packet has no conntrack entry (and is not untracked).
pub const CT_STATE_INVALID: u32 = 1;
/// `NF_CT_STATE_BIT(IP_CT_NEW)`.
pub const CT_STATE_NEW: u32 = 1 << 3;

/// `NFTA_IMMEDIATE_*`.
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

/// `NFTA_DUP_*`.
const NFTA_DUP_SREG_ADDR: u16 = 1;
const NFTA_DUP_SREG_DEV: u16 = 2;

fn expr(name: &str, data: &Attrs) -> Attrs {
    let mut elem = Attrs::new();
    elem.string(NFTA_EXPR_NAME, name).nest(NFTA_EXPR_DATA, data);
    elem
}

fn value(bytes: &[u8]) -> Attrs {
    let mut data = Attrs::new();
    data.bytes(NFTA_DATA_VALUE, bytes);
    data
}

/// `payload load <len>b @ <base> + <offset> => reg <dreg>`.
pub fn payload(dreg: u32, base: Base, offset: u32, len: u32) -> Attrs {
    let mut data = Attrs::new();
    data.be32(NFTA_PAYLOAD_DREG, dreg)
        .be32(NFTA_PAYLOAD_BASE, base as u32)
        .be32(NFTA_PAYLOAD_OFFSET, offset)
        .be32(NFTA_PAYLOAD_LEN, len);
    expr("payload", &data)
}

/// `cmp <op> reg <sreg> <bytes>`.
pub fn cmp(sreg: u32, op: CmpOp, bytes: &[u8]) -> Attrs {
    let mut data = Attrs::new();
    data.be32(NFTA_CMP_SREG, sreg)
        .be32(NFTA_CMP_OP, op as u32)
        .nest(NFTA_CMP_DATA, &value(bytes));
    expr("cmp", &data)
}

/// `meta load <key> => reg <dreg>`.
pub fn meta(dreg: u32, key: u32) -> Attrs {
    let mut data = Attrs::new();
    data.be32(NFTA_META_DREG, dreg).be32(NFTA_META_KEY, key);
    expr("meta", &data)
}

/// `bitwise reg <reg> = (reg <reg> & mask) ^ 0` over `mask.len()` bytes.
pub fn and_mask(reg: u32, mask: &[u8]) -> Attrs {
    let len = u32::try_from(mask.len()).unwrap_or(u32::MAX);
    let zeros = vec![0u8; mask.len()];
    let mut data = Attrs::new();
    data.be32(NFTA_BITWISE_SREG, reg)
        .be32(NFTA_BITWISE_DREG, reg)
        .be32(NFTA_BITWISE_LEN, len)
        .nest(NFTA_BITWISE_MASK, &value(mask))
        .nest(NFTA_BITWISE_XOR, &value(&zeros));
    expr("bitwise", &data)
}

/// `ct load <key> => reg <dreg>`.
pub fn ct(dreg: u32, key: u32) -> Attrs {
    let mut data = Attrs::new();
    data.be32(NFTA_CT_DREG, dreg).be32(NFTA_CT_KEY, key);
    expr("ct", &data)
}

/// `immediate reg <dreg> <bytes>`.
pub fn immediate(dreg: u32, bytes: &[u8]) -> Attrs {
    let mut data = Attrs::new();
    data.be32(NFTA_IMMEDIATE_DREG, dreg)
        .nest(NFTA_IMMEDIATE_DATA, &value(bytes));
    expr("immediate", &data)
}

/// `immediate reg 0 <verdict>` (e.g. [`NF_DROP`]).
pub fn verdict(code: u32) -> Attrs {
    let mut verdict = Attrs::new();
    verdict.be32(NFTA_VERDICT_CODE, code);
    let mut value = Attrs::new();
    value.nest(NFTA_DATA_VERDICT, &verdict);
    let mut data = Attrs::new();
    data.be32(NFTA_IMMEDIATE_DREG, REG_VERDICT)
        .nest(NFTA_IMMEDIATE_DATA, &value);
    expr("immediate", &data)
}

/// `notrack`: conntrack leaves the packet alone (prerouting / output, before conntrack).
pub fn notrack() -> Attrs {
    expr("notrack", &Attrs::new())
}

/// `dup sreg_addr reg <addr> sreg_dev reg <dev>`: sends a copy of the packet to the
/// address in `addr` (used as the next hop) out of the interface index in `dev`.
pub fn dup(addr: u32, dev: u32) -> Attrs {
    let mut data = Attrs::new();
    data.be32(NFTA_DUP_SREG_ADDR, addr)
        .be32(NFTA_DUP_SREG_DEV, dev);
    expr("dup", &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected bytes written out by hand from nf_tables.h and libnftnl's encoders
    // (src/expr/*.c: every numeric attribute via htonl, data via nftnl_data_reg).

    #[test]
    fn payload_ip_daddr() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            12, 0, 1, 0, b'p', b'a', b'y', b'l', b'o', b'a', b'd', 0, // NAME "payload"
            36, 0, 2, 0x80,                                           // DATA, nested
            8, 0, 1, 0, 0, 0, 0, 1,                                   // DREG 1
            8, 0, 2, 0, 0, 0, 0, 1,                                   // BASE network
            8, 0, 3, 0, 0, 0, 0, 16,                                  // OFFSET 16
            8, 0, 4, 0, 0, 0, 0, 4,                                   // LEN 4
        ];
        assert_eq!(payload(REG_1, Base::Network, 16, 4).as_bytes(), expected);
    }

    #[test]
    fn cmp_eq_tcp() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            8, 0, 1, 0, b'c', b'm', b'p', 0,  // NAME "cmp"
            32, 0, 2, 0x80,                   // DATA
            8, 0, 1, 0, 0, 0, 0, 1,           // SREG 1
            8, 0, 2, 0, 0, 0, 0, 0,           // OP eq
            12, 0, 3, 0x80,                   // DATA nest
            5, 0, 1, 0, 6, 0, 0, 0,           // VALUE 0x06 (len 5, padded)
        ];
        assert_eq!(cmp(REG_1, CmpOp::Eq, &[6]).as_bytes(), expected);
    }

    #[test]
    fn drop_verdict() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            14, 0, 1, 0, b'i', b'm', b'm', b'e', b'd', b'i', b'a', b't', b'e', 0, 0, 0,
            28, 0, 2, 0x80,                   // DATA
            8, 0, 1, 0, 0, 0, 0, 0,           // DREG verdict
            16, 0, 2, 0x80,                   // IMMEDIATE_DATA
            12, 0, 2, 0x80,                   // DATA_VERDICT
            8, 0, 1, 0, 0, 0, 0, 0,           // CODE NF_DROP
        ];
        assert_eq!(verdict(NF_DROP).as_bytes(), expected);
    }

    #[test]
    fn dup_registers() {
        #[rustfmt::skip]
        let expected: &[u8] = &[
            8, 0, 1, 0, b'd', b'u', b'p', 0,
            20, 0, 2, 0x80,
            8, 0, 1, 0, 0, 0, 0, 1,           // SREG_ADDR 1
            8, 0, 2, 0, 0, 0, 0, 2,           // SREG_DEV 2
        ];
        assert_eq!(dup(REG_1, REG_2).as_bytes(), expected);
    }
}
