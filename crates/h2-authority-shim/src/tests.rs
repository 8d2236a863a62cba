use super::*;
use crate::hpack::is_valid_authority;
use crate::wire::*;
use loona_hpack::Encoder;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

const SOCKET_PATH: &[u8] = b"/var/run/x/aws.sock";
const AUTHORITY: &[u8] = b":authority";
/// The received cap of a header block under the default limits.
const MAX_HEADER_BLOCK: usize = DEFAULT_MAX_HEADER_LIST_SIZE * RAW_PER_DECODED;

fn grpc_headers(authority: &[u8]) -> Headers {
    [
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", b"/v1alpha1.CSIDriverProvider/Mount"),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
        (b"user-agent", b"grpc-go/1.50.1"),
        (b"te", b"trailers"),
        (b"grpc-timeout", b"29999889u"),
    ]
    .iter()
    .map(|(n, v)| (n.to_vec(), v.to_vec()))
    .collect()
}

fn with_authority(headers: &Headers, authority: &[u8]) -> Headers {
    let mut headers = headers.clone();
    for (name, value) in &mut headers {
        if name == AUTHORITY {
            *value = authority.to_vec();
        }
    }
    headers
}

fn hpack(encoder: &mut Encoder<'_>, headers: &Headers) -> Vec<u8> {
    encoder.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])))
}

fn settings_frame() -> Vec<u8> {
    // SETTINGS_MAX_CONCURRENT_STREAMS = 100
    frame(TYPE_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])
}

/// Preface followed by the given frames.
fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

#[derive(Debug, PartialEq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

/// Splits a byte stream into frames; panics on a partial frame.
fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let h = FrameHeader::parse(bytes).expect("partial frame header");
        let end = FRAME_HEADER_LEN + h.len;
        frames.push(Frame {
            kind: h.kind,
            flags: h.flags,
            stream_id: h.stream_id,
            payload: bytes[FRAME_HEADER_LEN..end].to_vec(),
        });
        bytes = &bytes[end..];
    }
    frames
}

fn parse_connection(bytes: &[u8]) -> Vec<Frame> {
    let frames = bytes.strip_prefix(PREFACE).expect("output lost the preface");
    parse_frames(frames)
}

/// Decodes each header block of our output with a *fresh* decoder: the
/// rewritten blocks must not depend on any dynamic table.
fn decode_blocks(frames: &[Frame]) -> Vec<Headers> {
    let mut blocks = Vec::new();
    let mut fragment = Vec::new();
    for f in frames {
        match f.kind {
            TYPE_HEADERS => {
                assert!(fragment.is_empty(), "HEADERS inside an open block");
                assert_eq!(f.flags & FLAG_PADDED, 0, "padding left in output");
                let skip = if f.flags & FLAG_PRIORITY != 0 { PRIORITY_LEN } else { 0 };
                fragment.extend_from_slice(&f.payload[skip..]);
            }
            TYPE_CONTINUATION => fragment.extend_from_slice(&f.payload),
            _ => continue,
        }
        assert!(f.payload.len() <= MAX_FRAME_PAYLOAD, "oversized frame");
        if f.flags & FLAG_END_HEADERS != 0 {
            blocks.push(Decoder::new().decode(&fragment).expect("output is valid HPACK"));
            fragment.clear();
        }
    }
    assert!(fragment.is_empty(), "unterminated header block");
    blocks
}

/// Serves `data` in reads of at most `chunk` bytes, answering every other
/// poll with Pending (after waking) to exercise the wrapper's resumption.
struct ChunkedReader {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    stall: bool,
}

impl ChunkedReader {
    fn new(data: Vec<u8>, chunk: usize) -> Self {
        Self { data, pos: 0, chunk, stall: false }
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.stall = !this.stall;
        if this.stall {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = this.chunk.min(buf.remaining()).min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Runs `input` through the wrapper: inner reads of `chunk` bytes, caller
/// reads of `read_size` bytes.
async fn rewrite(input: Vec<u8>, chunk: usize, read_size: usize) -> io::Result<Vec<u8>> {
    rewrite_with(&Config::default(), input, chunk, read_size).await
}

/// [`rewrite`] with the given limits.
async fn rewrite_with(
    config: &Config,
    input: Vec<u8>,
    chunk: usize,
    read_size: usize,
) -> io::Result<Vec<u8>> {
    let mut wrapper = config.wrap(ChunkedReader::new(input, chunk));
    let mut out = Vec::new();
    let mut buf = vec![0; read_size];
    loop {
        match wrapper.read(&mut buf).await? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Checks `input` against all the chunkings that matter and returns the
/// output, which must be the same for every one of them.
async fn rewrite_every_way(input: Vec<u8>) -> Vec<u8> {
    let expected = rewrite(input.clone(), usize::MAX, 64 * 1024).await.unwrap();
    for (chunk, read_size) in [(1, 8192), (7, 8192), (7, 3), (4096, 100), (100_000, 8192)] {
        let out = rewrite(input.clone(), chunk, read_size).await.unwrap();
        assert!(out == expected, "output differs for chunk {chunk}, read {read_size}");
    }
    expected
}

fn invalid_data(result: io::Result<Vec<u8>>) -> String {
    let err = result.expect_err("malformed input accepted");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    err.to_string()
}

fn encoded(value: usize, prefix_bits: u8) -> Vec<u8> {
    let mut out = Vec::new();
    encode_integer(&mut out, prefix_bits, value);
    out
}

#[test]
fn integer_encoding_matches_rfc7541() {
    // RFC 7541 C.1.1 to C.1.3
    assert_eq!(encoded(10, 5), [0x0a]);
    assert_eq!(encoded(1337, 5), [0x1f, 0x9a, 0x0a]);
    assert_eq!(encoded(42, 8), [0x2a]);
    // 7-bit prefix (string lengths) around the prefix boundary.
    assert_eq!(encoded(0, 7), [0x00]);
    assert_eq!(encoded(126, 7), [0x7e]);
    assert_eq!(encoded(127, 7), [0x7f, 0x00]);
    assert_eq!(encoded(128, 7), [0x7f, 0x01]);
    assert_eq!(encoded(255, 7), [0x7f, 0x80, 0x01]);
    assert_eq!(encoded(1 << 20, 7), [0x7f, 0x81, 0xff, 0x3f]);
    for value in [0, 1, 126, 127, 128, 16_383, 16_384, 1 << 20, (1 << 28) - 1] {
        for prefix in [5, 7, 8] {
            let reference = loona_hpack::encoder::encode_integer(value, prefix);
            assert_eq!(encoded(value, prefix), reference, "{value} with {prefix}-bit prefix");
        }
    }
}

#[test]
fn literal_encoding_is_without_indexing() {
    let mut out = Vec::new();
    encode_literal(&mut out, b"custom-key", b"custom-header");
    // RFC 7541 C.2.2, but with a literal name.
    let mut expected = vec![0x00, 0x0a];
    expected.extend_from_slice(b"custom-key");
    expected.push(0x0d);
    expected.extend_from_slice(b"custom-header");
    assert_eq!(out, expected);
}

#[test]
fn authority_validity_follows_http_crate() {
    for good in [&b"localhost"[..], b"example.com:443", b"127.0.0.1:50051", b"[::1]:80"] {
        assert!(is_valid_authority(good), "{good:?}");
    }
    for bad in [&b""[..], SOCKET_PATH, b"aws.sock/x", b"a b", b"\xff"] {
        assert!(!is_valid_authority(bad), "{bad:?}");
    }
}

#[tokio::test]
async fn socket_path_authority_becomes_localhost() {
    let headers = grpc_headers(SOCKET_PATH);
    let block = hpack(&mut Encoder::new(), &headers);
    let data = frame(TYPE_DATA, FLAG_END_STREAM, 1, &[7; 300]);
    let input =
        connection(&[settings_frame(), frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block), data.clone()]);

    let frames = parse_connection(&rewrite_every_way(input).await);

    assert_eq!(frames.len(), 3);
    assert_eq!(parse_frames(&settings_frame()), frames[..1]);
    assert_eq!(frames[1].kind, TYPE_HEADERS);
    assert_eq!(frames[1].flags, FLAG_END_HEADERS);
    assert_eq!(frames[1].stream_id, 1);
    assert_eq!(decode_blocks(&frames), [with_authority(&headers, b"localhost")]);
    assert_eq!(parse_frames(&data), frames[2..]);
}

#[tokio::test]
async fn empty_authority_becomes_localhost() {
    let headers = grpc_headers(b"");
    let block = hpack(&mut Encoder::new(), &headers);
    let input = connection(&[frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block)]);

    let frames = parse_connection(&rewrite_every_way(input).await);

    assert_eq!(decode_blocks(&frames), [with_authority(&headers, b"localhost")]);
}

#[tokio::test]
async fn valid_authorities_are_kept() {
    for authority in [&b"localhost"[..], b"example.com:443"] {
        let headers = grpc_headers(authority);
        let block = hpack(&mut Encoder::new(), &headers);
        let input = connection(&[frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block)]);

        let frames = parse_connection(&rewrite_every_way(input).await);

        assert_eq!(decode_blocks(&frames), [headers]);
    }
}

#[tokio::test]
async fn later_blocks_may_use_the_clients_dynamic_table() {
    let mut encoder = Encoder::new();
    let first = grpc_headers(SOCKET_PATH);
    let mut second = first.clone();
    second[2].1 = b"/v1alpha1.CSIDriverProvider/Version".to_vec();
    let first_block = hpack(&mut encoder, &first);
    let second_block = hpack(&mut encoder, &second);
    // The second block really depends on the first's table entries.
    assert!(Decoder::new().decode(&second_block).is_err());
    // loona's Encoder never indexes `:authority` (its name is in the static
    // table), but grpc-go does; the last block refers to it by index.
    let input = connection(&[
        frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &first_block),
        frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &second_block),
        frame(TYPE_HEADERS, FLAG_END_HEADERS, 5, &request_block(SOCKET_PATH, true)),
        frame(TYPE_HEADERS, FLAG_END_HEADERS, 7, &REPEATED_REQUEST_BLOCK),
    ]);

    let frames = parse_connection(&rewrite_every_way(input).await);

    assert_eq!(frames[1].stream_id, 3);
    assert_eq!(frames[1].flags, FLAG_END_HEADERS | FLAG_END_STREAM);
    let localhost_request = request_headers(b"localhost");
    assert_eq!(
        decode_blocks(&frames),
        [
            with_authority(&first, b"localhost"),
            with_authority(&second, b"localhost"),
            localhost_request.clone(),
            localhost_request,
        ]
    );
}

#[tokio::test]
async fn padding_is_dropped_and_priority_kept() {
    let headers = grpc_headers(SOCKET_PATH);
    let block = hpack(&mut Encoder::new(), &headers);
    let priority = [0x80, 0, 0, 0, 15];
    let mut payload = vec![10];
    payload.extend_from_slice(&priority);
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0; 10]);
    let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS;
    let input = connection(&[frame(TYPE_HEADERS, flags, 5, &payload)]);

    let frames = parse_connection(&rewrite_every_way(input).await);

    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].flags, FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS);
    assert_eq!(frames[0].payload[..PRIORITY_LEN], priority);
    assert_eq!(decode_blocks(&frames), [with_authority(&headers, b"localhost")]);
}

#[tokio::test]
async fn padding_alone_is_stripped() {
    let headers = grpc_headers(SOCKET_PATH);
    let block = hpack(&mut Encoder::new(), &headers);
    let mut payload = vec![3];
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0; 3]);
    let input = connection(&[frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &payload)]);

    let frames = parse_connection(&rewrite_every_way(input).await);

    assert_eq!(frames[0].flags, FLAG_END_HEADERS);
    assert_eq!(decode_blocks(&frames), [with_authority(&headers, b"localhost")]);
}

#[tokio::test]
async fn a_connection_that_starts_with_a_valid_authority_passes_untouched() {
    // Two requests, the second referring to the client's dynamic table, padding, DATA and
    // SETTINGS: byte for byte as sent, however the bytes arrive.
    let mut encoder = Encoder::new();
    let first = hpack(&mut encoder, &grpc_headers(b"localhost"));
    let second = hpack(&mut encoder, &grpc_headers(b"localhost"));
    let mut padded = vec![2];
    padded.extend_from_slice(&second);
    padded.extend_from_slice(&[0; 2]);
    let input = connection(&[
        frame(TYPE_SETTINGS, 0, 0, &[]),
        frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &first),
        frame(TYPE_DATA, FLAG_END_STREAM, 1, b"\0\0\0\0\0"),
        frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 3, &padded),
    ]);
    assert_eq!(rewrite_every_way(input.clone()).await, input);
}

#[tokio::test]
async fn a_rewritten_connection_rewrites_every_later_block() {
    let mut encoder = Encoder::new();
    let old = hpack(&mut encoder, &grpc_headers(SOCKET_PATH));
    let fine = hpack(&mut encoder, &grpc_headers(b"localhost"));
    let input = connection(&[
        frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &old),
        frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &fine),
    ]);
    let frames = parse_connection(&rewrite_every_way(input).await);
    // Both re-encoded: each decodes on its own, without the client's dynamic table.
    let localhost = grpc_headers(b"localhost");
    assert_eq!(decode_blocks(&frames), [localhost.clone(), localhost]);
}

#[tokio::test]
async fn continuation_frames_are_joined() {
    let headers = grpc_headers(SOCKET_PATH);
    let block = hpack(&mut Encoder::new(), &headers);
    let (a, rest) = block.split_at(5);
    let (b, c) = rest.split_at(20);
    let input = connection(&[
        frame(TYPE_HEADERS, FLAG_END_STREAM, 1, a),
        frame(TYPE_CONTINUATION, 0, 1, b),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, c),
        frame(TYPE_DATA, 0, 1, b"after"),
    ]);

    let frames = parse_connection(&rewrite_every_way(input).await);

    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].kind, TYPE_HEADERS);
    assert_eq!(frames[0].flags, FLAG_END_STREAM | FLAG_END_HEADERS);
    assert_eq!(decode_blocks(&frames), [with_authority(&headers, b"localhost")]);
    assert_eq!(frames[1].payload, b"after");
}

#[tokio::test]
async fn large_blocks_are_split_into_continuations() {
    let mut headers = grpc_headers(SOCKET_PATH);
    headers.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let block = hpack(&mut Encoder::new(), &headers);
    let mut input_frames = vec![];
    let mut chunks = block.chunks(MAX_FRAME_PAYLOAD - PRIORITY_LEN).peekable();
    let mut first = [0, 0, 0, 3, 200].to_vec();
    first.extend_from_slice(chunks.next().unwrap());
    input_frames.push(frame(TYPE_HEADERS, FLAG_PRIORITY, 1, &first));
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { FLAG_END_HEADERS } else { 0 };
        input_frames.push(frame(TYPE_CONTINUATION, flags, 1, chunk));
    }
    let input = connection(&input_frames);
    // Larger than the default cap (h2's 16 KiB), as a server with a higher limit allows.
    let config = Config::default().max_header_list_size(64 * 1024);

    let out = rewrite_with(&config, input.clone(), usize::MAX, 64 * 1024).await.unwrap();
    for (chunk, read_size) in [(1, 8192), (7, 3), (4096, 100)] {
        assert!(rewrite_with(&config, input.clone(), chunk, read_size).await.unwrap() == out);
    }
    let frames = parse_connection(&out);

    let kinds: Vec<_> = frames.iter().map(|f| (f.kind, f.flags, f.payload.len())).collect();
    assert_eq!(kinds[0], (TYPE_HEADERS, FLAG_PRIORITY, MAX_FRAME_PAYLOAD));
    assert_eq!(kinds[1], (TYPE_CONTINUATION, 0, MAX_FRAME_PAYLOAD));
    assert_eq!(kinds[2].0, TYPE_CONTINUATION);
    assert_eq!(kinds[2].1, FLAG_END_HEADERS);
    assert_eq!(kinds.len(), 3);
    assert_eq!(decode_blocks(&frames), [with_authority(&headers, b"localhost")]);
}

#[tokio::test]
async fn large_data_frames_pass_unchanged() {
    let body: Vec<u8> = (0..4 * 1024 * 1024 + 5).map(|i| (i % 251) as u8).collect();
    let block = hpack(&mut Encoder::new(), &grpc_headers(b"localhost"));
    let input = connection(&[
        frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block),
        frame(TYPE_DATA, 0, 1, &body),
        frame(TYPE_DATA, FLAG_END_STREAM, 1, &body[..1000]),
    ]);
    let expected = input.clone();
    let (_, expected_frames) = expected.split_at(PREFACE.len() + FRAME_HEADER_LEN + block.len());

    for (chunk, read_size) in [(16_384, 8192), (100_000, 65_536), (usize::MAX, 1 << 24)] {
        let out = rewrite(input.clone(), chunk, read_size).await.unwrap();
        let (_, out_frames) = out.split_at(out.len() - expected_frames.len());
        assert!(out_frames == expected_frames, "DATA changed for chunk {chunk}");
    }
}

#[tokio::test]
async fn non_http2_input_is_invalid_data() {
    let mut near_miss = PREFACE.to_vec();
    near_miss[23] = b'X';
    near_miss.extend_from_slice(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0xff; 9]));
    for input in [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), near_miss] {
        let reason = invalid_data(rewrite(input, 7, 8192).await);
        assert!(reason.contains("preface"), "{reason}");
    }
    // A client that stops within the preface just ends.
    assert_eq!(rewrite_every_way(b"PRI".to_vec()).await, b"");
}

#[tokio::test]
async fn unfinished_frames_end_at_eof() {
    let block = hpack(&mut Encoder::new(), &grpc_headers(SOCKET_PATH));
    let data = frame(TYPE_DATA, 0, 1, &[1; 100]);
    let headers = frame(TYPE_HEADERS, 0, 3, &block);
    // A DATA frame's payload passes as it arrives, so its start is already out.
    let partial_data = connection(&[data[..50].to_vec()]);
    assert_eq!(rewrite_every_way(partial_data.clone()).await, partial_data);
    // A partial frame header or an unfinished header block is dropped.
    for input in [
        connection(&[data[..5].to_vec()]),
        connection(&[headers[..20].to_vec()]),
        connection(std::slice::from_ref(&headers)),
        connection(&[headers, frame(TYPE_CONTINUATION, 0, 3, &[0x82])]),
    ] {
        assert_eq!(rewrite_every_way(input).await, PREFACE);
    }
}

#[tokio::test]
async fn undecodable_hpack_is_invalid_data() {
    // Index 300 points past the static and the (empty) dynamic table.
    let mut block = Vec::new();
    encode_integer(&mut block, 7, 300);
    block[0] |= 0x80;
    let input = connection(&[frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block)]);
    let reason = invalid_data(rewrite(input, 7, 8192).await);
    assert!(reason.contains("HPACK"), "{reason}");
}

#[tokio::test]
async fn output_before_a_bad_frame_is_delivered_first() {
    let input = connection(&[settings_frame(), frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0xff])]);
    let mut wrapper = AuthorityRewrite::new(ChunkedReader::new(input, usize::MAX));
    let mut out = vec![0; 1024];
    let n = wrapper.read(&mut out).await.unwrap();
    assert_eq!(out[..n], connection(&[settings_frame()]));
    let err = wrapper.read(&mut out).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // The failure sticks.
    assert!(wrapper.read(&mut out).await.is_err());
}

#[tokio::test]
async fn oversized_table_size_update_is_invalid_data() {
    // Dynamic table size update to 8192, beyond what the server allows.
    let mut block = Vec::new();
    encode_integer(&mut block, 5, 8192);
    block[0] |= 0x20;
    block.push(0x82);
    let input = connection(&[frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block)]);
    invalid_data(rewrite(input, 7, 8192).await);
}

#[tokio::test]
async fn bad_frame_layout_is_invalid_data() {
    let block = hpack(&mut Encoder::new(), &grpc_headers(SOCKET_PATH));
    let too_much_padding = [&[200][..], &block].concat();
    let cases = [
        frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 1, &too_much_padding),
        frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 1, &[]),
        frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_PRIORITY, 1, &[0, 0]),
        [frame(TYPE_HEADERS, 0, 1, &block), frame(TYPE_DATA, 0, 1, b"x")].concat(),
        [frame(TYPE_HEADERS, 0, 1, &block), frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &[])].concat(),
    ];
    for case in cases {
        invalid_data(rewrite(connection(&[case]), 7, 8192).await);
    }
}

#[tokio::test]
async fn oversized_header_blocks_are_invalid_data() {
    // A declared length over the cap fails before any payload arrives.
    let mut huge = frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[]);
    huge[..3].copy_from_slice(&[0x20, 0, 0]);
    let (mut client, server) = tokio::io::duplex(1024);
    client.write_all(&connection(&[huge])).await.unwrap();
    let mut wrapper = AuthorityRewrite::new(server);
    let mut out = vec![0; 1024];
    assert_eq!(wrapper.read(&mut out).await.unwrap(), PREFACE.len());
    let err = wrapper.read(&mut out).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);

    // Endless empty CONTINUATION frames add no fragment but still count.
    let mut flood = vec![frame(TYPE_HEADERS, 0, 1, &[0x82])];
    flood.resize(MAX_HEADER_BLOCK / FRAME_HEADER_LEN + 2, frame(TYPE_CONTINUATION, 0, 1, &[]));
    invalid_data(rewrite(connection(&flood), 100_000, 8192).await);

    // HPACK bomb: one large table entry, then a block within the received cap
    // referencing it 60,000 times, 4 KiB each.
    // (An old driver's connection: a connection that starts with a valid authority is not
    // decoded here at all, and h2 bounds it itself.)
    let entry = vec![(b"x-bomb".to_vec(), vec![b'b'; 4000])];
    let mut encoder = Encoder::new();
    let mut first_fields = grpc_headers(SOCKET_PATH);
    first_fields.extend(entry.clone());
    let first = hpack(&mut encoder, &first_fields);
    let bomb = hpack(&mut encoder, &entry).repeat(60_000);
    assert_eq!(bomb[0], 0x80 | 62);
    let frames = vec![frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &first), header_frames(3, 0, &[], &bomb)];
    let reason = invalid_data(rewrite(connection(&frames), 100_000, 8192).await);
    assert!(reason.contains("decoded"), "{reason}");
}

#[tokio::test]
async fn arbitrary_frames_never_panic() {
    // xorshift: deterministic, so a failure reproduces.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = hpack(&mut Encoder::new(), &grpc_headers(SOCKET_PATH));
    for _ in 0..300 {
        let mut frames = Vec::new();
        for _ in 0..next() % 6 {
            let kind = [TYPE_HEADERS, TYPE_CONTINUATION, TYPE_DATA][next() as usize % 3];
            let flags = next() as u8;
            let mut payload = valid.clone();
            payload.truncate(next() as usize % (valid.len() + 1));
            for _ in 0..next() % 3 {
                let i = next() as usize % (payload.len() + 1);
                payload.insert(i, next() as u8);
            }
            frames.push(frame(kind, flags, next() as u32 % 4, &payload));
        }
        let chunk = 1 + next() as usize % 50;
        if let Err(err) = rewrite(connection(&frames), chunk, 1 + chunk / 2).await {
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
    }
}

#[tokio::test]
async fn available_output_is_returned_without_waiting_for_more() {
    let block = hpack(&mut Encoder::new(), &grpc_headers(SOCKET_PATH));
    let headers = frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block);
    let data = frame(TYPE_DATA, 0, 1, &[9; 1000]);
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let mut wrapper = AuthorityRewrite::new(server);
    let mut out = vec![0; 64 * 1024];
    let mut read = async |wrapper: &mut AuthorityRewrite<_>| {
        let n = tokio::time::timeout(Duration::from_secs(5), wrapper.read(&mut out))
            .await
            .expect("read blocked although output was available")
            .unwrap();
        out[..n].to_vec()
    };

    // Settings plus half a HEADERS frame: the settings come out now.
    client.write_all(&connection(&[settings_frame(), headers[..10].to_vec()])).await.unwrap();
    assert_eq!(read(&mut wrapper).await, connection(&[settings_frame()]));
    // The rest of HEADERS plus part of a DATA frame: both come out.
    client.write_all(&[&headers[10..], &data[..100]].concat()).await.unwrap();
    let got = read(&mut wrapper).await;
    assert_eq!(got[got.len() - 100..], data[..100]);
    // The rest of the DATA frame goes through as it arrives.
    client.write_all(&data[100..600]).await.unwrap();
    assert_eq!(read(&mut wrapper).await, data[100..600]);
    client.write_all(&data[600..]).await.unwrap();
    drop(client);
    assert_eq!(read(&mut wrapper).await, data[600..]);
    assert_eq!(read(&mut wrapper).await, b"");
}

#[tokio::test]
async fn writes_pass_through() {
    let (mut client, server) = tokio::io::duplex(1024);
    let mut wrapper = AuthorityRewrite::new(server);
    wrapper.write_all(b"server bytes").await.unwrap();
    wrapper.flush().await.unwrap();
    wrapper.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"server bytes");
}

#[test]
fn wrapper_is_unpin_for_unpin_streams() {
    fn assert_unpin<T: Unpin>() {}
    assert_unpin::<AuthorityRewrite<tokio::net::UnixStream>>();
}

/// What became of a request, as seen by the client.
#[derive(Debug, PartialEq)]
enum Outcome {
    Response(Headers),
    Reset(u32),
}

/// Serves one connection with a real h2 server that answers every
/// request with an empty 200.
async fn serve_h2<T: AsyncRead + AsyncWrite + Unpin>(io: T) {
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((_request, mut respond))) = conn.accept().await {
        let _ = respond.send_response(http::Response::new(()), true);
    }
}

async fn start_server(wrap: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aws.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        if wrap {
            serve_h2(AuthorityRewrite::new(stream)).await;
        } else {
            serve_h2(stream).await;
        }
    });
    (dir, path)
}

/// Speaks raw HTTP/2 as an old grpc-go client would: sends the header
/// blocks on streams 1, 3, ... and collects what the server answers.
async fn exchange(path: &std::path::Path, blocks: &[Vec<u8>]) -> Vec<(u32, Outcome)> {
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let mut request = connection(&[frame(TYPE_SETTINGS, 0, 0, &[])]);
    for (i, block) in blocks.iter().enumerate() {
        let stream_id = 2 * i as u32 + 1;
        request.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream_id, block));
    }
    stream.write_all(&request).await.unwrap();

    let mut decoder = Decoder::new();
    let mut outcomes = Vec::new();
    let mut header = [0; FRAME_HEADER_LEN];
    while outcomes.len() < blocks.len() {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header));
        read.await.expect("server went silent").expect("server closed");
        let h = FrameHeader::parse(&header).unwrap();
        let mut payload = vec![0; h.len];
        stream.read_exact(&mut payload).await.unwrap();
        match h.kind {
            TYPE_SETTINGS if h.flags & FLAG_ACK == 0 => {
                stream.write_all(&frame(TYPE_SETTINGS, FLAG_ACK, 0, &[])).await.unwrap();
            }
            TYPE_HEADERS => {
                let headers = decoder.decode(&payload).unwrap();
                outcomes.push((h.stream_id, Outcome::Response(headers)));
            }
            TYPE_RST_STREAM => {
                let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                outcomes.push((h.stream_id, Outcome::Reset(code)));
            }
            TYPE_GOAWAY => panic!("server sent GOAWAY: {payload:?}"),
            _ => {}
        }
    }
    outcomes
}

fn request_headers(authority: &[u8]) -> Headers {
    [(&b":method"[..], &b"POST"[..]), (b":scheme", b"http"), (b":path", b"/x"), (b":authority", authority)]
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
}

/// The headers of `request_headers`, with `:authority` a literal whose
/// name is static entry 1; with `index` it also goes into the dynamic
/// table (as entry 62), as grpc-go does.
fn request_block(authority: &[u8], index: bool) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static)
    block.push(0x04); // :path, literal without indexing, static name 4
    encode_string(&mut block, b"/x");
    block.push(if index { 0x41 } else { 0x01 });
    encode_string(&mut block, authority);
    block
}

/// `request_headers` again, `:authority` taken from dynamic entry 62.
const REPEATED_REQUEST_BLOCK: [u8; 7] = [0x83, 0x86, 0x04, 2, b'/', b'x', 0x80 | 62];

fn ok_response() -> Outcome {
    Outcome::Response(vec![(b":status".to_vec(), b"200".to_vec())])
}

#[tokio::test]
async fn h2_server_answers_socket_path_authority_through_wrapper() {
    let (_dir, path) = start_server(true).await;
    let socket_path = path.to_str().unwrap().as_bytes();
    assert!(!is_valid_authority(socket_path));
    // The last request takes `:authority` from the client's dynamic table,
    // as grpc-go does on a long-lived connection.
    let blocks = [
        request_block(socket_path, false),
        request_block(socket_path, true),
        REPEATED_REQUEST_BLOCK.to_vec(),
    ];

    let outcomes = exchange(&path, &blocks).await;

    assert_eq!(outcomes, [(1, ok_response()), (3, ok_response()), (5, ok_response())]);
}

#[tokio::test]
async fn h2_server_resets_socket_path_authority_without_wrapper() {
    let (_dir, path) = start_server(false).await;
    let socket_path = path.to_str().unwrap().as_bytes();

    let outcomes = exchange(&path, &[request_block(socket_path, false)]).await;

    const PROTOCOL_ERROR: u32 = 0x1;
    assert_eq!(outcomes, [(1, Outcome::Reset(PROTOCOL_ERROR))]);
}
