//! Line framing: split a byte stream into frames (one JSON document per line).
//!
//! [`FrameCodec`] is a tokio-util [`Decoder`]/[`Encoder`] modelled on `LinesCodec`, with three
//! differences that matter for the CLI protocol:
//!
//! * it yields [`Bytes`] split off the read buffer — no copy and no UTF-8 pass of its own (the JSON
//!   parser validates UTF-8 once, later);
//! * the size limit applies to **one frame**, never to the session, and an over-limit frame is
//!   reported with its real size as [`Error::FrameTooLarge`] while the stream goes on with the next
//!   frame;
//! * per-frame problems are yielded as items (`Ok(Err(..))`), because a `FramedRead` ends its stream
//!   after the decoder's own error type is returned. The decoder's error type is reserved for I/O.
//!
//! Scanning is linear in the input: the decoder remembers how far it has looked for a newline, so a
//! 100 MB frame that arrives in 64 KiB reads is scanned once. Blank lines (and `\r\n` endings) are
//! tolerated and skipped.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::Error;

/// The default per-frame size limit: 256 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Decodes newline-delimited frames into [`Bytes`] and encodes frames by appending `\n`.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
    /// Bytes of the buffer already searched for `\n`.
    scanned: usize,
    /// While discarding an over-limit frame: its size so far.
    discarding: Option<usize>,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameCodec {
    /// A codec with the given per-frame limit in bytes (without the newline).
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.max(1),
            scanned: 0,
            discarding: None,
        }
    }

    /// The per-frame limit in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn finish_frame(&mut self, buf: &mut BytesMut, nl: usize) -> Option<Result<Bytes, Error>> {
        self.scanned = 0;
        let mut line = buf.split_to(nl + 1);
        line.truncate(nl);
        if line.last() == Some(&b'\r') {
            line.truncate(nl - 1);
        }
        if let Some(dropped) = self.discarding.take() {
            return Some(Err(Error::FrameTooLarge {
                limit: self.max_frame,
                size: dropped + line.len(),
            }));
        }
        if line.len() > self.max_frame {
            return Some(Err(Error::FrameTooLarge {
                limit: self.max_frame,
                size: line.len(),
            }));
        }
        if is_blank(&line) {
            return None;
        }
        Some(Ok(line.freeze()))
    }
}

impl Decoder for FrameCodec {
    type Item = Result<Bytes, Error>;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, std::io::Error> {
        loop {
            let found = memchr(b'\n', &buf[self.scanned..]).map(|i| i + self.scanned);
            match found {
                Some(nl) => match self.finish_frame(buf, nl) {
                    Some(item) => return Ok(Some(item)),
                    None => continue, // blank line
                },
                None => {
                    // No newline yet. If this frame is already over the limit, drop what we have
                    // and remember its size, so a huge frame never sits in memory.
                    let pending = buf.len();
                    if self.discarding.is_some() || pending > self.max_frame {
                        *self.discarding.get_or_insert(0) += pending;
                        buf.advance(pending);
                        self.scanned = 0;
                    } else {
                        self.scanned = pending;
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, std::io::Error> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        // A last frame without its newline: deliver it (the CLI always ends lines, but a file or a
        // socket peer may not).
        if let Some(dropped) = self.discarding.take() {
            return Ok(Some(Err(Error::FrameTooLarge {
                limit: self.max_frame,
                size: dropped + buf.len(),
            })));
        }
        self.scanned = 0;
        if is_blank(buf) {
            buf.clear();
            return Ok(None);
        }
        let line = buf.split().freeze();
        if line.len() > self.max_frame {
            return Ok(Some(Err(Error::FrameTooLarge {
                limit: self.max_frame,
                size: line.len(),
            })));
        }
        Ok(Some(Ok(line)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.reserve(frame.len() + 1);
        dst.put_slice(&frame);
        dst.put_u8(b'\n');
        Ok(())
    }
}

/// Reads frames from a pipe: a [`FrameCodec`] over its own read buffer.
///
/// What `tokio_util`'s `FramedRead` does, plus [`buffered`](Self::buffered): the frames a read
/// already brought in are taken synchronously, one cheap call each, instead of through a stream
/// poll per frame. Reads have room for at least [`MIN_READ`](Self::MIN_READ) bytes (a nearly
/// full buffer is replaced rather than topped up a few bytes per syscall).
///
/// An idle pipe costs no buffer: a read is tried first into the buffer there is, and only when
/// the pipe has nothing to give and no partial frame is pending is the buffer let go while the
/// reader waits for the pipe to become readable. The first read after that is small
/// ([`FIRST_READ`](Self::FIRST_READ)): the frames a read brings in share its buffer for as long as
/// any of them lives downstream (a gateway keeps them in its replay ring), so the one or two
/// frames a quiet session writes pin a small buffer, not a full one. A busy pipe reads on into
/// full-sized buffers (the partial frame at the end of the small read moves to the next one).
#[derive(Debug)]
pub(crate) struct FrameReader {
    io: tokio::net::unix::pipe::Receiver,
    buf: BytesMut,
    codec: FrameCodec,
    /// The size of the next buffer (grows to `max_capacity`).
    capacity: usize,
    max_capacity: usize,
    eof: bool,
}

impl FrameReader {
    /// The smallest read worth a syscall.
    pub(crate) const MIN_READ: usize = 4096;

    /// The room of the first read after the reader let go of its buffer (an idle pipe).
    pub(crate) const FIRST_READ: usize = 1024;

    /// The read buffer a reader starts with; it doubles (up to the reader's capacity) each time
    /// a read fills all the room there was, so a quiet stream holds little and a busy one soon
    /// reads in large chunks.
    pub(crate) const START_CAPACITY: usize = 2 * Self::MIN_READ;

    /// A reader whose read buffer grows up to `capacity` bytes. Allocates nothing until the
    /// pipe has data.
    pub(crate) fn new(
        io: tokio::net::unix::pipe::Receiver,
        codec: FrameCodec,
        capacity: usize,
    ) -> Self {
        let max_capacity = capacity.max(Self::MIN_READ);
        let capacity = Self::START_CAPACITY.min(max_capacity);
        Self {
            io,
            buf: BytesMut::new(),
            codec,
            capacity,
            max_capacity,
            eof: false,
        }
    }

    /// A frame (or a per-frame error) that is already in the buffer; never reads.
    #[inline]
    pub(crate) fn buffered(&mut self) -> Option<Result<Bytes, Error>> {
        // `decode` reports nothing but frames and per-frame errors (its error type is never used).
        self.codec.decode(&mut self.buf).ok().flatten()
    }

    /// The next frame, reading as needed; `None` at the end of the stream (after a last frame
    /// without its newline, if any). Cancel-safe: a read that is dropped loses no data.
    pub(crate) async fn next(&mut self) -> Option<std::io::Result<Result<Bytes, Error>>> {
        loop {
            if let Some(item) = self.buffered() {
                return Some(Ok(item));
            }
            if self.eof {
                return self.codec.decode_eof(&mut self.buf).transpose();
            }
            let first = self.buf.capacity() == 0;
            if first {
                self.buf.reserve(Self::FIRST_READ);
            } else {
                self.make_room();
            }
            let room = self.buf.capacity() - self.buf.len();
            match self.io.try_read_buf(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if !first && n >= room && self.capacity < self.max_capacity {
                        self.capacity = (self.capacity * 2).min(self.max_capacity);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.buf.is_empty() {
                        // Nothing pending: wait without a buffer.
                        self.buf = BytesMut::new();
                    }
                    if let Err(e) = self.io.readable().await {
                        return Some(Err(e));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Make sure the next read has room for at least `MIN_READ` bytes. The buffer usually shares
    /// its memory with frames still alive downstream; `reserve` then moves the partial frame to a
    /// new buffer with room for it and a full read (a frame larger than that doubles it).
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < Self::MIN_READ {
            let pending = self.buf.len();
            self.buf.reserve(self.capacity.max(pending));
        }
    }
}

/// Empty or whitespace only. Looks past the first byte only when it is whitespace, so a JSON
/// frame (`{…`) costs one comparison.
#[inline]
fn is_blank(line: &[u8]) -> bool {
    match line.first() {
        None => true,
        Some(b) if b.is_ascii_whitespace() => line.iter().all(u8::is_ascii_whitespace),
        Some(_) => false,
    }
}

/// Position of the first `needle` in `hay` (SIMD-accelerated by the `memchr` crate).
#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's next frame, which must come.
    async fn frame(reader: &mut FrameReader) -> Bytes {
        reader
            .next()
            .await
            .expect("a frame")
            .expect("read")
            .expect("frame")
    }

    #[tokio::test]
    async fn an_idle_pipe_holds_no_buffer_and_a_quiet_frame_pins_a_small_one() {
        use futures::FutureExt;
        use std::io::Write;
        let (tx, rx) = tokio::net::unix::pipe::pipe().expect("pipe");
        let mut tx = tx
            .into_blocking_fd()
            .map(std::fs::File::from)
            .expect("blocking fd");
        let mut reader = FrameReader::new(rx, FrameCodec::default(), 64 * 1024);
        // Nothing written yet: the reader waits without a buffer.
        assert!(reader.next().now_or_never().is_none());
        assert_eq!(reader.buf.capacity(), 0);
        tx.write_all(b"{\"a\":1}\n").expect("write");
        assert_eq!(&frame(&mut reader).await[..], b"{\"a\":1}");
        // The read that brought it had FIRST_READ bytes of room, not a full buffer.
        assert!(reader.buf.capacity() < FrameReader::FIRST_READ);
        // Idle again: the buffer is let go (the frame keeps only its small allocation).
        assert!(reader.next().now_or_never().is_none());
        assert_eq!(reader.buf.capacity(), 0);
        // A frame longer than the first read still arrives whole, and the stream goes on.
        let long = format!(
            "{{\"t\":\"{}\"}}\n",
            "x".repeat(3 * FrameReader::FIRST_READ)
        );
        tx.write_all(long.as_bytes()).expect("write");
        tx.write_all(b"{\"b\":2}\n").expect("write");
        assert_eq!(&frame(&mut reader).await[..], long.trim_end().as_bytes());
        assert_eq!(&frame(&mut reader).await[..], b"{\"b\":2}");
        drop(tx);
        assert!(reader.next().await.is_none());
    }

    fn decode_all(codec: &mut FrameCodec, chunks: &[&[u8]]) -> Vec<Result<Bytes, Error>> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(item) = codec.decode(&mut buf).ok().flatten() {
                out.push(item);
            }
        }
        while let Some(item) = codec.decode_eof(&mut buf).ok().flatten() {
            out.push(item);
        }
        out
    }

    fn oks(items: &[Result<Bytes, Error>]) -> Vec<&[u8]> {
        items
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|b| &b[..]))
            .collect()
    }

    #[test]
    fn splits_frames_across_partial_reads_and_skips_blank_lines() {
        let mut c = FrameCodec::new(1024);
        let items = decode_all(
            &mut c,
            &[b"{\"a\"", b":1}\n\n  \n{\"b\":2}\r", b"\n{\"c\":3}"],
        );
        assert_eq!(
            oks(&items),
            vec![&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]
        );
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn over_limit_frame_is_reported_with_its_size_and_the_stream_goes_on() {
        let mut c = FrameCodec::new(8);
        let big = [b'x'; 100];
        let items = decode_all(&mut c, &[b"{}\n", &big[..40], &big[40..], b"\n{\"k\":1}\n"]);
        assert_eq!(items.len(), 3);
        assert_eq!(
            &items[0]
                .as_ref()
                .ok()
                .map(|b| b.to_vec())
                .unwrap_or_default(),
            b"{}"
        );
        match &items[1] {
            Err(Error::FrameTooLarge { limit, size }) => {
                assert_eq!((*limit, *size), (8, 100));
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert_eq!(
            items[2].as_ref().ok().map(|b| b.to_vec()),
            Some(b"{\"k\":1}".to_vec())
        );
    }

    #[test]
    fn over_limit_frame_in_one_read_is_reported() {
        let mut c = FrameCodec::new(4);
        let items = decode_all(&mut c, &[b"0123456789\n{}\n"]);
        assert!(matches!(
            items[0],
            Err(Error::FrameTooLarge { limit: 4, size: 10 })
        ));
        assert_eq!(oks(&items), vec![&b"{}"[..]]);
    }

    #[test]
    fn discarding_frees_memory_while_the_frame_streams() {
        let mut c = FrameCodec::new(16);
        let mut buf = BytesMut::new();
        for _ in 0..100 {
            buf.extend_from_slice(&[b'y'; 64]);
            assert!(c.decode(&mut buf).ok().flatten().is_none());
            assert!(buf.is_empty(), "an over-limit frame must not accumulate");
        }
        buf.extend_from_slice(b"\n");
        match c.decode(&mut buf).ok().flatten() {
            Some(Err(Error::FrameTooLarge { size, .. })) => assert_eq!(size, 6400),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encode_appends_newline() {
        let mut c = FrameCodec::default();
        let mut dst = BytesMut::new();
        c.encode(Bytes::from_static(b"{}"), &mut dst).ok();
        assert_eq!(&dst[..], b"{}\n");
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_gives_the_same_frames(frames in proptest::collection::vec("[a-z{}:\"0-9]{1,40}", 1..20), cuts in proptest::collection::vec(1usize..50, 1..30)) {
            let joined: Vec<u8> = frames.iter().flat_map(|f| f.bytes().chain(std::iter::once(b'\n'))).collect();
            let mut chunks = Vec::new();
            let mut rest = &joined[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
                i += 1;
            }
            let mut c = FrameCodec::new(1 << 20);
            let items = decode_all(&mut c, &chunks);
            let got: Vec<Vec<u8>> = items.into_iter().filter_map(Result::ok).map(|b| b.to_vec()).collect();
            let want: Vec<Vec<u8>> = frames.iter().map(|f| f.as_bytes().to_vec()).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
