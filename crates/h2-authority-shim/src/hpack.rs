//! Re-encoding one HPACK header block (RFC 7541), bounded: the block is split into its field
//! representations first, and each is decoded on its own, so decoding stops at the first
//! field past the size cap. (loona-hpack decodes a whole buffer and its callback cannot stop
//! it: a block of a million one-byte references would be expanded in full.)

use loona_hpack::Decoder;

use crate::wire::encode_literal;

/// The `:authority` pseudo-header.
const AUTHORITY: &[u8] = b":authority";
/// What RFC 7541 §4.1 adds to name and value length for each field of a header list.
const FIELD_OVERHEAD: usize = 32;
/// HPACK integers past 2^28 are not needed for anything within our caps.
const MAX_INTEGER_CONTINUATION_BYTES: usize = 4;

/// A re-encoded header block.
pub(crate) struct Rewritten {
    /// The block as literals without indexing.
    pub(crate) fragment: Vec<u8>,
    /// Whether `:authority` was replaced.
    pub(crate) authority_replaced: bool,
}

/// Decodes one header block and re-encodes every field as a literal without indexing,
/// replacing an `:authority` h2 would reject with `replacement`. Fails once the decoded
/// header list passes `max_list_size`.
pub(crate) fn rewrite_block(
    decoder: &mut Decoder<'static>,
    fragment: &[u8],
    max_list_size: usize,
    replacement: &[u8],
) -> Result<Rewritten, String> {
    let mut out = Vec::with_capacity(fragment.len() + replacement.len());
    let mut list_size = 0usize;
    let mut authority_replaced = false;
    let mut over = false;
    let mut piece_start = 0;
    let mut pos = 0;
    let mut seen_field = false;
    while pos < fragment.len() {
        let (kind, len) = representation(&fragment[pos..])?;
        pos += len;
        if kind == Kind::SizeUpdate {
            // RFC 7541 §4.2: only at the start of a block. A size update is decoded together
            // with the field after it: the decoder rejects a piece that ends in one.
            if seen_field {
                return Err("undecodable HPACK header block: table size update after a field".into());
            }
            continue;
        }
        seen_field = true;
        decoder
            .decode_with_cb(&fragment[piece_start..pos], |name, value| {
                list_size = list_size.saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
                if list_size > max_list_size {
                    over = true;
                    return;
                }
                let value: &[u8] = if name.as_ref() == AUTHORITY && !is_valid_authority(&value) {
                    authority_replaced = true;
                    replacement
                } else {
                    &value
                };
                encode_literal(&mut out, &name, value);
            })
            .map_err(|e| format!("undecodable HPACK header block: {e}"))?;
        if over {
            return Err(format!("decoded HTTP/2 header block larger than {max_list_size} bytes"));
        }
        piece_start = pos;
    }
    if piece_start < fragment.len() {
        // Only size updates are left; the decoder reports that as the error it is.
        decoder
            .decode_with_cb(&fragment[piece_start..], |_, _| {})
            .map_err(|e| format!("undecodable HPACK header block: {e}"))?;
    }
    Ok(Rewritten { fragment: out, authority_replaced })
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Field,
    SizeUpdate,
}

/// The kind and length in bytes of the field representation at the start of `block`
/// (RFC 7541 §6), without decoding it.
fn representation(block: &[u8]) -> Result<(Kind, usize), String> {
    let Some(&first) = block.first() else {
        return Err("undecodable HPACK header block: empty representation".into());
    };
    // (integer prefix bits, whether a name and value literal may follow, kind)
    let (prefix, literal, kind) = match first {
        0x80..=0xff => (7, false, Kind::Field),      // indexed field
        0x40..=0x7f => (6, true, Kind::Field),       // literal, incremental indexing
        0x20..=0x3f => (5, false, Kind::SizeUpdate), // dynamic table size update
        0x00..=0x1f => (4, true, Kind::Field),       // literal, without / never indexed
    };
    let (index, mut len) = integer(block, prefix)?;
    if literal {
        if index == 0 {
            len += string_len(&block[len..])?;
        }
        len += string_len(&block[len..])?;
    }
    Ok((kind, len))
}

/// Length of the string literal (RFC 7541 §5.2) at the start of `bytes`, which must hold it.
fn string_len(bytes: &[u8]) -> Result<usize, String> {
    let (len, header) = integer(bytes, 7)?;
    let total = header.checked_add(len).filter(|&t| t <= bytes.len());
    total.ok_or_else(|| "undecodable HPACK header block: string literal past the block's end".into())
}

/// An integer with an N-bit prefix (RFC 7541 §5.1): (value, bytes used).
fn integer(bytes: &[u8], prefix_bits: u8) -> Result<(usize, usize), String> {
    let truncated = || "undecodable HPACK header block: truncated integer".to_owned();
    let max_prefix = (1usize << prefix_bits) - 1;
    let first = usize::from(*bytes.first().ok_or_else(truncated)?) & max_prefix;
    if first < max_prefix {
        return Ok((first, 1));
    }
    let mut value = max_prefix;
    for (i, &byte) in bytes[1..].iter().take(MAX_INTEGER_CONTINUATION_BYTES).enumerate() {
        value += usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 2));
        }
    }
    if bytes.len() > MAX_INTEGER_CONTINUATION_BYTES + 1 {
        Err("undecodable HPACK header block: integer too large".into())
    } else {
        Err(truncated())
    }
}

/// What h2 accepts: it parses `:authority` with `http::uri::Authority`.
pub(crate) fn is_valid_authority(value: &[u8]) -> bool {
    !value.is_empty() && http::uri::Authority::try_from(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode_string;

    #[test]
    fn representation_lengths_match_the_encoding() {
        let mut literal = vec![0x00];
        encode_string(&mut literal, b"name");
        encode_string(&mut literal, &[b'v'; 300]);
        let mut indexed_name = vec![0x41];
        encode_string(&mut indexed_name, b"/var/run/aws.sock");
        let cases: [(&[u8], Kind, usize); 5] = [
            (&[0x82], Kind::Field, 1),
            (&[0xff, 0x80, 0x01], Kind::Field, 3),
            (&[0x3f, 0xe1, 0x1f], Kind::SizeUpdate, 3),
            (&literal, Kind::Field, literal.len()),
            (&indexed_name, Kind::Field, indexed_name.len()),
        ];
        for (bytes, kind, len) in cases {
            assert_eq!(representation(bytes), Ok((kind, len)), "{bytes:?}");
        }
    }

    #[test]
    fn malformed_representations_are_errors() {
        for bytes in [&[0xff][..], &[0x00, 0x05, b'a'], &[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &[0x40]]
        {
            assert!(representation(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn decoding_stops_at_the_cap() {
        // References to `:method GET` (42 bytes each as RFC 7541 counts them), then a
        // truncated integer: decoding must stop at the 11th field, before reaching it.
        let mut block = vec![0x82; 1000];
        block.push(0xff);
        let mut decoder = Decoder::new();
        let err = rewrite_block(&mut decoder, &block, 420, b"localhost").err().unwrap_or_default();
        assert!(err.contains("larger than 420"), "{err}");
        let ok = rewrite_block(&mut Decoder::new(), &block[..10], 420, b"localhost");
        assert!(ok.is_ok());
    }

    #[test]
    fn size_updates_only_at_the_start() {
        let mut decoder = Decoder::new();
        assert!(rewrite_block(&mut decoder, &[0x20, 0x82], 1000, b"x").is_ok());
        assert!(rewrite_block(&mut decoder, &[0x82, 0x20], 1000, b"x").is_err());
        assert!(rewrite_block(&mut decoder, &[0x3f, 0xe1, 0x1f], 1000, b"x").is_err());
    }
}
