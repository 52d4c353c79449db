//! The helper-to-helper message format: one [`Message`] type for every
//! round of every protocol in the crate, with a decoder that never panics.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "SRMP"
//!      4     1  version (1)
//!      5     1  protocol (1 = preprocessing, 2 = online session)
//!      6     1  sender helper index (must equal the authenticated sender)
//!      7     1  kind (MsgKind)
//!      8    32  session id (binds the message to one batch or one session)
//!     40     4  round (u32 LE)
//!     44     4  element count n (u32 LE)
//!     48     4  blob count m (u32 LE)
//!     52  16·n  field elements, 16 bytes LE each, canonical (< 2^127 − 1)
//!        32·m  32-byte blobs (seeds, commitments, hashes, salts)
//! ```
//!
//! Vectors travel packed, never as repeated integers. A receiver always knows
//! from its own state what kind and how many elements and blobs a round must
//! carry ([`Expect`]); the claimed counts are compared with that expectation
//! and with the buffer's real length *before* anything is allocated, so a
//! peer's claim never sizes an allocation.

use crate::field::{ELEMENT_BYTES, F127, kernels};

/// Size of the fixed header.
pub const HEADER_BYTES: usize = 52;
const MAGIC: [u8; 4] = *b"SRMP";
const VERSION: u8 = 1;

/// What a message carries. Each round of each protocol expects one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MsgKind {
    /// Session/batch parameters and commitments, compared by every helper.
    Hello = 1,
    /// Shares of values being opened (online) or Beaver openings.
    Open = 2,
    /// A replicated-sharing reshare (AFLNO multiplication).
    Reshare = 3,
    /// A replicated opening: components to the next helper, a hash to the previous.
    RssOpen = 4,
    /// Coin-toss seed reveal.
    CoinReveal = 5,
    /// MAC check: commitment to σ_i and the transcript hash.
    CheckCommit = 6,
    /// MAC check: σ_i and its salt.
    CheckOpen = 7,
    /// Preprocessing: final confirmation of the batch digest.
    Confirm = 8,
}

impl MsgKind {
    fn from_code(code: u8) -> Option<MsgKind> {
        Some(match code {
            1 => MsgKind::Hello,
            2 => MsgKind::Open,
            3 => MsgKind::Reshare,
            4 => MsgKind::RssOpen,
            5 => MsgKind::CoinReveal,
            6 => MsgKind::CheckCommit,
            7 => MsgKind::CheckOpen,
            8 => MsgKind::Confirm,
            _ => return None,
        })
    }
}

/// A message body: packed elements and 32-byte blobs.
#[derive(Clone, PartialEq, Eq)]
pub struct Body {
    /// What this is.
    pub kind: MsgKind,
    /// Field elements (shares being opened: helper-to-helper only).
    pub elems: Vec<F127>,
    /// 32-byte values.
    pub blobs: Vec<[u8; 32]>,
}

impl core::fmt::Debug for Body {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Bodies hold shares: print only their shape.
        write!(
            f,
            "Body({:?}, {} elems, {} blobs)",
            self.kind,
            self.elems.len(),
            self.blobs.len()
        )
    }
}

impl Body {
    /// A body of `kind` with the given contents.
    pub fn new(kind: MsgKind, elems: Vec<F127>, blobs: Vec<[u8; 32]>) -> Body {
        Body { kind, elems, blobs }
    }
}

/// What a receiver expects a round's body to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// Kind.
    pub kind: MsgKind,
    /// Exact element count.
    pub elems: usize,
    /// Exact blob count.
    pub blobs: usize,
}

/// A framed message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// 1 = preprocessing, 2 = online session.
    pub protocol: u8,
    /// Sender's helper index.
    pub sender: u8,
    /// Session or batch id.
    pub session: [u8; 32],
    /// Round number.
    pub round: u32,
    /// Contents.
    pub body: Body,
}

/// The fixed header, readable without touching the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// 1 = preprocessing, 2 = online session.
    pub protocol: u8,
    /// Claimed sender.
    pub sender: u8,
    /// Kind code (not yet validated).
    pub kind: u8,
    /// Session or batch id.
    pub session: [u8; 32],
    /// Round.
    pub round: u32,
    /// Claimed element count (not yet trusted).
    pub elems: u32,
    /// Claimed blob count (not yet trusted).
    pub blobs: u32,
}

/// Why bytes are not an acceptable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the header.
    #[error("message shorter than its {HEADER_BYTES}-byte header")]
    TooShort,
    /// Not a sealroom MPC message.
    #[error("bad magic")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Unknown kind code.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A different kind than the round expects.
    #[error("expected a {expected:?} message, got {got:?}")]
    WrongKind {
        /// Expected.
        expected: MsgKind,
        /// Received.
        got: MsgKind,
    },
    /// Element count differs from what the round expects.
    #[error("expected {expected} elements, message claims {claimed}")]
    WrongElementCount {
        /// Expected.
        expected: usize,
        /// Claimed.
        claimed: u32,
    },
    /// Blob count differs from what the round expects.
    #[error("expected {expected} blobs, message claims {claimed}")]
    WrongBlobCount {
        /// Expected.
        expected: usize,
        /// Claimed.
        claimed: u32,
    },
    /// The buffer length does not match the header's counts.
    #[error("length {actual} does not match the header ({expected} bytes)")]
    LengthMismatch {
        /// Implied by the (already validated) counts.
        expected: usize,
        /// Actual.
        actual: usize,
    },
    /// An element ≥ p.
    #[error("a field element is not canonical")]
    NonCanonicalElement,
}

impl Message {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let b = &self.body;
        let mut out =
            Vec::with_capacity(HEADER_BYTES + b.elems.len() * ELEMENT_BYTES + b.blobs.len() * 32);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, self.protocol, self.sender, b.kind as u8]);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(&(b.elems.len() as u32).to_le_bytes());
        out.extend_from_slice(&(b.blobs.len() as u32).to_le_bytes());
        kernels::encode_into(&b.elems, &mut out);
        for blob in &b.blobs {
            out.extend_from_slice(blob);
        }
        out
    }

    /// Reads the header only.
    pub fn peek_header(bytes: &[u8]) -> Result<Header, WireError> {
        let head = bytes.get(..HEADER_BYTES).ok_or(WireError::TooShort)?;
        let (magic, rest) = head.split_at(4);
        if magic != MAGIC {
            return Err(WireError::BadMagic);
        }
        let (meta, rest) = rest.split_at(4);
        let [version, protocol, sender, kind] = [meta[0], meta[1], meta[2], meta[3]];
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let (session, rest) = rest.split_at(32);
        let mut s = [0u8; 32];
        s.copy_from_slice(session);
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&rest[4 * i..4 * i + 4]);
            u32::from_le_bytes(w)
        };
        Ok(Header {
            protocol,
            sender,
            kind,
            session: s,
            round: word(0),
            elems: word(1),
            blobs: word(2),
        })
    }

    /// Decodes a message whose body must match `expect` exactly.
    pub fn decode_expecting(bytes: &[u8], expect: &Expect) -> Result<Body, WireError> {
        let h = Message::peek_header(bytes)?;
        let kind = MsgKind::from_code(h.kind).ok_or(WireError::UnknownKind(h.kind))?;
        if kind != expect.kind {
            return Err(WireError::WrongKind {
                expected: expect.kind,
                got: kind,
            });
        }
        if h.elems as usize != expect.elems || u64::from(h.elems) > u64::from(u32::MAX) {
            return Err(WireError::WrongElementCount {
                expected: expect.elems,
                claimed: h.elems,
            });
        }
        if h.blobs as usize != expect.blobs {
            return Err(WireError::WrongBlobCount {
                expected: expect.blobs,
                claimed: h.blobs,
            });
        }
        // Counts now equal our own expectation, so this cannot overflow for
        // any expectation the engine produces (checked_* for safety anyway).
        let elem_bytes = expect.elems.checked_mul(ELEMENT_BYTES);
        let blob_bytes = expect.blobs.checked_mul(32);
        let total = elem_bytes
            .zip(blob_bytes)
            .and_then(|(e, b)| e.checked_add(b))
            .and_then(|x| x.checked_add(HEADER_BYTES));
        let Some(total) = total.filter(|t| *t == bytes.len()) else {
            return Err(WireError::LengthMismatch {
                expected: total.unwrap_or(usize::MAX),
                actual: bytes.len(),
            });
        };
        let elem_end = HEADER_BYTES + expect.elems * ELEMENT_BYTES;
        let mut elems = vec![F127::ZERO; expect.elems];
        kernels::decode_into(&bytes[HEADER_BYTES..elem_end], &mut elems)
            .ok_or(WireError::NonCanonicalElement)?;
        let blobs = bytes[elem_end..total]
            .chunks_exact(32)
            .map(|c| {
                let mut b = [0u8; 32];
                b.copy_from_slice(c);
                b
            })
            .collect();
        Ok(Body { kind, elems, blobs })
    }

    /// Decodes a message of any shape with at most `max_elems` elements and
    /// `max_blobs` blobs (for tools and the fuzz target; sessions use
    /// [`Message::decode_expecting`]).
    pub fn decode_bounded(
        bytes: &[u8],
        max_elems: usize,
        max_blobs: usize,
    ) -> Result<Message, WireError> {
        let h = Message::peek_header(bytes)?;
        let kind = MsgKind::from_code(h.kind).ok_or(WireError::UnknownKind(h.kind))?;
        if h.elems as usize > max_elems {
            return Err(WireError::WrongElementCount {
                expected: max_elems,
                claimed: h.elems,
            });
        }
        if h.blobs as usize > max_blobs {
            return Err(WireError::WrongBlobCount {
                expected: max_blobs,
                claimed: h.blobs,
            });
        }
        let expect = Expect {
            kind,
            elems: h.elems as usize,
            blobs: h.blobs as usize,
        };
        let body = Message::decode_expecting(bytes, &expect)?;
        Ok(Message {
            protocol: h.protocol,
            sender: h.sender,
            session: h.session,
            round: h.round,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            protocol: 2,
            sender: 1,
            session: [7; 32],
            round: 3,
            body: Body::new(
                MsgKind::Open,
                vec![F127::from_u64(5), F127::ONE.neg()],
                vec![[9; 32]],
            ),
        }
    }

    fn expect() -> Expect {
        Expect {
            kind: MsgKind::Open,
            elems: 2,
            blobs: 1,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(bytes.len(), HEADER_BYTES + 32 + 32);
        assert_eq!(
            Message::decode_expecting(&bytes, &expect()),
            Ok(m.body.clone())
        );
        assert_eq!(Message::decode_bounded(&bytes, 2, 1), Ok(m));
    }

    #[test]
    fn malformed_inputs_are_refused_without_panicking() {
        let good = sample().encode();
        let e = expect();
        assert_eq!(Message::decode_expecting(&[], &e), Err(WireError::TooShort));
        assert_eq!(
            Message::decode_expecting(&good[..51], &e),
            Err(WireError::TooShort)
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            Message::decode_expecting(&bad, &e),
            Err(WireError::BadMagic)
        );
        let mut bad = good.clone();
        bad[4] = 9;
        assert_eq!(
            Message::decode_expecting(&bad, &e),
            Err(WireError::UnsupportedVersion(9))
        );
        let mut bad = good.clone();
        bad[7] = 200;
        assert_eq!(
            Message::decode_expecting(&bad, &e),
            Err(WireError::UnknownKind(200))
        );
        let mut bad = good.clone();
        bad[7] = MsgKind::Hello as u8;
        assert!(matches!(
            Message::decode_expecting(&bad, &e),
            Err(WireError::WrongKind { .. })
        ));
        // A huge claimed count is refused by comparison, never allocated.
        let mut bad = good.clone();
        bad[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Message::decode_expecting(&bad, &e),
            Err(WireError::WrongElementCount { .. })
        ));
        assert!(matches!(
            Message::decode_bounded(&bad, 1 << 20, 4),
            Err(WireError::WrongElementCount { .. })
        ));
        let mut bad = good.clone();
        bad[48..52].copy_from_slice(&5u32.to_le_bytes());
        assert!(matches!(
            Message::decode_expecting(&bad, &e),
            Err(WireError::WrongBlobCount { .. })
        ));
        // Truncated or padded bodies.
        assert!(matches!(
            Message::decode_expecting(&good[..good.len() - 1], &e),
            Err(WireError::LengthMismatch { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            Message::decode_expecting(&long, &e),
            Err(WireError::LengthMismatch { .. })
        ));
        // A non-canonical element.
        let mut bad = good.clone();
        bad[HEADER_BYTES..HEADER_BYTES + 16].copy_from_slice(&crate::field::P.to_le_bytes());
        assert_eq!(
            Message::decode_expecting(&bad, &e),
            Err(WireError::NonCanonicalElement)
        );
        // Every prefix and every single-byte corruption decodes or errors; none panics.
        for cut in 0..good.len() {
            let _ = Message::decode_expecting(&good[..cut], &e);
            let _ = Message::decode_bounded(&good[..cut], 4, 4);
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xA5;
            let _ = Message::decode_expecting(&b, &e);
            let _ = Message::decode_bounded(&b, 4, 4);
        }
    }
}
