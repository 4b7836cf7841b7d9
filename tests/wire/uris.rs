//! URIs as they reach the wire: forms, authorities, ports, fragments, lengths.

use super::*;

#[tokio::test]
async fn uri_forms_reach_the_wire_as_written() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    let long = format!("/long/{}?q={}", "a".repeat(20_000), "b".repeat(20_000));
    for uri in [
        "/p?q",
        "/a%20b/%2F%3F?x=%41&y=%zz+1",
        "http://svc.example",
        "http://svc.example:80/port80",
        "http://svc.example:443/port443",
        "http://svc.example?q=1",
        "http://other.example:9999/elsewhere",
        "http://[::1]:8080/v6",
        "http://[::1]/v6default",
        long.as_str(),
    ] {
        let res = c.get(uri).await.unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(res.status(), 200, "{uri}");
        body_of(res).await;
    }
    let heads = w.heads();
    let lines: Vec<&str> = heads.iter().map(|h| request_line(h)).collect();
    let expected_long = format!("GET {long} HTTP/1.1");
    assert_eq!(
        lines,
        [
            "GET /p?q HTTP/1.1",
            "GET /a%20b/%2F%3F?x=%41&y=%zz+1 HTTP/1.1",
            "GET / HTTP/1.1",
            "GET /port80 HTTP/1.1",
            "GET /port443 HTTP/1.1",
            "GET /?q=1 HTTP/1.1",
            "GET /elsewhere HTTP/1.1",
            "GET /v6 HTTP/1.1",
            "GET /v6default HTTP/1.1",
            expected_long.as_str(),
        ]
    );
    let hosts: Vec<Option<String>> = heads.iter().map(|h| header_value(h, "host")).collect();
    let me = w.addr.to_string();
    assert_eq!(
        hosts,
        [
            Some(me.clone()),
            Some(me.clone()),
            Some("svc.example".into()),
            Some("svc.example".into()),
            Some("svc.example:443".into()),
            Some("svc.example".into()),
            Some("other.example:9999".into()),
            Some("[::1]:8080".into()),
            Some("[::1]".into()),
            Some(me),
        ]
    );
    for h in &heads {
        assert_eq!(h.matches("\r\nhost:").count(), 1, "one Host: {h}");
    }
    books(&c);
}

#[tokio::test]
async fn a_fragment_is_never_sent() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    // `http::Uri` drops a fragment when it parses the URI: `#` never reaches the wire.
    for uri in ["/p?q=1#frag", "http://svc.example/x#y"] {
        let res = c.get(uri).await.expect("response");
        body_of(res).await;
    }
    let lines: Vec<String> = w
        .heads()
        .iter()
        .map(|h| request_line(h).to_string())
        .collect();
    assert_eq!(lines, ["GET /p?q=1 HTTP/1.1", "GET /x HTTP/1.1"]);
    for (_, raw) in w.requests() {
        assert!(!raw.contains(&b'#'), "{}", String::from_utf8_lossy(&raw));
    }
    books(&c);
}

#[tokio::test]
async fn options_asterisk_is_sent_as_asterisk_form() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    let req = http::Request::options("*")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let outcome = c.request(req).await;
    let heads = w.heads();
    match outcome {
        Ok(res) => {
            body_of(res).await;
            assert_eq!(heads.len(), 1);
            assert_eq!(request_line(&heads[0]), "OPTIONS * HTTP/1.1", "{heads:?}");
        }
        // Refusing it with a typed error before sending is acceptable too.
        Err(e) => assert!(heads.is_empty(), "{e}: {heads:?}"),
    }
    books(&c);
}
