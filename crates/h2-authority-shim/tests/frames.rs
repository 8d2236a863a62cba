//! Property tests over the public API with arbitrary client byte streams: whatever a client
//! sends, the shim never panics, fails only with `InvalidData`, never emits more than a
//! bounded amount per byte received, and for well-formed streams emits exactly the client's
//! headers (authority fixed) and DATA, however the bytes are chunked. Case count:
//! PROPTEST_CASES.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use h2_authority_shim::Config;
use h2_authority_shim::wire::{
    FLAG_END_HEADERS as END_HEADERS, FLAG_PADDED as PADDED, PREFACE, TYPE_CONTINUATION as CONTINUATION,
    TYPE_DATA as DATA, TYPE_HEADERS as HEADERS, frame, header_frames,
};
use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// Serves `data` in reads of the given sizes (cycled).
struct Chunked {
    data: Vec<u8>,
    pos: Arc<AtomicUsize>,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let size = this.sizes[this.turn % this.sizes.len()];
        this.turn += 1;
        let pos = this.pos.load(Ordering::Relaxed);
        let n = size.min(buf.remaining()).min(this.data.len() - pos);
        buf.put_slice(&this.data[pos..pos + n]);
        this.pos.store(pos + n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

/// Runs `input` through the shim; returns the output, how many rewrites it counted, and
/// the error if it failed.
fn run(input: Vec<u8>, sizes: Vec<usize>) -> (Vec<u8>, usize, Option<io::Error>) {
    let (out, rewrites, error, _) = run_counting(input, sizes);
    (out, rewrites, error)
}

/// [`run`], also returning how many input bytes the shim read before it stopped.
fn run_counting(input: Vec<u8>, sizes: Vec<usize>) -> (Vec<u8>, usize, Option<io::Error>, usize) {
    let consumed = Arc::new(AtomicUsize::new(0));
    let rewrites = Arc::new(AtomicUsize::new(0));
    let counter = rewrites.clone();
    let config = Config::default().on_rewrite(move || {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut shim = config.wrap(Chunked { data: input, pos: consumed.clone(), sizes, turn: 0 });
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let mut out = Vec::new();
    let error = runtime.block_on(async {
        let mut buf = vec![0; 3000];
        loop {
            match shim.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Some(e),
            }
        }
    });
    (out, rewrites.load(Ordering::Relaxed), error, consumed.load(Ordering::Relaxed))
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..5000, 1..4)
}

/// Any frame: a random type (weighted to the ones the shim parses), flags, stream and
/// payload, the payload often a (possibly damaged) HPACK block.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![Just(HEADERS), Just(CONTINUATION), Just(DATA), any::<u8>()];
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (headers(), any::<usize>(), any::<u8>()).prop_map(|(h, cut, junk)| {
            let mut block = Encoder::new().encode(h.iter().map(|(n, v)| (&n[..], &v[..])));
            let at = cut % (block.len() + 1);
            block.insert(at, junk);
            block
        }),
        Just(vec![0x80 | 62; 200]),
    ];
    (kind, any::<u8>(), 0u32..4, payload).prop_map(|(k, f, s, p)| frame(k, f, s, &p))
}

fn authority() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"localhost".to_vec()),
        Just(b"/var/run/secrets-store-csi-providers/aws.sock".to_vec()),
        Just(Vec::new()),
        "[a-z0-9./:@ -]{0,20}".prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Headers> {
    (authority(), prop::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,40}"), 0..4)).prop_map(|(a, extra)| {
        let mut h: Headers = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), b"/v1alpha1.CSIDriverProvider/Mount".to_vec()),
            (b":authority".to_vec(), a),
        ];
        h.extend(extra.into_iter().map(|(n, v)| (n.into_bytes(), v.into_bytes())));
        h
    })
}

/// What h2 accepts as `:authority`.
fn valid(authority: &[u8]) -> bool {
    !authority.is_empty() && http::uri::Authority::try_from(authority).is_ok()
}

/// A request as a client sends it: its header block (encoded with the connection's
/// encoder, so later blocks use the dynamic table) split into HEADERS + CONTINUATIONs at
/// `split`, optionally padded, followed by a DATA frame.
fn encode_request(encoder: &mut Encoder<'_>, stream: u32, h: &Headers, split: usize, pad: u8) -> Vec<u8> {
    let block = encoder.encode(h.iter().map(|(n, v)| (&n[..], &v[..])));
    let at = split % (block.len() + 1);
    let (first, rest) = block.split_at(at);
    let mut out = Vec::new();
    let mut payload = vec![pad];
    payload.extend_from_slice(first);
    payload.extend(std::iter::repeat_n(0, usize::from(pad)));
    let end = if rest.is_empty() { END_HEADERS } else { 0 };
    out.extend(frame(HEADERS, PADDED | end, stream, &payload));
    if !rest.is_empty() {
        out.extend(frame(CONTINUATION, END_HEADERS, stream, rest));
    }
    out.extend(frame(DATA, 0, stream, &stream.to_be_bytes()));
    out
}

/// Splits the shim's output into (header blocks decoded with a fresh decoder, DATA payloads).
fn parse_output(out: &[u8]) -> (Vec<Headers>, Vec<Vec<u8>>) {
    let mut rest = out.strip_prefix(PREFACE).expect("the preface comes first");
    let (mut blocks, mut data, mut fragment) = (Vec::new(), Vec::new(), Vec::new());
    while !rest.is_empty() {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let (kind, flags) = (rest[3], rest[4]);
        let payload = &rest[9..9 + len];
        assert_eq!(flags & PADDED, 0, "padding is never emitted");
        match kind {
            HEADERS | CONTINUATION => {
                fragment.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    // Blocks must not depend on any dynamic table: a fresh decoder each.
                    blocks.push(Decoder::new().decode(&fragment).expect("valid HPACK out"));
                    fragment.clear();
                }
            }
            DATA => data.push(payload.to_vec()),
            other => panic!("unexpected frame type {other}"),
        }
        rest = &rest[9 + len..];
    }
    (blocks, data)
}

proptest! {
    #[test]
    fn arbitrary_streams_never_panic_and_fail_only_as_invalid_data(
        frames in prop::collection::vec(any_frame(), 0..12),
        sizes in chunk_sizes(),
        garbage_preface in any::<bool>(),
    ) {
        let mut input = if garbage_preface { b"GET / HTTP/1.1\r\n\r\n".to_vec() } else { PREFACE.to_vec() };
        for f in &frames {
            input.extend_from_slice(f);
        }
        let (out, _, error) = run(input.clone(), sizes);
        if let Some(e) = error {
            prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        // Re-encoding as literals grows a block by at most the decoded cap.
        prop_assert!(out.len() <= input.len() + frames.len() * (h2_authority_shim::DEFAULT_MAX_HEADER_LIST_SIZE + 64));
    }

    #[test]
    fn well_formed_streams_keep_headers_and_data_and_fix_only_bad_authorities(
        requests in prop::collection::vec((headers(), any::<usize>(), 0u8..20), 1..6),
        sizes in chunk_sizes(),
    ) {
        let mut encoder = Encoder::new();
        let mut input = PREFACE.to_vec();
        for (i, (h, split, pad)) in requests.iter().enumerate() {
            input.extend(encode_request(&mut encoder, 2 * i as u32 + 1, h, *split, *pad));
        }
        let (out, rewrites, error) = run(input.clone(), sizes);
        prop_assert!(error.is_none(), "{:?}", error);
        if valid(&requests[0].0[3].1) {
            // A connection that starts with an authority h2 accepts (a driver from v1.6.0)
            // is not touched at all: gRPC clients send one authority per connection.
            prop_assert!(out == input, "a connection starting with a valid authority was changed");
            prop_assert_eq!(rewrites, 0);
            return Ok(());
        }
        let (blocks, data) = parse_output(&out);
        let expected: Vec<Headers> = requests
            .iter()
            .map(|(h, _, _)| {
                h.iter()
                    .map(|(n, v)| {
                        let v = if n == b":authority" && !valid(v) { b"localhost".to_vec() } else { v.clone() };
                        (n.clone(), v)
                    })
                    .collect()
            })
            .collect();
        prop_assert_eq!(blocks, expected);
        let streams: Vec<Vec<u8>> = (0..requests.len()).map(|i| (2 * i as u32 + 1).to_be_bytes().to_vec()).collect();
        prop_assert_eq!(data, streams);
        let bad = requests.iter().filter(|(h, _, _)| !valid(&h[3].1)).count();
        prop_assert_eq!(rewrites, bad, "one count per rewritten request");
    }
}

#[test]
fn a_megabyte_of_one_byte_references_is_refused_after_a_bounded_read() {
    // The attack of issue 12: one large dynamic-table entry, then a single block of a
    // million one-byte references to it (just under the old 1 MiB cap, which then decoded
    // all of it: 2.9 s of CPU), sent as maximal CONTINUATION frames.
    // The first block is an old driver's (its socket path as :authority), so the shim
    // decodes the connection; one that starts with a valid authority passes untouched and
    // h2 bounds it itself (tests/hostile.rs sends this bomb to the provider that way).
    let mut encoder = Encoder::new();
    let entry = [
        (&b":authority"[..], &b"/var/run/secrets-store-csi-providers/aws.sock"[..]),
        (b"x-bomb", &[b'b'; 4000][..]),
    ];
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &encoder.encode(entry)));
    input.extend(header_frames(3, 0, &[], &[0x80 | 62; (1 << 20) - 4096]));
    let total = input.len();
    let started = std::time::Instant::now();
    let (_, _, error, consumed) = run_counting(input, vec![16_384]);
    let error = error.expect("the block is refused");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    // Refused once the received cap (4 x 16 KiB) is passed, not after reading it all.
    assert!(consumed < 128 * 1024, "read {consumed} of {total} bytes before refusing: {error}");
    eprintln!("refused after {consumed} bytes in {:?}: {error}", started.elapsed());
}
