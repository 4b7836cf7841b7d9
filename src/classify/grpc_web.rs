//! gRPC-web: the status travels in the body, in a trailer frame, not in HTTP trailers.
//!
//! A gRPC-web response body is a sequence of length-prefixed frames: one flag byte, a 4-byte
//! big-endian length, then the payload. A flag with bit `0x80` set marks the trailer frame,
//! whose payload is HTTP/1-style header lines (`grpc-status: 0\r\ngrpc-message: ok\r\n`). With
//! `application/grpc-web-text`, the whole body is base64, possibly in several padded pieces.
//!
//! A head without `grpc-status` is decided at the end of the stream, from that frame. The
//! balancer feeds a [`TrailerScanner`] the body's data as it streams through to the caller
//! (nothing is held back or copied but the trailer block), then classifies with
//! [`TrailerScanner::classify_eos`]. Responses that are not gRPC-web never build one.

use super::{Class, Classify};
use bytes::Buf;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// The largest trailer block kept: gRPC's default limit on metadata is 8 KiB, so twice that
/// leaves room for any sane server while bounding what a hostile one can make the client hold.
pub(crate) const MAX_TRAILER_BLOCK: usize = 16 * 1024;

const CONTENT_TYPE_PREFIX: &[u8] = b"application/grpc-web";

/// Bit of the flag byte that marks the trailer frame.
const TRAILER_FLAG: u8 = 0x80;
/// Bit of the flag byte that marks a compressed payload.
const COMPRESSED_FLAG: u8 = 0x01;

/// How the body of a gRPC-web response is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/grpc-web`, `+proto`, `+json`: frames as they are.
    Binary,
    /// `application/grpc-web-text`: frames in base64.
    Text,
}

/// The encoding of a gRPC-web response, or `None` for any other response.
pub(crate) fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    let value = headers.get(CONTENT_TYPE)?.as_bytes();
    let prefix = value.get(..CONTENT_TYPE_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(CONTENT_TYPE_PREFIX) {
        return None;
    }
    let rest = &value[CONTENT_TYPE_PREFIX.len()..];
    let text = rest
        .get(..5)
        .is_some_and(|r| r.eq_ignore_ascii_case(b"-text"));
    Some(if text {
        Encoding::Text
    } else {
        Encoding::Binary
    })
}

/// Why a gRPC-web body could not yield its trailers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcWebError {
    /// The trailer frame announced more than [`MAX_TRAILER_BLOCK`] bytes.
    TrailersTooLarge(u32),
    /// The trailer frame was flagged compressed, which gRPC-web does not allow.
    CompressedTrailers,
    /// A trailer line was not a valid `name: value` header.
    MalformedTrailers,
    /// A `grpc-web-text` body was not valid base64.
    InvalidBase64,
    /// The data came in a buffer that could not be read without consuming it.
    Unscannable,
}

impl fmt::Display for GrpcWebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcWebError::TrailersTooLarge(len) => write!(
                f,
                "gRPC-web trailer frame of {len} bytes exceeds {MAX_TRAILER_BLOCK}"
            ),
            GrpcWebError::CompressedTrailers => f.write_str("gRPC-web trailer frame is compressed"),
            GrpcWebError::MalformedTrailers => f.write_str("gRPC-web trailer frame is malformed"),
            GrpcWebError::InvalidBase64 => f.write_str("gRPC-web-text body is not valid base64"),
            GrpcWebError::Unscannable => f.write_str("gRPC-web body buffer could not be scanned"),
        }
    }
}

impl std::error::Error for GrpcWebError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a frame's 5-byte prefix; this many bytes of it are in `prefix`.
    Prefix(u8),
    /// Passing over this many more bytes of a message frame.
    Skip(u32),
    /// Collecting this many more bytes of the trailer frame into `block`.
    Trailer(u32),
    /// The trailers are parsed: the rest of the body, if any, is ignored.
    Done,
    /// The body cannot yield trailers.
    Failed(GrpcWebError),
}

/// Finds the trailers of a gRPC-web response in its body, fed chunk by chunk as it streams.
///
/// Chunks may split the body anywhere, inside a frame's prefix included. Memory is bounded:
/// message frames are skipped without being copied, and the trailer block is kept only up to
/// [`MAX_TRAILER_BLOCK`].
#[derive(Debug)]
pub(crate) struct TrailerScanner {
    state: State,
    prefix: [u8; 5],
    block: Vec<u8>,
    trailers: Option<HeaderMap>,
    /// For `grpc-web-text`: the base64 characters of a group not complete yet.
    base64: Option<Base64>,
}

impl TrailerScanner {
    /// A scanner for a body in `encoding`.
    pub(crate) fn new(encoding: Encoding) -> Self {
        TrailerScanner {
            state: State::Prefix(0),
            prefix: [0; 5],
            block: Vec::new(),
            trailers: None,
            base64: (encoding == Encoding::Text).then(Base64::default),
        }
    }

    /// A scanner for this response if it is gRPC-web, `None` otherwise.
    pub(crate) fn for_response(headers: &HeaderMap) -> Option<Self> {
        encoding(headers).map(Self::new)
    }

    /// Takes the next bytes of the body.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.is_finished() {
            return;
        }
        let Some(mut decoder) = self.base64.take() else {
            self.feed_binary(chunk);
            return;
        };
        // Decoded in small batches on the stack: no allocation per chunk.
        let mut out = [0u8; 192];
        let mut len = 0;
        for &c in chunk {
            match decoder.push(c) {
                Ok(bytes) => {
                    for &b in bytes.as_slice() {
                        out[len] = b;
                        len += 1;
                    }
                }
                Err(e) => {
                    self.state = State::Failed(e);
                    return;
                }
            }
            if len + 3 > out.len() {
                self.feed_binary(&out[..len]);
                len = 0;
            }
        }
        self.feed_binary(&out[..len]);
        self.base64 = Some(decoder);
    }

    /// Takes the next bytes of the body from a buffer, without consuming it.
    pub(crate) fn feed_buf<B: Buf>(&mut self, buf: &B) {
        if buf.chunk().len() == buf.remaining() {
            self.feed(buf.chunk());
            return;
        }
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = buf.chunks_vectored(&mut slices);
        let seen: usize = slices[..n].iter().map(|s| s.len()).sum();
        if seen != buf.remaining() {
            self.fail(GrpcWebError::Unscannable);
            return;
        }
        for slice in &slices[..n] {
            self.feed(slice);
        }
    }

    /// The trailers, once the trailer frame was read whole.
    pub(crate) fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// Why no trailers can come from this body, if it went wrong.
    pub(crate) fn error(&self) -> Option<GrpcWebError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The class of the response at the end of its body: from the trailers when they were
    /// found, else as a gRPC response that ended without trailers (INTERNAL by default).
    pub(crate) fn classify_eos<C: Classify + ?Sized>(&self, classifier: &C) -> Class {
        classifier.classify_eos(self.trailers())
    }

    fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    fn fail(&mut self, error: GrpcWebError) {
        self.state = State::Failed(error);
        self.block = Vec::new();
    }

    fn feed_binary(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Prefix(have) => {
                    let have = usize::from(have);
                    let take = (5 - have).min(data.len());
                    self.prefix[have..have + take].copy_from_slice(&data[..take]);
                    data = &data[take..];
                    if have + take < 5 {
                        self.state = State::Prefix((have + take) as u8);
                    } else {
                        self.start_frame();
                    }
                }
                State::Skip(left) => {
                    let take = data.len().min(left as usize);
                    data = &data[take..];
                    self.state = match left - take as u32 {
                        0 => State::Prefix(0),
                        left => State::Skip(left),
                    };
                }
                State::Trailer(left) => {
                    let take = data.len().min(left as usize);
                    self.block.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    match left - take as u32 {
                        0 => self.finish_trailers(),
                        left => self.state = State::Trailer(left),
                    }
                }
                State::Done | State::Failed(_) => return,
            }
        }
    }

    fn start_frame(&mut self) {
        let [flag, a, b, c, d] = self.prefix;
        let len = u32::from_be_bytes([a, b, c, d]);
        if flag & TRAILER_FLAG == 0 {
            self.state = if len == 0 {
                State::Prefix(0)
            } else {
                State::Skip(len)
            };
            return;
        }
        if flag & COMPRESSED_FLAG != 0 {
            return self.fail(GrpcWebError::CompressedTrailers);
        }
        if len as usize > MAX_TRAILER_BLOCK {
            return self.fail(GrpcWebError::TrailersTooLarge(len));
        }
        self.block.reserve_exact(len as usize);
        if len == 0 {
            self.finish_trailers();
        } else {
            self.state = State::Trailer(len);
        }
    }

    fn finish_trailers(&mut self) {
        let block = std::mem::take(&mut self.block);
        match parse_trailers(&block) {
            Some(map) => {
                self.trailers = Some(map);
                self.state = State::Done;
            }
            None => self.fail(GrpcWebError::MalformedTrailers),
        }
    }
}

/// Parses HTTP/1-style header lines; `None` if any line is not a valid header.
fn parse_trailers(block: &[u8]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// An incremental base64 decoder (standard alphabet, padded groups, several padded pieces in a
/// row allowed, as gRPC-web-text servers may flush each message separately).
#[derive(Debug, Default)]
struct Base64 {
    group: [u8; 4],
    len: u8,
}

/// Up to three decoded bytes.
struct Decoded {
    bytes: [u8; 3],
    len: usize,
}

impl Decoded {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

const PAD: u8 = 64;

impl Base64 {
    fn push(&mut self, c: u8) -> Result<Decoded, GrpcWebError> {
        let none = Decoded {
            bytes: [0; 3],
            len: 0,
        };
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => PAD,
            b'\r' | b'\n' | b' ' | b'\t' => return Ok(none),
            _ => return Err(GrpcWebError::InvalidBase64),
        };
        self.group[usize::from(self.len)] = value;
        self.len += 1;
        if self.len < 4 {
            return Ok(none);
        }
        self.len = 0;
        let [a, b, c, d] = self.group;
        if a == PAD || b == PAD || (c == PAD && d != PAD) {
            return Err(GrpcWebError::InvalidBase64);
        }
        let n = (u32::from(a) << 18)
            | (u32::from(b) << 12)
            | (u32::from(c & 63) << 6)
            | u32::from(d & 63);
        let [_, x, y, z] = n.to_be_bytes();
        let len = match (c == PAD, d == PAD) {
            (true, _) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        Ok(Decoded {
            bytes: [x, y, z],
            len,
        })
    }
}

#[cfg(test)]
#[path = "grpc_web_tests.rs"]
mod tests;
