//! What the stale-connection watch ([`super::stale`]) reads of the bytes an HTTP/1.1
//! connection carries: whether a write begins a request, how much body a request's head
//! declares, and where an interim answer's head ends. No parsing beyond that: hyper does the
//! rest, and whatever these cannot tell makes the watch step aside rather than guess.

/// What is left to write of a request's body, as the watch knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// All of it went out (or there is none).
    Done,
    /// This many bytes, by the head's `content-length`.
    Left(u64),
    /// An end the watch cannot count: a chunked body until its last chunk is seen written, or
    /// a head it could not read whole.
    Open,
}

/// The last chunk of a chunked body without trailers, as hyper writes it: a buffer of its own.
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Whether a write that begins with `bytes` begins a request: the whole request line, as
/// hyper writes a request's head (one buffer, ahead of its body): a method token, a space, a
/// target, a space and `HTTP/1.x` with its line end. Body bytes that happen to look like a
/// method and a space (`SELECT 1;`) are no request.
pub(super) fn starts_request(bytes: &[u8]) -> bool {
    let method = bytes.iter().take_while(|&&b| is_tchar(b)).count();
    if method == 0 || bytes.get(method) != Some(&b' ') {
        return false;
    }
    let rest = &bytes[method + 1..];
    let target = rest.iter().take_while(|&&b| b > b' ' && b != 0x7f).count();
    let version = &rest[target..];
    target > 0
        && version.len() >= b" HTTP/1.1\r\n".len()
        && version.starts_with(b" HTTP/1.")
        && version[8].is_ascii_digit()
        && version[9..].starts_with(b"\r\n")
}

/// RFC 9110's token characters, of which a method is made (`BASELINE-CONTROL`, `get`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The body a request's head declares, less what went out with the head: `head` is the first
/// buffer of the write that began the request (hyper writes a head as one buffer of its own),
/// `written` the bytes that write took. A head not whole in `head`, or not all written, or with
/// framing it cannot read for certain (`transfer-encoding`, a `content-length` that is not one
/// number) gives [`Body::Open`].
///
/// A `GET` or `HEAD` head is not read, so that the common request pays nothing here: it is
/// taken as bodiless when the write carried its head alone (see also `Watched::note_write`,
/// which opens the body of a request that writes again before its answer).
pub(super) fn declared_body(head: &[u8], written: usize) -> Body {
    if head.starts_with(b"GET ") || head.starts_with(b"HEAD ") {
        // Its head alone, whole: nothing before or after the empty line that ends it.
        return if written == head.len() && head.ends_with(b"\r\n\r\n") {
            Body::Done
        } else {
            Body::Open
        };
    }
    let mut length = None;
    let mut at = 0;
    for line in head.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        // The request line comes first; the header lines follow it.
        if at == line.len() {
            continue;
        }
        let Some(line) = line.strip_suffix(b"\n") else {
            break;
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if written < at {
                return Body::Open;
            }
            let sent = (written - at) as u64;
            return match length {
                Some(length) if length > sent => Body::Left(length - sent),
                _ => Body::Done,
            };
        }
        match header(line) {
            Framing::Other => {}
            Framing::Chunked => return Body::Open,
            Framing::Length(n) if length.is_none() => length = Some(n),
            // Twice, or not one plain number: hyper decides, the watch cannot count.
            Framing::Length(_) | Framing::Unreadable => return Body::Open,
        }
    }
    // No empty line: the head goes on in another buffer.
    Body::Open
}

/// What a header line says of a request body's framing.
enum Framing {
    Other,
    Chunked,
    Length(u64),
    Unreadable,
}

fn header(line: &[u8]) -> Framing {
    // Only two names matter: a first byte that starts neither skips the comparison.
    if !matches!(line.first(), Some(b'c' | b'C' | b't' | b'T')) {
        return Framing::Other;
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Framing::Other;
    };
    let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
    if name.eq_ignore_ascii_case(b"transfer-encoding") {
        return Framing::Chunked;
    }
    if !name.eq_ignore_ascii_case(b"content-length") {
        return Framing::Other;
    }
    let number = !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit);
    match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
        Some(n) if number => Framing::Length(n),
        _ => Framing::Unreadable,
    }
}

/// Looks in `read` for the end of an interim answer's head (an empty line, `\r\n` or a bare
/// `\n` as hyper accepts), with `state` carried over from the reads before (0: inside a line,
/// 1: at the start of a line, 2: a `\r` at the start of a line): the bytes after it (the next
/// answer's), or the state to carry on with.
pub(super) fn interim_end(read: &[u8], mut state: u8) -> Result<&[u8], u8> {
    for (i, &b) in read.iter().enumerate() {
        state = match (state, b) {
            (1 | 2, b'\n') => return Ok(&read[i + 1..]),
            (_, b'\n') => 1,
            (1, b'\r') => 2,
            _ => 0,
        };
    }
    Err(state)
}
