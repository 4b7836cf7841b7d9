use super::*;
use crate::classify::{Classifier, Classify, Code, Reason, Retryable};
use proptest::prelude::*;

fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Two messages then the trailer frame, as a gRPC-web server sends a unary OK.
fn ok_body() -> Vec<u8> {
    let mut body = frame(0, b"\x0a\x05hello");
    body.extend(frame(0, b""));
    body.extend(frame(
        0x80,
        b"grpc-status: 0\r\ngrpc-message: all good\r\nX-Extra:  a b \r\n",
    ));
    body
}

fn scan(body: &[u8], splits: &[usize]) -> TrailerScanner {
    let mut scanner = TrailerScanner::new(Encoding::Binary);
    let mut start = 0;
    for &at in splits {
        scanner.feed(&body[start..at]);
        start = at;
    }
    scanner.feed(&body[start..]);
    scanner
}

fn content_type(value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(value));
    h
}

fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for group in data.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

#[test]
fn recognises_grpc_web_content_types() {
    for (ct, expect) in [
        ("application/grpc-web", Some(Encoding::Binary)),
        ("application/grpc-web+proto", Some(Encoding::Binary)),
        ("application/grpc-web+json", Some(Encoding::Binary)),
        ("Application/GRPC-Web+proto", Some(Encoding::Binary)),
        ("application/grpc-web-text", Some(Encoding::Text)),
        ("application/grpc-web-text+proto", Some(Encoding::Text)),
        ("application/grpc", None),
        ("application/grpc+proto", None),
        ("application/json", None),
        ("", None),
    ] {
        assert_eq!(encoding(&content_type(ct)), expect, "{ct}");
        assert_eq!(
            encoding(&content_type(ct)).is_some(),
            expect.is_some(),
            "{ct}"
        );
    }
    assert!(encoding(&HeaderMap::new()).is_none());
    assert!(TrailerScanner::for_response(&content_type("text/plain")).is_none());
}

#[test]
fn the_classifier_defers_grpc_web_heads_to_the_end_of_stream() {
    let c = Classifier::default();
    let ok = http::StatusCode::OK;
    for ct in [
        "application/grpc-web+proto",
        "application/grpc-web-text",
        "APPLICATION/GRPC-WEB",
    ] {
        assert_eq!(c.classify_response(ok, &content_type(ct)), None, "{ct}");
        // Trailers-only: the status is in the head.
        let mut head = content_type(ct);
        head.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(c.classify_response(ok, &head).unwrap().is_success(), "{ct}");
        head.insert("grpc-status", HeaderValue::from_static("13"));
        assert!(c.classify_response(ok, &head).unwrap().is_failure(), "{ct}");
    }
    // A proxy's 503 on a gRPC-web call maps to UNAVAILABLE.
    let class = c
        .classify_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            &content_type("application/grpc-web"),
        )
        .unwrap();
    assert_eq!(class.reason(), Reason::Grpc(Code::Unavailable));
    // Ten successful gRPC-web calls are ten successes once the body is scanned.
    for _ in 0..10 {
        let scanner = scan(&ok_body(), &[]);
        assert!(scanner.classify_eos(&c).is_success());
    }
}

#[test]
fn finds_the_trailers_after_the_messages() {
    let scanner = scan(&ok_body(), &[]);
    let trailers = scanner.trailers().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "all good");
    assert_eq!(trailers["x-extra"], "a b");
    assert_eq!(scanner.error(), None);
    assert!(scanner.classify_eos(&Classifier::default()).is_success());
}

#[test]
fn every_split_point_gives_the_same_trailers() {
    let body = ok_body();
    let whole = scan(&body, &[]).trailers().cloned().unwrap();
    for a in 0..=body.len() {
        assert_eq!(scan(&body, &[a]).trailers(), Some(&whole), "split at {a}");
        for b in a..=body.len() {
            assert_eq!(scan(&body, &[a, b]).trailers(), Some(&whole), "{a} {b}");
        }
    }
    // Byte by byte.
    let splits: Vec<usize> = (1..body.len()).collect();
    assert_eq!(scan(&body, &splits).trailers(), Some(&whole));
}

#[test]
fn a_failure_status_in_the_trailer_frame_is_a_failure() {
    let body = frame(0x80, b"grpc-status: 14\r\ngrpc-retry-pushback-ms: 10\r\n");
    let scanner = scan(&body, &[]);
    let class = scanner.classify_eos(&Classifier::default());
    assert_eq!(class.reason(), Reason::Grpc(Code::Unavailable));
    assert_eq!(class.retryable(), Retryable::NotProcessed);
}

#[test]
fn a_body_without_trailer_frame_is_a_protocol_error() {
    let scanner = scan(&frame(0, b"message"), &[]);
    assert_eq!(scanner.trailers(), None);
    let class = scanner.classify_eos(&Classifier::default());
    assert_eq!(class.reason(), Reason::Grpc(Code::Internal));
    // Cut inside the trailer frame.
    let body = ok_body();
    let scanner = scan(&body[..body.len() - 3], &[]);
    assert_eq!(scanner.trailers(), None);
    assert!(scanner.classify_eos(&Classifier::default()).is_failure());
}

#[test]
fn oversized_trailers_fail_without_buffering() {
    let mut body = vec![0x80];
    body.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut scanner = TrailerScanner::new(Encoding::Binary);
    scanner.feed(&body);
    // However much follows, nothing is kept.
    for _ in 0..64 {
        scanner.feed(&[b'a'; 4096]);
    }
    assert_eq!(
        scanner.error(),
        Some(GrpcWebError::TrailersTooLarge(u32::MAX))
    );
    assert!(scanner.block.capacity() == 0);
    assert!(scanner.classify_eos(&Classifier::default()).is_failure());
    assert!(scanner.error().unwrap().to_string().contains("exceeds"));

    // The cap itself is fine.
    let line = b"x-pad: ";
    let mut payload = line.to_vec();
    payload.resize(MAX_TRAILER_BLOCK - 17, b'p');
    payload.extend_from_slice(b"\r\ngrpc-status:0\r\n");
    assert_eq!(payload.len(), MAX_TRAILER_BLOCK);
    let scanner = scan(&frame(0x80, &payload), &[]);
    assert_eq!(scanner.trailers().unwrap()["grpc-status"], "0");
}

#[test]
fn malformed_or_compressed_trailers_fail() {
    let scanner = scan(&frame(0x80, b"grpc-status 0\r\n"), &[]);
    assert_eq!(scanner.error(), Some(GrpcWebError::MalformedTrailers));
    let scanner = scan(&frame(0x80, b"bad name: 0\r\n"), &[]);
    assert_eq!(scanner.error(), Some(GrpcWebError::MalformedTrailers));
    let scanner = scan(&frame(0x81, b"grpc-status: 0\r\n"), &[]);
    assert_eq!(scanner.error(), Some(GrpcWebError::CompressedTrailers));
    // An empty trailer frame parses, but has no status: INTERNAL.
    let scanner = scan(&frame(0x80, b""), &[]);
    assert_eq!(scanner.trailers(), Some(&HeaderMap::new()));
    assert!(scanner.classify_eos(&Classifier::default()).is_failure());
}

#[test]
fn bytes_after_the_trailer_frame_are_ignored() {
    let mut body = ok_body();
    body.extend(frame(0x80, b"grpc-status: 13\r\n"));
    assert_eq!(scan(&body, &[]).trailers().unwrap()["grpc-status"], "0");
}

#[test]
fn grpc_web_text_is_decoded_in_pieces() {
    let body = ok_body();
    // Each frame encoded on its own, as a server flushing per message does.
    let mut text = Vec::new();
    text.extend(base64(&frame(0, b"\x0a\x05hello")));
    text.extend(base64(&frame(0, b"")));
    text.extend(base64(&frame(
        0x80,
        b"grpc-status: 0\r\ngrpc-message: all good\r\nX-Extra:  a b \r\n",
    )));
    let expected = scan(&body, &[]).trailers().cloned().unwrap();
    for at in 0..=text.len() {
        let mut scanner = TrailerScanner::new(Encoding::Text);
        scanner.feed(&text[..at]);
        scanner.feed(&text[at..]);
        assert_eq!(scanner.trailers(), Some(&expected), "split at {at}");
    }
    let mut scanner =
        TrailerScanner::for_response(&content_type("application/grpc-web-text")).unwrap();
    scanner.feed(b"AAAA*AAA");
    assert_eq!(scanner.error(), Some(GrpcWebError::InvalidBase64));
    let mut scanner = TrailerScanner::new(Encoding::Text);
    scanner.feed(b"A=AA");
    assert_eq!(scanner.error(), Some(GrpcWebError::InvalidBase64));
}

#[test]
fn buffers_are_scanned_without_being_consumed() {
    let body = bytes::Bytes::from(ok_body());
    let (a, b) = body.split_at(7);
    let chained = bytes::Bytes::copy_from_slice(a).chain(bytes::Bytes::copy_from_slice(b));
    let mut scanner = TrailerScanner::new(Encoding::Binary);
    scanner.feed_buf(&chained);
    assert_eq!(chained.remaining(), body.len());
    assert_eq!(scanner.trailers().unwrap()["grpc-status"], "0");
}

proptest! {
    /// Any chunking of any run of message frames followed by a trailer frame yields the
    /// trailers the whole body yields.
    #[test]
    fn arbitrary_chunkings_agree(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
        status in 0u8..17,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        text in any::<bool>(),
    ) {
        let mut body = Vec::new();
        for m in &messages {
            body.extend(frame(0, m));
        }
        body.extend(frame(0x80, format!("grpc-status: {status}\r\n").as_bytes()));
        let encoding = if text { Encoding::Text } else { Encoding::Binary };
        let wire = if text { base64(&body) } else { body.clone() };
        let mut splits: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        splits.sort_unstable();
        let mut scanner = TrailerScanner::new(encoding);
        let mut start = 0;
        for at in splits {
            scanner.feed(&wire[start..at]);
            start = at;
        }
        scanner.feed(&wire[start..]);
        let status_text = status.to_string();
        prop_assert_eq!(
            scanner.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.to_str().unwrap()),
            Some(status_text.as_str())
        );
        prop_assert!(scanner.block.capacity() <= MAX_TRAILER_BLOCK);
    }

    /// Garbage never panics and never makes the scanner hold more than the cap.
    #[test]
    fn garbage_is_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)) {
        for encoding in [Encoding::Binary, Encoding::Text] {
            let mut scanner = TrailerScanner::new(encoding);
            for c in &chunks {
                scanner.feed(c);
                prop_assert!(scanner.block.capacity() <= MAX_TRAILER_BLOCK);
            }
            let _ = scanner.classify_eos(&Classifier::default());
        }
    }
}
