//! Classifying errors: what the source chain says about whether the server saw the request.

use super::{Class, Reason, Retryable};
use std::error::Error as StdError;
use std::io;

/// Classifies an error by walking its source chain, outermost first.
///
/// What matters most is whether the request could have reached the server's application. These
/// provably did not, and may be retried for any request, even one marked `Idempotent(false)`
/// ([`Retryable::NeverSent`]):
///
/// - a refused connection or a failed connect: nothing was written;
/// - a request hyper canceled before writing it (its connection closed first);
/// - HTTP/2 `RST_STREAM` with `REFUSED_STREAM` (RFC 9113 §8.7: the stream was not processed);
/// - a `GOAWAY` received from the server for a stream above its last stream id, or opened after
///   it (RFC 9113 §6.8: such streams were not processed). h2 reports those streams, and only
///   those, with a remote `GOAWAY` error; a `GOAWAY` h2 itself sent on a protocol error ends every
///   stream, processed or not, and counts as a reset.
///
/// A reset, an early close or a timeout may have happened after the server acted, so only
/// idempotent requests retry them. Unknown errors are treated like the latter.
///
/// An error the caller's own request body raised (hyper's "error from user's Body stream",
/// with the caller's error as its source) is never retried: the body failed, and would fail
/// again. It says nothing about the server: the layers of meshless count it against no
/// endpoint, and return it to the caller as [`Kind::InvalidRequest`](crate::error::Kind).
///
/// ```
/// use meshless::classify::{classify_error, Reason, Retryable};
/// use std::io;
///
/// let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
/// let class = classify_error(&refused);
/// assert_eq!(class.reason(), Reason::Connect);
/// assert_eq!(class.retryable(), Retryable::NeverSent);
///
/// let reset = io::Error::from(io::ErrorKind::ConnectionReset);
/// assert_eq!(classify_error(&reset).retryable(), Retryable::IfIdempotent);
/// ```
pub fn classify_error(error: &(dyn StdError + 'static)) -> Class {
    let mut next = Some(error);
    while let Some(err) = next {
        if let Some(class) = classify_one(err) {
            return class;
        }
        next = err.source();
    }
    Class::failure(Reason::Other, Retryable::IfIdempotent)
}

/// An error that came after the request may already have reached a server, whatever its own
/// kind says: a client that followed a redirect and then failed to connect to its target had
/// the first answer from a server that saw the request. Never read as "never sent".
#[derive(Debug)]
pub(crate) struct PossiblySent(pub(crate) crate::error::BoxError);

impl std::fmt::Display for PossiblySent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (after a server had the request)", self.0)
    }
}

impl StdError for PossiblySent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

fn classify_one(err: &(dyn StdError + 'static)) -> Option<Class> {
    if let Some(e) = err.downcast_ref::<PossiblySent>() {
        // The cause's class, unless it claims nothing was sent.
        let cause = classify_error(&*e.0);
        return Some(match cause.retryable() {
            Retryable::NeverSent => Class::failure(cause.reason(), Retryable::IfIdempotent),
            _ => cause,
        });
    }
    if let Some(e) = err.downcast_ref::<crate::Error>() {
        return match e.kind() {
            crate::error::Kind::AttemptTimedOut | crate::error::Kind::DeadlineExceeded => {
                Some(Class::failure(Reason::Timeout, Retryable::IfIdempotent))
            }
            // The balancer already waited for an endpoint: trying again at once cannot help.
            crate::error::Kind::NoReadyEndpoint
            | crate::error::Kind::InvalidRequest
            | crate::error::Kind::EndpointsPushingBack => {
                Some(Class::failure(Reason::NoEndpoint, Retryable::Never))
            }
            // Other meshless errors are decided by what caused them.
            _ => None,
        };
    }
    if let Some(e) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
        // The connector failed: no byte of the request left the client.
        if e.is_connect() {
            return Some(Class::failure(Reason::Connect, Retryable::NeverSent));
        }
        return None;
    }
    // tonic's connector failed (the TCP connect or the TLS handshake, before the HTTP/2
    // preface): no byte of the call left either.
    #[cfg(feature = "tonic")]
    if err.is::<::tonic::ConnectError>() {
        return Some(Class::failure(Reason::Connect, Retryable::NeverSent));
    }
    if let Some(e) = err.downcast_ref::<hyper::Error>() {
        if hyper_callers_fault(e) {
            return Some(Class::failure(Reason::Other, Retryable::Never));
        }
        if e.is_canceled() {
            // hyper cancels a request whose connection closed before it was written.
            return Some(Class::failure(Reason::Refused, Retryable::NeverSent));
        }
        if e.is_timeout() {
            return Some(Class::failure(Reason::Timeout, Retryable::IfIdempotent));
        }
        if e.is_incomplete_message() || e.is_closed() {
            return Some(Class::failure(Reason::Reset, Retryable::IfIdempotent));
        }
        return None;
    }
    if let Some(e) = err.downcast_ref::<h2::Error>() {
        if e.reason() == Some(h2::Reason::REFUSED_STREAM) {
            return Some(Class::failure(Reason::Refused, Retryable::NeverSent));
        }
        if e.is_go_away() && e.is_remote() {
            return Some(Class::failure(Reason::Refused, Retryable::NeverSent));
        }
        if e.is_io() || e.reason().is_some() {
            return Some(Class::failure(Reason::Reset, Retryable::IfIdempotent));
        }
        return None;
    }
    if let Some(e) = err.downcast_ref::<io::Error>() {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<StaleConnection>())
        {
            return Some(stale());
        }
        return Some(classify_io(e.kind()));
    }
    if err.is::<StaleConnection>() {
        return Some(stale());
    }
    if err.is::<tokio::time::error::Elapsed>() {
        return Some(Class::failure(Reason::Timeout, Retryable::IfIdempotent));
    }
    None
}

/// How hyper describes the error of a request body that failed (`hyper::Error`'s display is
/// its kind alone). hyper exposes no predicate for this one kind, and its other "user" errors
/// on a client's path are not the caller's doing: "dispatch task is gone" (the connection's
/// task died: its runtime shut down) carries a source too.
const USER_BODY: &str = "error from user's Body stream";

/// How hyper (HTTP/1.1) describes a request body that ended short of the `content-length` it
/// was sent with: the caller's body, or the header the caller set, was wrong.
const USER_BODY_SHORT: &str = "user body write aborted";

/// Whether hyper failed the request because of the caller: its request body raised an error
/// (or ended short of its declared length); hyper keeps the caller's error as the source. A
/// body that failed because the retry layer could not replay it is meshless's doing, and its
/// own layers account for it.
fn hyper_callers_fault(e: &hyper::Error) -> bool {
    if !e.is_user() {
        return false;
    }
    let text = e.to_string();
    (text == USER_BODY
        && e.source()
            .is_some_and(|cause| !cause.is::<crate::retry::ReplayError>()))
        || text == USER_BODY_SHORT
}

/// Over HTTP/2 hyper reports a failing request body differently: it resets the stream (with
/// `INTERNAL_ERROR`, or the h2 reason the caller's error carried, as a proxied body's does)
/// and fails the request, or the response body, with that reset, which it sent itself
/// (neither the peer's nor h2's own doing); the caller's error is not kept. The only other
/// reset hyper sends of itself on a client's path is `CANCEL` for a request or body the caller
/// dropped, which nobody is left to read.
fn h2_callers_fault(e: &hyper::Error) -> bool {
    e.source()
        .and_then(|cause| cause.downcast_ref::<h2::Error>())
        .is_some_and(|h2| h2.is_reset() && !h2.is_remote() && !h2.is_library())
}

/// Whether an error, or one in its source chain, is the caller's own fault (see
/// [`crate::Error::is_callers_fault`]). For the balancer's response body too, where the
/// caller's request body can fail after the head (an upload or a bidirectional stream).
pub(crate) fn callers_fault(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(err) = next {
        if let Some(ours) = err.downcast_ref::<crate::Error>() {
            if ours.kind() == crate::error::Kind::InvalidRequest {
                return true;
            }
        } else if let Some(e) = err.downcast_ref::<hyper::Error>() {
            // hyper's verdict is final: the caller's error it holds may be anything.
            return hyper_callers_fault(e) || h2_callers_fault(e);
        }
        next = err.source();
    }
    false
}

impl crate::Error {
    /// Whether the request failed through its caller's own fault: its request body raised an
    /// error, or it could not be sent as given ([`Kind::InvalidRequest`]). Such a failure is
    /// no endpoint's: the balancer counts it as a cancellation (no failure, no latency sample,
    /// no ejection), the breaker ignores it, and the retry layer returns it at once as
    /// [`Kind::InvalidRequest`].
    ///
    /// Read on the error path only: it walks the source chain.
    ///
    /// [`Kind::InvalidRequest`]: crate::error::Kind::InvalidRequest
    pub(crate) fn is_callers_fault(&self) -> bool {
        callers_fault(self)
    }
}

fn stale() -> Class {
    Class::failure(Reason::StaleConnection, Retryable::IfIdempotent)
}

/// A reused HTTP/1.1 connection that ended (closed, reset, or failed a write) after the
/// request began and before any byte of its answer: the server had closed it while it sat idle
/// in the pool, most likely, and the request met the close. Its source is the I/O error, when
/// there was one (a clean close has none).
#[derive(Debug)]
pub(crate) struct StaleConnection(pub(crate) Option<io::Error>);

impl std::fmt::Display for StaleConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server closed a reused connection before answering the request on it")
    }
}

impl StdError for StaleConnection {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// Whether `error`, or one in its source chain, is a [`StaleConnection`]: no fault of the
/// endpoint's, which the balancer, outlier detection and the breaker then charge nothing.
pub(crate) fn stale_connection(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(err) = next {
        let inner = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
        if err.is::<StaleConnection>() || inner.is_some_and(|e| e.is::<StaleConnection>()) {
            return true;
        }
        next = err.source();
    }
    false
}

fn classify_io(kind: io::ErrorKind) -> Class {
    use io::ErrorKind::*;
    match kind {
        ConnectionRefused => Class::failure(Reason::Connect, Retryable::NeverSent),
        TimedOut => Class::failure(Reason::Timeout, Retryable::IfIdempotent),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
            Class::failure(Reason::Reset, Retryable::IfIdempotent)
        }
        _ => Class::failure(Reason::Other, Retryable::IfIdempotent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapper")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn walks_the_source_chain() {
        let err = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(classify_error(&err).reason(), Reason::Connect);
        let err = crate::Error::from_service(Wrapper(io::ErrorKind::BrokenPipe.into()));
        assert_eq!(classify_error(&err).reason(), Reason::Reset);
    }

    #[test]
    fn timeouts_are_retryable_for_idempotent_requests() {
        let err = crate::Error::new(Kind::AttemptTimedOut);
        let class = classify_error(&err);
        assert_eq!(class.reason(), Reason::Timeout);
        assert_eq!(class.retryable(), Retryable::IfIdempotent);
    }

    #[test]
    fn refused_streams_never_reached_the_application() {
        let err = h2::Error::from(h2::Reason::REFUSED_STREAM);
        let class = classify_error(&err);
        assert_eq!(class.retryable(), Retryable::NeverSent);
        assert_eq!(class.reason(), Reason::Refused);
        assert!(
            class
                .retryable()
                .allows(crate::classify::Idempotence::Forbidden)
        );
        // Wrapped as hyper and the client wrap it.
        let err = crate::Error::from_service(Wrapper2(err));
        assert_eq!(classify_error(&err).retryable(), Retryable::NeverSent);
        let err = h2::Error::from(h2::Reason::INTERNAL_ERROR);
        assert_eq!(classify_error(&err).retryable(), Retryable::IfIdempotent);
    }

    #[test]
    fn io_failures_after_connect_may_have_been_processed() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            let class = classify_error(&io::Error::from(kind));
            assert_eq!(class.retryable(), Retryable::IfIdempotent, "{kind:?}");
        }
        let refused = classify_error(&io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(refused.retryable(), Retryable::NeverSent);
    }

    #[derive(Debug)]
    struct Wrapper2(h2::Error);
    impl std::fmt::Display for Wrapper2 {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapper")
        }
    }
    impl StdError for Wrapper2 {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn unknown_errors_are_failures_for_idempotent_retry() {
        let err = io::Error::other("mystery");
        let class = classify_error(&err);
        assert!(class.is_failure());
        assert_eq!(class.reason(), Reason::Other);
    }
}
