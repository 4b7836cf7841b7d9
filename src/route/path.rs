//! The path a route is matched against: the request's path as a server resolves it, so that a
//! route's policies (its idempotency above all) reach exactly the requests under it.

use std::borrow::Cow;

/// Whether `path` is `prefix` or under it, segment by segment: `/v1` takes `/v1` and `/v1/x`,
/// not `/v1x` (a prefix ending in `/` needs nothing more).
pub(crate) fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
    }
}

/// `path` as a server resolves it, for matching: percent-encoded unreserved characters decoded
/// (`%6F` is `o`) and dot segments removed (`/v1/orders/../../admin` is `/admin`), as RFC 3986
/// (sections 2.3 and 5.2.4) normalizes. Without it, a `POST /v1/orders/../../admin/delete`
/// would take an idempotent mark from a `/v1/orders` route, and be sent again.
///
/// `None` when the path encodes a `/` or `\` (`%2F`, `%5C`): servers differ on whether that
/// separates segments, so such a path fits no route and runs with the client's own settings,
/// which never make a request idempotent. A path that needs neither costs two scans.
pub(crate) fn normalized(path: &str) -> Option<Cow<'_, str>> {
    let dotted = path.split('/').any(|s| s == "." || s == "..");
    if !dotted && !path.contains('%') {
        return Some(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    if !decoded.starts_with('/') {
        return Some(Cow::Owned(decoded));
    }
    Some(Cow::Owned(remove_dot_segments(&decoded)))
}

/// `path` with its escapes of unreserved characters decoded, and other escapes as they were;
/// `None` when one encodes a segment separator.
fn decode_unreserved(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let bytes = escape.as_bytes();
        let byte = match (
            bytes.get(1).and_then(|&h| hex(h)),
            bytes.get(2).and_then(|&l| hex(l)),
        ) {
            (Some(high), Some(low)) => high * 16 + low,
            // Not an escape: a lone '%' stays as it is.
            _ => {
                out.push('%');
                rest = &escape[1..];
                continue;
            }
        };
        if byte == b'/' || byte == b'\\' {
            return None;
        }
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Three ASCII bytes: '%' and two hex digits.
            out.push_str(&escape[..3]);
        }
        rest = &escape[3..];
    }
    out.push_str(rest);
    Some(out)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// An absolute path with its `.` and `..` segments resolved; a path that ends in one ends in
/// `/`, and `..` never climbs above the root.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    kept.pop();
                }
                if i == last {
                    kept.push("");
                }
            }
            other => kept.push(other),
        }
    }
    format!("/{}", kept.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalized;

    fn norm(path: &str) -> Option<String> {
        normalized(path).map(|p| p.into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed_as_they_are() {
        for path in [
            "/",
            "/v1/orders",
            "/v1/orders/",
            "/pkg.Svc/Method",
            "*",
            "/a.b/c..d",
        ] {
            assert!(matches!(normalized(path), Some(std::borrow::Cow::Borrowed(p)) if p == path));
        }
    }

    #[test]
    fn dot_segments_resolve_as_a_server_resolves_them() {
        let cases = [
            ("/v1/orders/../../admin/delete", "/admin/delete"),
            ("/a/b/../c", "/a/c"),
            ("/a/./b", "/a/b"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/../../x", "/x"),
            ("/a/%2e%2E/b", "/b"),
        ];
        for (path, want) in cases {
            assert_eq!(norm(path).as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn unreserved_escapes_decode_and_others_stay() {
        assert_eq!(norm("/v1/%6Frders/1").as_deref(), Some("/v1/orders/1"));
        assert_eq!(norm("/a%20b").as_deref(), Some("/a%20b"));
        assert_eq!(norm("/a%zz").as_deref(), Some("/a%zz"));
        assert_eq!(norm("/a%").as_deref(), Some("/a%"));
        assert_eq!(norm("/caf%C3%A9").as_deref(), Some("/caf%C3%A9"));
    }

    #[test]
    fn an_encoded_separator_fits_no_route() {
        assert_eq!(norm("/v1/orders%2F..%2Fadmin"), None);
        assert_eq!(norm("/v1%5cx"), None);
    }
}
