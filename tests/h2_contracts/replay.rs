//! A POST refused (REFUSED_STREAM) part-way through its streamed body is sent again with the
//! whole body, byte for byte: what had gone out from the replay buffer, then the rest as the
//! caller's stream yields it.

use super::*;
use http::Response;
use tokio::sync::mpsc;

struct ChannelBody(mpsc::Receiver<Bytes>);
impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn chunk(i: usize) -> Bytes {
    Bytes::from(format!("{i:04}").repeat(256)) // 1 KiB, distinct per chunk
}

#[tokio::test]
async fn a_post_refused_mid_body_is_sent_again_whole() {
    let refused = Arc::new(tokio::sync::Notify::new());
    let got = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let (r2, g2) = (refused.clone(), got.clone());
    let (addr, log) = serve_h2(
        None,
        script(move |mut c: Call| {
            let (refused, got) = (r2.clone(), g2.clone());
            async move {
                let mut body = Vec::new();
                if c.index == 0 {
                    // Read 5 KiB, then refuse the stream.
                    while body.len() < 5 * 1024 {
                        match c.request.body_mut().data().await {
                            Some(Ok(d)) => {
                                let _ = c
                                    .request
                                    .body_mut()
                                    .flow_control()
                                    .release_capacity(d.len());
                                body.extend_from_slice(&d);
                            }
                            _ => break,
                        }
                    }
                    c.respond.send_reset(h2::Reason::REFUSED_STREAM);
                    refused.notify_one();
                    return;
                }
                while let Some(Ok(d)) = c.request.body_mut().data().await {
                    let _ = c
                        .request
                        .body_mut()
                        .flow_control()
                        .release_capacity(d.len());
                    body.extend_from_slice(&d);
                }
                got.lock().unwrap().push(body);
                let res = Response::builder().status(200).body(()).unwrap();
                let _ = c.respond.send_response(res, true);
            }
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(5));
    let (tx, rx) = mpsc::channel(64);
    let req = http::Request::post("http://svc/upload")
        .body(ChannelBody(rx))
        .unwrap();
    let fut = tokio::spawn(client.request(req));
    for i in 0..6 {
        tx.send(chunk(i)).await.unwrap();
    }
    refused.notified().await;
    for i in 6..20 {
        tx.send(chunk(i)).await.unwrap();
    }
    drop(tx);
    let r = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("not hung")
        .unwrap();
    let expected: Vec<u8> = (0..20).flat_map(|i| chunk(i).to_vec()).collect();
    let got = got.lock().unwrap().clone();
    eprintln!(
        "{:?}; server calls {}; bodies received {:?}",
        r.as_ref().map(|r| r.status()).map_err(err),
        log.calls(),
        got.iter().map(|b| b.len()).collect::<Vec<_>>()
    );
    assert_eq!(r.map(|r| r.status().as_u16()).map_err(|e| err(&e)), Ok(200));
    assert_eq!(got.len(), 1);
    assert!(
        got[0] == expected,
        "the resent body differs: {} bytes, expected {}",
        got[0].len(),
        expected.len()
    );
}
