//! The copy of a request's head that hedges are sent with.

use crate::budget::UnsentRetry;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

/// Method, URI, version, headers and extensions, as the first attempt had them.
pub(super) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    /// `None` for an empty map: cloning and dropping even an empty `HeaderMap` costs about a
    /// hundred instructions, on every request that may be hedged.
    headers: Option<HeaderMap>,
    extensions: Extensions,
}

impl Head {
    pub(super) fn copy<B>(req: &Request<B>) -> Self {
        let mut extensions = req.extensions().clone();
        // A retry's token paid for the first attempt, which was sent: a hedge dropped unsent
        // must not give it back (the hedge carries its own).
        if !extensions.is_empty() {
            extensions.remove::<UnsentRetry>();
        }
        Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: (!req.headers().is_empty()).then(|| req.headers().clone()),
            extensions,
        }
    }

    pub(super) fn request<B>(&self, body: B) -> Request<B> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        if let Some(headers) = &self.headers {
            *req.headers_mut() = headers.clone();
        }
        *req.extensions_mut() = self.extensions.clone();
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;

    #[test]
    fn a_hedge_gets_the_same_head_without_the_retry_token() {
        let budget = Budget::builder().min_per_second(1.0).build().unwrap();
        let req = Request::put("http://svc/x?q=1")
            .version(Version::HTTP_2)
            .header("x-a", "1")
            .header("x-a", "2")
            .extension(UnsentRetry::new(budget.withdraw().unwrap()))
            .extension(7u32)
            .body(())
            .unwrap();
        let hedge = Head::copy(&req).request("b");
        assert_eq!(hedge.method(), Method::PUT);
        assert_eq!(hedge.uri(), "http://svc/x?q=1");
        assert_eq!(hedge.version(), Version::HTTP_2);
        let values: Vec<_> = hedge.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(hedge.extensions().get::<u32>(), Some(&7));
        assert!(hedge.extensions().get::<UnsentRetry>().is_none());
        assert_eq!(*hedge.body(), "b");
    }
}
