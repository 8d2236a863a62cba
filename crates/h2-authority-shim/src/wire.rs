//! The HTTP/2 wire format the shim reads and writes (RFC 9113 §4.1 frame headers, RFC 7541
//! literals), kept in one place for the shim and for tests that write raw HTTP/2 (this
//! crate's, and the provider's hostile-client tests). Not part of the shim's API.

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const FRAME_HEADER_LEN: usize = 9;

pub const TYPE_DATA: u8 = 0x0;
pub const TYPE_HEADERS: u8 = 0x1;
pub const TYPE_RST_STREAM: u8 = 0x3;
pub const TYPE_SETTINGS: u8 = 0x4;
pub const TYPE_GOAWAY: u8 = 0x7;
pub const TYPE_CONTINUATION: u8 = 0x9;

pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// The default SETTINGS_MAX_FRAME_SIZE, which the server (h2 under tonic) keeps: larger
/// header frames are a protocol error h2 would have raised, and the frames we write are
/// never larger.
pub const MAX_FRAME_PAYLOAD: usize = 16_384;

/// A frame header. `len` must fit the 24-bit length field (the shim never writes a payload
/// over MAX_FRAME_PAYLOAD).
pub fn write_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream_id: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

/// A whole frame: header and payload.
pub fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    write_frame_header(&mut out, payload.len(), kind, flags, stream_id);
    out.extend_from_slice(payload);
    out
}

/// A header block as one HEADERS frame with `flags` (`prefix`, e.g. its PRIORITY fields,
/// before the block) and as many CONTINUATIONs as it takes at MAX_FRAME_PAYLOAD;
/// END_HEADERS on the last. `prefix` must be shorter than MAX_FRAME_PAYLOAD.
pub fn header_frames(stream_id: u32, flags: u8, prefix: &[u8], block: &[u8]) -> Vec<u8> {
    let (first, rest) = block.split_at(block.len().min(MAX_FRAME_PAYLOAD - prefix.len()));
    let flags = if rest.is_empty() { flags | FLAG_END_HEADERS } else { flags };
    let frame_count = 1 + rest.len().div_ceil(MAX_FRAME_PAYLOAD);
    let mut out = Vec::with_capacity(frame_count * FRAME_HEADER_LEN + prefix.len() + block.len());
    write_frame_header(&mut out, prefix.len() + first.len(), TYPE_HEADERS, flags, stream_id);
    out.extend_from_slice(prefix);
    out.extend_from_slice(first);
    let mut chunks = rest.chunks(MAX_FRAME_PAYLOAD).peekable();
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { FLAG_END_HEADERS } else { 0 };
        write_frame_header(&mut out, chunk.len(), TYPE_CONTINUATION, flags, stream_id);
        out.extend_from_slice(chunk);
    }
    out
}

/// "Literal Header Field without Indexing — New Name" (RFC 7541 §6.2.2), without Huffman
/// coding: it leaves the server's dynamic table alone.
pub fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_string(out, name);
    encode_string(out, value);
}

/// "Literal Header Field with Incremental Indexing — New Name" (RFC 7541 §6.2.1): the field
/// also enters the decoder's dynamic table.
pub fn encode_indexed_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x40);
    encode_string(out, name);
    encode_string(out, value);
}

/// A string literal with H = 0 (RFC 7541 §5.2).
pub fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, 7, s.len());
    out.extend_from_slice(s);
}

/// An integer with an N-bit prefix (RFC 7541 §5.1). The prefix's unused high bits are left
/// 0: with N = 7 that is the H bit of a string length.
pub fn encode_integer(out: &mut Vec<u8>, prefix_bits: u8, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(value as u8);
        return;
    }
    out.push(max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A header block of literals; with `indexing` they also enter the decoder's dynamic table.
pub fn header_block(fields: &[(&str, &str)], indexing: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        let encode = if indexing { encode_indexed_literal } else { encode_literal };
        encode(&mut out, name.as_bytes(), value.as_bytes());
    }
    out
}
