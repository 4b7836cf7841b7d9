//! A success head whose body then fails, is slow, or is dropped.

use crate::common;
use crate::edges_support::*;
use crate::support::*;

const DURATION: &str = "meshless_request_duration_seconds";
const COMPLETED: &str = "meshless_requests_completed_total";

/// README: "`meshless_request_duration_seconds` … `class` as settled at the end of the body".
/// A body cut by the server makes the request a failure: its one duration sample is under
/// `class="failure"`, none under `success`, and `completed_total` says failure with a reason
/// other than `success`.
#[test]
fn a_body_cut_by_the_server_is_timed_under_failure() {
    run(|snap| async move {
        let addr = common::serve_sockets(|socket, _| cut_body(socket)).await;
        let client = client_for(&[addr], "cut_hist").build().unwrap();
        let res = client.get("/").await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.into_body().collect().await.is_err());
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "cut_hist");
        let mut v = Vec::new();
        let ok = samples(&rec, DURATION, &[sv, ("class", "success")]).len();
        let failed = samples(&rec, DURATION, &[sv, ("class", "failure")]).len();
        if (ok, failed) != (0, 1) {
            v.push(format!(
                "duration samples (success, failure) = {:?}, want (0, 1)",
                (ok, failed)
            ));
        }
        let success_reason = rec.count(COMPLETED, &[sv, ("reason", "success")]);
        if success_reason != 0 {
            v.push(format!(
                "completed{{reason=success}} = {success_reason}, want 0"
            ));
        }
        want_outcomes(&client, (1, 0, 1, 0), &mut v);
        check(&v, &client, &rec);
    });
}

/// `ClientStats::recent` / `success_rate()`: "the success rate … over the last minute"; the
/// ClientStats doc: "failures … or their body failed: a reset". Requests whose bodies are all
/// cut must give a success rate of 0.
#[test]
fn the_recent_success_rate_sees_body_failures() {
    run(|snap| async move {
        let addr = common::serve_sockets(|socket, _| cut_body(socket)).await;
        let client = client_for(&[addr], "cut_recent").build().unwrap();
        for _ in 0..4 {
            let res = client.get("/").await.unwrap();
            assert!(res.into_body().collect().await.is_err());
        }
        let rec = quiesce(&client, &snap).await;
        let mut v = Vec::new();
        let s = client.stats();
        if s.failures != 4 {
            v.push(format!("stats.failures {} want 4", s.failures));
        }
        if s.success_rate() != Some(0.0) {
            v.push(format!(
                "success_rate() = {:?} after 4 requests whose bodies were all cut, want Some(0.0)",
                s.success_rate()
            ));
        }
        check(&v, &client, &rec);
    });
}

/// A server whose head comes at once and whose 2-byte body comes `delay` later.
async fn slow_body(delay: Duration) -> SocketAddr {
    common::serve_sockets(move |mut socket, _| async move {
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
            .await;
        let _ = socket.flush().await;
        tokio::time::sleep(delay).await;
        let _ = socket.write_all(b"ok").await;
        hold(socket).await;
    })
    .await
}

/// README: "`meshless_endpoint_latency_seconds` … each request's latency at an endpoint, to the
/// end of the response body". A body that arrives 400 ms after its head, read to its end,
/// gives a sample of at least 400 ms (minus slack).
#[test]
fn the_endpoint_latency_runs_to_the_end_of_the_body() {
    run(|snap| async move {
        let addr = slow_body(ms(400)).await;
        let client = client_for(&[addr], "slow_body").build().unwrap();
        let res = client.get("/").await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
        let rec = quiesce(&client, &snap).await;
        let key = addr.to_string();
        let lat = samples(
            &rec,
            "meshless_endpoint_latency_seconds",
            &[("service", "slow_body"), ("endpoint", key.as_str())],
        );
        let mut v = Vec::new();
        if lat.len() != 1 || lat[0] < 0.35 {
            v.push(format!(
                "endpoint latency samples {lat:?}, want one >= 0.35 s (body came 0.4 s after the head)"
            ));
        }
        want_outcomes(&client, (1, 1, 0, 0), &mut v);
        check(&v, &client, &rec);
    });
}

/// README: "a body its caller drops early keeps its head's class"; the duration histogram's
/// `class` "as settled at the end of the body". A 200 whose body is dropped after its first
/// frame: one success, one duration sample under success, nothing charged to the endpoint.
#[test]
fn a_body_dropped_early_is_one_success_in_every_family() {
    run(|snap| async move {
        let addr = common::serve_sockets(|mut socket, _| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxxxxxxxxxx")
                .await;
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "drop_early").build().unwrap();
        let res = client.get("/").await.unwrap();
        let mut body = res.into_body();
        let _ = body.frame().await.unwrap().unwrap();
        drop(body);
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "drop_early");
        let mut v = crate::edges_support::violations(&client, &rec, "drop_early");
        let ok = samples(&rec, DURATION, &[sv, ("class", "success")]).len();
        let other = samples(&rec, DURATION, &[sv]).len();
        if (ok, other) != (1, 1) {
            v.push(format!(
                "duration samples success {ok}, all {other}; want 1, 1"
            ));
        }
        want_outcomes(&client, (1, 1, 0, 0), &mut v);
        let key = addr.to_string();
        let el = [sv, ("endpoint", key.as_str())];
        let lat = samples(&rec, "meshless_endpoint_latency_seconds", &el).len();
        let er = rec.count("meshless_endpoint_requests_total", &el);
        if lat as u64 != er {
            v.push(format!(
                "endpoint latency samples {lat} != endpoint requests_total {er}"
            ));
        }
        check(&v, &client, &rec);
    });
}
