//! The generated node services and the chunking of large payloads.

/// Generated from `proto/sealroom/v1/node.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/sealroom.node.v1.rs"));
}

/// Largest piece of a streamed payload. Vectors above it travel in chunks.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest single gRPC message a node decodes (one chunk plus framing, or a
/// signed envelope such as a descriptor listing many clients).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Largest round outcome the coordinator sends an admin (and an admin
/// accepts): it carries the sum twice, signed and dequantized, 16 bytes per
/// element, so 256 MiB covers rounds of 16 million elements.
pub const MAX_OUTCOME_BYTES: usize = 256 << 20;

/// Splits a payload into chunks of at most [`CHUNK_BYTES`] (at least one).
pub fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return vec![Vec::new()];
    }
    bytes.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect()
}

/// Appends a chunk to a payload, refusing to grow past `limit` bytes.
pub fn append(payload: &mut Vec<u8>, chunk: &[u8], limit: usize) -> Result<(), tonic::Status> {
    if payload.len() + chunk.len() > limit {
        return Err(tonic::Status::resource_exhausted(format!(
            "payload exceeds the limit of {limit} bytes for this round"
        )));
    }
    payload.extend_from_slice(chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_append_round_trip_with_limits() {
        let data = vec![7u8; CHUNK_BYTES * 2 + 5];
        let parts = split(&data);
        assert_eq!(parts.len(), 3);
        let mut joined = Vec::new();
        for p in &parts {
            append(&mut joined, p, data.len()).expect("within limit");
        }
        assert_eq!(joined, data);
        let mut small = Vec::new();
        assert!(append(&mut small, &data, 10).is_err());
        assert_eq!(split(&[]).len(), 1);
    }
}
