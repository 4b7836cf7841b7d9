//! Which responses are streams: the total deadline stops at their head, and the balancer takes
//! their RTT at the head.

use super::RequestDeadline;
use http::{HeaderMap, HeaderValue, Request};
use std::sync::Arc;

/// Marks a request whose response is a stream (gRPC server streaming, a long download, a
/// watch): the total deadline of [`DeadlineLayer`](super::DeadlineLayer) ends when the response
/// head arrives, and only the body idle timeout
/// ([`DeadlineLayer::body_idle_timeout`](super::DeadlineLayer::body_idle_timeout)) covers the
/// body. Unless one is set, that timeout is as long as the request's deadline: a stream lasts
/// as long as it keeps producing, and one that sends nothing for that long ends with
/// [`Kind::BodyIdleTimeout`](crate::error::Kind::BodyIdleTimeout). The balancer measures the
/// endpoint's RTT to the head, so that the length of a stream never reads as a slow endpoint.
///
/// Responses whose content type is `text/event-stream` (and any type added with
/// [`DeadlineLayer::streaming_content_type`](super::DeadlineLayer::streaming_content_type)) are
/// treated the same way without the marker: the server chooses, so the idle limit is what
/// still bounds its answer.
///
/// ```
/// use meshless::deadline::Streaming;
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Streaming);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streaming;

/// The content types every [`DeadlineLayer`](super::DeadlineLayer) treats as streams.
pub(crate) const DEFAULT_TYPES: [&str; 1] = ["text/event-stream"];

/// Extra streaming content types configured on a deadline layer, carried in the request's
/// extensions (only when some are configured) so that the balancer applies the same rule.
#[derive(Debug, Clone)]
pub(crate) struct StreamingTypes(pub(crate) Arc<[HeaderValue]>);

/// Whether a response to one request is a stream, decided from the request's marker and the
/// response's content type.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamingRule {
    marked: bool,
    extra: Option<Arc<[HeaderValue]>>,
}

impl StreamingRule {
    #[inline]
    pub(crate) fn of<B>(req: &Request<B>) -> Self {
        let extensions = req.extensions();
        // Below a deadline layer the map usually holds its deadline alone: one lookup then
        // answers for both of ours, and an empty map needs none.
        if extensions.is_empty()
            || (extensions.len() == 1 && extensions.get::<RequestDeadline>().is_some())
        {
            return StreamingRule::default();
        }
        StreamingRule {
            marked: extensions.get::<Streaming>().is_some(),
            extra: extensions.get::<StreamingTypes>().map(|t| t.0.clone()),
        }
    }

    /// The rule of a deadline layer, which knows its own extra types.
    pub(crate) fn with_types<B>(req: &Request<B>, extra: Option<&Arc<[HeaderValue]>>) -> Self {
        StreamingRule {
            marked: req.extensions().get::<Streaming>().is_some(),
            extra: extra.cloned(),
        }
    }

    /// The rule of a deadline layer for a request known to carry no [`Streaming`] marker (it
    /// has no extensions at all).
    #[inline]
    pub(crate) fn unmarked(extra: Option<&Arc<[HeaderValue]>>) -> Self {
        StreamingRule {
            marked: false,
            extra: extra.cloned(),
        }
    }

    /// Whether the response with these headers is a stream.
    pub(crate) fn applies(&self, headers: &HeaderMap) -> bool {
        if self.marked {
            return true;
        }
        let Some(content_type) = headers.get(http::header::CONTENT_TYPE) else {
            return false;
        };
        let essence = essence(content_type.as_bytes());
        DEFAULT_TYPES
            .iter()
            .map(|t| t.as_bytes())
            .chain(
                self.extra
                    .iter()
                    .flat_map(|e| e.iter().map(|v| v.as_bytes())),
            )
            .any(|t| t.eq_ignore_ascii_case(essence))
    }
}

/// The media type without its parameters (`text/event-stream; charset=utf-8`).
fn essence(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    value[..end].trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    #[test]
    fn content_types_and_the_marker_decide() {
        let plain = StreamingRule::of(&Request::new(()));
        assert!(plain.applies(&headers("text/event-stream")));
        assert!(plain.applies(&headers("Text/Event-Stream; charset=utf-8")));
        assert!(!plain.applies(&headers("application/json")));
        assert!(!plain.applies(&HeaderMap::new()));

        let extra: Arc<[HeaderValue]> = Arc::from(vec![HeaderValue::from_static("video/mp4")]);
        let rule = StreamingRule::with_types(&Request::new(()), Some(&extra));
        assert!(rule.applies(&headers("video/mp4")));

        let mut req = Request::new(());
        req.extensions_mut().insert(Streaming);
        assert!(StreamingRule::of(&req).applies(&HeaderMap::new()));
    }
}
