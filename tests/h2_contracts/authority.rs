//! `:authority` over HTTP/2 names the logical host and never carries userinfo.

use super::*;
use http::Response;

type Heads = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

async fn recording() -> (SocketAddr, Heads) {
    let heads: Heads = Arc::default();
    let h2c = heads.clone();
    let (addr, _log) = serve_h2(
        None,
        script(move |mut c: Call| {
            let heads = h2c.clone();
            async move {
                heads.lock().unwrap().push((
                    c.request.uri().authority().map(|a| a.to_string()),
                    c.request
                        .headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap_or("?").to_owned()),
                ));
                let res = Response::builder().status(200).body(()).unwrap();
                let _ = c.respond.send_response(res, true);
            }
        }),
    )
    .await;
    (addr, heads)
}

/// A URI with userinfo: `:authority` is the bare host, no `Host` header.
#[tokio::test]
async fn authority_never_carries_userinfo() {
    let (addr, heads) = recording().await;
    let client = client(addr, Duration::from_secs(2));
    let r = client.get("http://user:secret@svc.example/x").await;
    assert_eq!(r.map(|r| r.status().as_u16()).map_err(|e| err(&e)), Ok(200));
    let seen = heads.lock().unwrap().clone();
    assert_eq!(seen[0].0.as_deref(), Some("svc.example"), "{seen:?}");
    assert!(
        seen[0].1.as_deref().is_none_or(|h| h == "svc.example"),
        "{seen:?}"
    );
}
