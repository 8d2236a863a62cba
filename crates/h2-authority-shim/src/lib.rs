//! An IO adapter that lets h2 (and so tonic) serve HTTP/2 clients whose `:authority` h2
//! rejects: it rewrites such an authority to `localhost` before h2 reads the request.
//!
//! **Why it exists.** Secrets Store CSI drivers up to v1.5.x dial the provider's Unix socket
//! with grpc-go, which sends the socket *path* (`/var/run/.../aws.sock`) as `:authority`.
//! h2 parses `:authority` as a URI authority and resets such streams with PROTOCOL_ERROR, and
//! neither h2 nor hyper nor tonic has an option to accept it. So the provider wraps every
//! accepted connection in [`AuthorityRewrite`], which sits between the socket and h2.
//!
//! **When it can go.** Driver v1.6.0 dials with `grpc.WithAuthority("localhost")` (driver PR
//! 1953). Once no supported cluster runs an older driver — the counter passed to
//! [`Config::on_rewrite`] (exported by the provider as `authority_rewrites_total`) stays at 0
//! — delete this crate and serve the socket directly; nothing else depends on it.
//!
//! **How.** The client-to-server byte stream is parsed: the connection preface, then frame by
//! frame. Every frame except HEADERS and CONTINUATION passes through untouched, as it
//! arrives. Every header block is decoded with one HPACK decoder kept for the whole
//! connection (the client's blocks refer to its dynamic table) and re-encoded as literals
//! that never touch the server's dynamic table, so h2's decoder stays consistent although it
//! never sees the client's own encoding. A connection whose *first* header block needs no
//! rewrite (drivers from v1.6.0, the sync controller, grpcurl) is passed through untouched
//! from then on — a gRPC client sends one authority per connection — so modern clients pay
//! nothing for the shim (HPACK decoding here costs far more CPU than h2's own). A later block
//! with a bad authority on such a connection is h2's to reject, as without the shim.
//! Server-to-client bytes pass straight through.
//!
//! **Bounds.** A hostile client must not be able to make the shim do more work or hold more
//! memory than h2 itself would allow: a header block is capped as received (frames,
//! padding included) and as decoded (RFC 7541 header list size, counted while decoding, so
//! decoding stops at the cap instead of expanding a block of one-byte table references).
//! Anything malformed or over a cap fails the connection: reads return `InvalidData`, which
//! h2 treats as a connection error. Legitimate clients send blocks of a few hundred bytes.
//!
//! **Testing.** Unit tests next to the code, property tests over arbitrary frames in
//! `tests/frames.rs`, and a libFuzzer target (`cargo install cargo-fuzz`, then in this
//! crate's directory `cargo +nightly fuzz run frames -- -max_total_time=300`; on a stable
//! toolchain `RUSTC_BOOTSTRAP=1 cargo fuzz run frames` works as well).
#![forbid(unsafe_code)]

mod hpack;
#[doc(hidden)]
pub mod wire;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use wire::{
    FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY, FRAME_HEADER_LEN, MAX_FRAME_PAYLOAD,
    PREFACE, TYPE_CONTINUATION, TYPE_HEADERS, header_frames,
};

const PRIORITY_LEN: usize = 5;
/// The default SETTINGS_HEADER_TABLE_SIZE. The server does not change it, so a client may
/// not grow its dynamic table beyond this; h2 would enforce that itself, but it no longer
/// sees the client's encoding.
const HPACK_TABLE_SIZE: usize = 4_096;
/// The default cap on a decoded header block (RFC 7541 header list size): hyper's default
/// SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB). A block h2 would refuse anyway fails the
/// connection here, so a client cannot make the shim emit (and h2 decode) thousands of
/// times the bytes it sent, block after block: 16 one-byte references to a 4 KiB table
/// entry are 64 KiB of literals.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: usize = 16 * 1024;
/// A received block may be this many times its decoded cap: Huffman coding shrinks text to
/// no less than 5/8, padding and frame headers add a little; anything larger cannot decode
/// to a block within the cap.
const RAW_PER_DECODED: usize = 4;
/// How much to ask the inner stream for at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Settings shared by the connections of one server: limits and the rewrite counter.
#[derive(Clone)]
pub struct Config {
    max_header_list_size: usize,
    on_rewrite: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Default for Config {
    fn default() -> Self {
        Self { max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE, on_rewrite: None }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_header_list_size", &self.max_header_list_size)
            .field("on_rewrite", &self.on_rewrite.is_some())
            .finish()
    }
}

impl Config {
    /// Caps one decoded header block (name + value + 32 bytes per field, as RFC 7541 counts
    /// it); the received block may be at most four times as large. Keep it at or above the
    /// server's SETTINGS_MAX_HEADER_LIST_SIZE.
    pub fn max_header_list_size(mut self, bytes: usize) -> Self {
        self.max_header_list_size = bytes.max(1);
        self
    }

    /// Called once for every header block whose `:authority` was rewritten, i.e. once per
    /// request from an old client.
    pub fn on_rewrite(mut self, count: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_rewrite = Some(Arc::new(count));
        self
    }

    /// Wraps a freshly accepted connection (nothing read from it yet).
    pub fn wrap<T>(&self, inner: T) -> AuthorityRewrite<T> {
        AuthorityRewrite { inner, rewriter: Rewriter::new(self.clone()), eof: false }
    }
}

/// An IO wrapper that replaces `:authority` values h2 would reject (the socket path sent by
/// old grpc-go clients) with `localhost`. Reads are rewritten, writes pass straight through.
pub struct AuthorityRewrite<T> {
    inner: T,
    rewriter: Rewriter,
    eof: bool,
}

impl<T> AuthorityRewrite<T> {
    /// Wraps a freshly accepted connection with the default [`Config`].
    pub fn new(inner: T) -> Self {
        Config::default().wrap(inner)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // What is ready goes out first, also ahead of a failure found after it.
            let pending = this.rewriter.output();
            if !pending.is_empty() {
                let n = pending.len().min(out.remaining());
                out.put_slice(&pending[..n]);
                this.rewriter.consume_output(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = this.rewriter.failure() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, reason.to_owned())));
            }
            // At EOF, an unfinished frame or header block is dropped: h2 would fail on it
            // the same way it fails on the end of the stream.
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let space = this.rewriter.read_space();
            let mut read = ReadBuf::new(space);
            let result = Pin::new(&mut this.inner).poll_read(cx, &mut read);
            let n = read.filled().len();
            this.rewriter.commit_read(n);
            ready!(result)?;
            if n == 0 {
                this.eof = true;
            } else {
                this.rewriter.process();
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the parser is in the client's byte stream.
enum Stage {
    /// Waiting for the 24-byte connection preface.
    Preface,
    /// Between frames (0) or inside a passthrough frame with this many payload bytes still
    /// to forward.
    Frames { passthrough: usize },
    /// The connection's first header block kept its `:authority` (drivers from v1.6.0, the
    /// sync controller): everything passes untouched from then on. A gRPC client sends one
    /// authority per connection, and h2's own decoder has seen every block as the client
    /// encoded it, so nothing is decoded here again.
    Untouched,
    /// The stream is malformed or over a limit; reads fail with this reason.
    Failed(String),
}

/// The IO-free part: a buffer of client bytes and the parser over it.
///
/// `buf` is split by four cursors, `sent <= ready <= scan <= end`: `[..sent]` was handed to
/// the caller, `[sent..ready]` is output waiting for the caller, `[ready..scan]` holds the
/// raw frames of a header block still open, `[scan..end]` is unparsed, and `[end..]` is
/// initialized room to read into, kept between reads so a client trickling bytes does not
/// cost a fresh zero-fill per read.
struct Rewriter {
    buf: Vec<u8>,
    sent: usize,
    ready: usize,
    scan: usize,
    end: usize,
    stage: Stage,
    open_block: Option<HeaderBlock>,
    /// Whether a header block was rewritten on this connection (then every later one is).
    rewriting: bool,
    decoder: Decoder<'static>,
    config: Config,
}

impl Rewriter {
    fn new(config: Config) -> Self {
        let mut decoder = Decoder::new();
        // Without this, loona-hpack accepts any table size update the client sends,
        // letting the table grow far past what the server allows.
        decoder.set_max_allowed_table_size(HPACK_TABLE_SIZE);
        Self {
            buf: Vec::new(),
            sent: 0,
            ready: 0,
            scan: 0,
            end: 0,
            stage: Stage::Preface,
            open_block: None,
            rewriting: false,
            decoder,
            config,
        }
    }

    fn output(&self) -> &[u8] {
        &self.buf[self.sent..self.ready]
    }

    fn consume_output(&mut self, n: usize) {
        self.sent += n;
    }

    fn failure(&self) -> Option<&str> {
        match &self.stage {
            Stage::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    /// The received size cap of one header block.
    fn max_raw_block(&self) -> usize {
        self.config.max_header_list_size.saturating_mul(RAW_PER_DECODED)
    }

    /// Drops what the caller already has and returns room at the end of the buffer to read
    /// into; `commit_read` then says how much was filled.
    fn read_space(&mut self) -> &mut [u8] {
        if self.sent > 0 {
            self.buf.copy_within(self.sent..self.end, 0);
            self.ready -= self.sent;
            self.scan -= self.sent;
            self.end -= self.sent;
            self.sent = 0;
        }
        // A large header block may have grown the buffer; don't keep that memory for the
        // life of the connection.
        if self.end == 0 && self.buf.len() > 4 * READ_CHUNK {
            self.buf.truncate(READ_CHUNK);
            self.buf.shrink_to_fit();
        }
        if self.buf.len() < self.end + READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        &mut self.buf[self.end..]
    }

    fn commit_read(&mut self, n: usize) {
        self.end += n;
    }

    /// Parses as much of the buffered input as possible.
    fn process(&mut self) {
        loop {
            let step = match self.stage {
                Stage::Preface => self.match_preface(),
                Stage::Frames { passthrough: 0 } => self.next_frame(),
                Stage::Frames { passthrough } => Ok(self.forward(passthrough)),
                Stage::Untouched => {
                    self.pass(self.end - self.scan);
                    Ok(false)
                }
                Stage::Failed(_) => Ok(false),
            };
            match step {
                Ok(true) => continue,
                Ok(false) => return,
                Err(reason) => {
                    self.stage = Stage::Failed(reason);
                    return;
                }
            }
        }
    }

    /// Marks `n` more parsed bytes as output, unchanged.
    fn pass(&mut self, n: usize) {
        self.scan += n;
        self.ready = self.scan;
    }

    fn match_preface(&mut self) -> Result<bool, String> {
        let input = &self.buf[self.scan..self.end];
        let n = input.len().min(PREFACE.len());
        // The server speaks HTTP/2 with prior knowledge only.
        if input[..n] != PREFACE[..n] {
            return Err("not an HTTP/2 connection: the client preface is missing".into());
        }
        if n < PREFACE.len() {
            return Ok(false);
        }
        self.pass(PREFACE.len());
        self.stage = Stage::Frames { passthrough: 0 };
        Ok(true)
    }

    /// Forwards up to `remaining` buffered bytes of a passthrough frame.
    fn forward(&mut self, remaining: usize) -> bool {
        let n = remaining.min(self.end - self.scan);
        if n == 0 {
            return false;
        }
        self.pass(n);
        if let Stage::Frames { passthrough } = &mut self.stage {
            *passthrough -= n;
        }
        true
    }

    fn next_frame(&mut self) -> Result<bool, String> {
        let Some(header) = FrameHeader::parse(&self.buf[self.scan..self.end]) else {
            return Ok(false);
        };
        match (&self.open_block, header.kind) {
            (None, TYPE_HEADERS) | (Some(_), TYPE_CONTINUATION) => self.take_block_frame(&header),
            (Some(_), _) => Err("HTTP/2 header block interrupted by another frame".into()),
            // Everything else passes, a stray CONTINUATION included: h2 rejects that itself.
            (None, _) => {
                self.pass(FRAME_HEADER_LEN);
                self.stage = Stage::Frames { passthrough: header.len };
                Ok(true)
            }
        }
    }

    /// Takes in a whole HEADERS or CONTINUATION frame; rewrites the block once END_HEADERS
    /// arrives.
    fn take_block_frame(&mut self, header: &FrameHeader) -> Result<bool, String> {
        if header.len > MAX_FRAME_PAYLOAD {
            return Err(format!("HTTP/2 header frame of {} bytes, over the maximum frame size", header.len));
        }
        let payload_start = self.scan + FRAME_HEADER_LEN;
        let frame_end = payload_start + header.len;
        // Checked before buffering, so a flood of CONTINUATION frames fails as soon as the
        // block's frames, headers included, pass the cap.
        if frame_end - self.ready > self.max_raw_block() {
            return Err(format!("HTTP/2 header block larger than {} bytes", self.max_raw_block()));
        }
        if self.end < frame_end {
            return Ok(false);
        }
        let payload = &self.buf[payload_start..frame_end];
        let block = match self.open_block.take() {
            None => HeaderBlock::from_headers_frame(header, payload)?,
            Some(mut block) => {
                block.append_continuation(header, payload)?;
                block
            }
        };
        self.scan = frame_end;
        if header.flags & FLAG_END_HEADERS == 0 {
            self.open_block = Some(block);
        } else {
            self.emit(&block)?;
        }
        Ok(true)
    }

    /// Replaces the block's raw frames with the rewritten ones.
    fn emit(&mut self, block: &HeaderBlock) -> Result<(), String> {
        let rewritten = hpack::rewrite_block(
            &mut self.decoder,
            &block.fragment,
            self.config.max_header_list_size,
            REPLACEMENT_AUTHORITY,
        )?;
        if !rewritten.authority_replaced && !self.rewriting {
            // The first block needs nothing: it goes as received, and so does the rest.
            self.ready = self.scan;
            self.stage = Stage::Untouched;
            return Ok(());
        }
        self.rewriting = true;
        if rewritten.authority_replaced
            && let Some(count) = &self.config.on_rewrite
        {
            count();
        }
        let frames = block.encode_frames(&rewritten.fragment);
        let unparsed = self.end - self.scan;
        let len = frames.len();
        self.buf.splice(self.ready..self.scan, frames);
        self.scan = self.ready + len;
        self.ready = self.scan;
        self.end = self.scan + unparsed;
        Ok(())
    }
}

/// What a rejected `:authority` becomes.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

struct FrameHeader {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHeader {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let h: &[u8; FRAME_HEADER_LEN] = bytes.first_chunk()?;
        Some(Self {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize,
            kind: h[3],
            flags: h[4],
            // The top bit is reserved and must be ignored.
            stream_id: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }
}

/// A header block being collected from a HEADERS frame and its CONTINUATIONs.
struct HeaderBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

impl HeaderBlock {
    /// Payload layout: [pad length] [priority: 5] fragment [padding].
    fn from_headers_frame(header: &FrameHeader, payload: &[u8]) -> Result<Self, String> {
        let mut rest = payload;
        let mut pad_len = 0;
        if header.flags & FLAG_PADDED != 0 {
            let (&pad, tail) = rest.split_first().ok_or("PADDED HEADERS frame without a pad length")?;
            pad_len = usize::from(pad);
            rest = tail;
        }
        let mut priority = None;
        if header.flags & FLAG_PRIORITY != 0 {
            let (fields, tail) =
                rest.split_first_chunk::<PRIORITY_LEN>().ok_or("PRIORITY HEADERS frame too short")?;
            priority = Some(*fields);
            rest = tail;
        }
        let fragment_len = rest.len().checked_sub(pad_len).ok_or("HEADERS padding longer than the frame")?;
        Ok(Self {
            stream_id: header.stream_id,
            end_stream: header.flags & FLAG_END_STREAM != 0,
            priority,
            fragment: rest[..fragment_len].to_vec(),
        })
    }

    fn append_continuation(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<(), String> {
        if header.stream_id != self.stream_id {
            return Err("CONTINUATION frame for another stream".into());
        }
        self.fragment.extend_from_slice(payload);
        Ok(())
    }

    /// One HEADERS frame, then CONTINUATIONs if the fragment does not fit. PADDED is dropped
    /// (the padding is gone); END_STREAM and PRIORITY stay.
    fn encode_frames(&self, fragment: &[u8]) -> Vec<u8> {
        let priority: &[u8] = self.priority.as_ref().map_or(&[], |p| p);
        let mut flags = 0;
        if self.end_stream {
            flags |= FLAG_END_STREAM;
        }
        if self.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        header_frames(self.stream_id, flags, priority, fragment)
    }
}

#[cfg(test)]
mod tests;
