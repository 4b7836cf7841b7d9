//! One request: read its body, apply the backend's behavior, answer (or not).

use super::backend::Shared;
use super::behavior::Fault;
use super::capacity::Refusal;
use super::connection::Conn;
use super::counters::Counters;
use bytes::Bytes;
use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The request header a client sets to the length of the body it sends; the backend answers
/// 400 if the body it received has another length, and echoes the length it received in the
/// same header of its answer.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// use meshless::testing::{BODY_LEN, Behavior, Fleet};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let fleet = Fleet::builder().backend(Behavior::healthy()).start().await?;
///     let client = Client::builder(TokioExecutor::new()).build_http();
///     let request = http::Request::post(format!("http://{}/", fleet.backend(0).addr()))
///         .header(BODY_LEN, "5")
///         .body(Full::new(Bytes::from_static(b"hello")))?;
///     let response = client.request(request).await?;
///     assert_eq!(response.status(), 200); // 400 had the body arrived cut or padded
///     assert_eq!(response.headers()[BODY_LEN], "5");
///     Ok(())
/// }
/// ```
pub const BODY_LEN: HeaderName = HeaderName::from_static("x-body-len");

/// Answers one request as the backend's behavior says.
///
/// Never returns an error: a request that must not be answered (a reset, a hang) never
/// completes, and its connection's task drops it.
pub(crate) async fn respond(
    conn: Arc<Conn>,
    request: Request<Incoming>,
) -> Result<Response<Payload>, Infallible> {
    let backend: &Shared = conn.backend();
    let counters = &backend.counters;
    counters.request();

    // `Some(None)` is a header that is not a number: it cannot match any body.
    let declared: Option<Option<u64>> = request
        .headers()
        .get(BODY_LEN)
        .map(|value| value.to_str().ok().and_then(|s| s.parse().ok()));
    let received = match read_body(request.into_body(), counters).await {
        Ok(received) => received,
        // The client broke off the body or sent a malformed one; the answer will most likely
        // not reach it, but the request is answered all the same.
        Err(received) => {
            let response = answer(counters, StatusCode::BAD_REQUEST, Payload::empty());
            return Ok(echo(response, Some(received)));
        }
    };
    // Echo what arrived whenever the client sent or announced a body.
    let echoed = (received > 0 || declared.is_some()).then_some(received);

    // Checked before any fault: a body that did not arrive intact is a bug in the client under
    // test, and must not hide behind a 503 that a retry would paper over.
    if declared.is_some_and(|declared| declared != Some(received)) {
        let body = Payload::text("x-body-len does not match the body received\n");
        return Ok(echo(
            answer(counters, StatusCode::BAD_REQUEST, body),
            echoed,
        ));
    }

    // Held until this function returns: the worker is busy for the whole service.
    let _worker = match &backend.gate {
        None => None,
        Some(gate) => match gate.admit(counters).await {
            Ok(worker) => Some(worker),
            Err(Refusal::Status(status)) => {
                return Ok(echo(answer(counters, status, Payload::empty()), echoed));
            }
            Err(Refusal::Reset) => {
                counters.reset();
                conn.reset();
                return std::future::pending().await;
            }
        },
    };

    // Read once per request, when its service starts (after the queue, if any): a behavior
    // switched meanwhile applies from the next request.
    let behavior = backend.behavior();
    // `rand::rng()` is a thread-local handle: drawn and dropped before any await, so the
    // future stays `Send`.
    let fault = behavior.draw(&mut rand::rng());
    if fault == Fault::Hang {
        counters.hang();
        return std::future::pending().await;
    }
    let delay = behavior.latency_of().sample();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = match fault {
        Fault::Reset => {
            counters.reset();
            conn.reset();
            // The connection's task drops the connection, and this future with it.
            return std::future::pending().await;
        }
        Fault::Error => {
            let mut response = answer(counters, behavior.error_status(), Payload::empty());
            if let Some(value) = behavior.retry_after_value() {
                response.headers_mut().insert(RETRY_AFTER, value.clone());
            }
            response
        }
        Fault::None | Fault::Hang => answer(
            counters,
            StatusCode::OK,
            Payload::filler(behavior.body_len()),
        ),
    };
    Ok(echo(response, echoed))
}

/// Reads the whole body, counting its bytes as they arrive; on error, what arrived before.
async fn read_body(mut body: Incoming, counters: &Counters) -> Result<u64, u64> {
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(received);
        };
        // Trailers carry no body bytes.
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            received = received.saturating_add(len);
            counters.body(len);
        }
    }
    Ok(received)
}

fn answer(counters: &Counters, status: StatusCode, body: Payload) -> Response<Payload> {
    counters.response(status);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

fn echo(mut response: Response<Payload>, received: Option<u64>) -> Response<Payload> {
    if let Some(received) = received {
        response
            .headers_mut()
            .insert(BODY_LEN, HeaderValue::from(received));
    }
    response
}

/// Bodies are cut from this buffer, `okok…`, so that a body of any size costs no allocation.
static FILLER: [u8; 16 * 1024] = filler();

const fn filler() -> [u8; 16 * 1024] {
    let mut buf = [b'o'; 16 * 1024];
    let mut i = 1;
    while i < buf.len() {
        buf[i] = b'k';
        i += 2;
    }
    buf
}

/// A response body: the first `remaining` bytes of `source`, repeated as often as needed.
pub(crate) struct Payload {
    source: &'static [u8],
    remaining: u64,
}

impl Payload {
    fn empty() -> Payload {
        Payload {
            source: &[],
            remaining: 0,
        }
    }

    fn text(text: &'static str) -> Payload {
        Payload {
            source: text.as_bytes(),
            remaining: text.len() as u64,
        }
    }

    /// `size` bytes of `okok…` (so the default body of 2 bytes is `ok`).
    fn filler(size: u64) -> Payload {
        Payload {
            source: &FILLER,
            remaining: size,
        }
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 || this.source.is_empty() {
            return Poll::Ready(None);
        }
        // `source` is even-sized (or the whole text), so every chunk starts at its beginning.
        let len = usize::try_from(this.remaining).map_or(this.source.len(), |remaining| {
            remaining.min(this.source.len())
        });
        this.remaining -= len as u64;
        let chunk = Bytes::from_static(&this.source[..len]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 || self.source.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        // Exact, so that hyper sends a `content-length` rather than chunked encoding.
        if self.source.is_empty() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::with_exact(self.remaining)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn payload_streams_the_size_asked() {
        for size in [0u64, 1, 2, 5, 16 * 1024, 16 * 1024 + 1, 100_000] {
            let body = Payload::filler(size);
            assert_eq!(body.size_hint().exact(), Some(size));
            let bytes = body.collect().await.expect("infallible").to_bytes();
            assert_eq!(bytes.len() as u64, size);
            assert!(bytes.chunks(2).all(|pair| pair == b"ok" || pair == b"o"));
        }
        let ok = Payload::filler(2).collect().await.expect("infallible");
        assert_eq!(ok.to_bytes(), "ok");
    }
}
