//! Arbitrary client bytes through the shim, in arbitrary read sizes: it must never panic,
//! must fail only with `InvalidData`, and must not emit much more than it was given.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Hands out `data` in reads of `chunk` bytes; never pending.
struct Chunks<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunks<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.data.len());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, body)) = input.split_first() else { return };
    // Most inputs get past the preface, so the fuzzer explores frames.
    let data = if control & 0x80 == 0 { [PREFACE, body].concat() } else { body.to_vec() };
    let chunk = usize::from(control & 0x7f) * 97 + 1;
    let mut shim =
        h2_authority_shim::Config::default().max_header_list_size(4096).wrap(Chunks { data: &data, chunk });
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = vec![0u8; 1 + usize::from(control & 0x0f) * 311];
    let mut emitted = 0usize;
    loop {
        let mut buf = ReadBuf::new(&mut out);
        match Pin::new(&mut shim).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => emitted += buf.filled().len(),
            Poll::Ready(Err(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                break;
            }
            Poll::Pending => unreachable!("the reader is never pending"),
        }
    }
    // A rewritten block is at most the decoded cap plus framing; everything else passes 1:1.
    assert!(emitted <= data.len() + data.len() / 9 * (4096 + 64) + 4096, "{emitted} from {}", data.len());
});
