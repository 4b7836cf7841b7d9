use super::*;

#[test]
fn bad_matches_name_their_field() {
    let cases = [
        (
            RouteMatch::default().methods(["GET", "BAD METHOD"]),
            "match.methods[1]",
        ),
        (RouteMatch::default().path_prefix("v1"), "match.path_prefix"),
        (
            RouteMatch::default().path_prefix("/v1?x"),
            "match.path_prefix",
        ),
        (
            RouteMatch::default().path_prefix("/v1").service("a.S"),
            "match.service",
        ),
        (RouteMatch::default().service("a/S"), "match.service"),
        (
            RouteMatch::default().service("a.S").methods(["POST"]),
            "match.methods",
        ),
        (RouteMatch::default().method("GET"), "match.method"),
        (
            RouteMatch::default().service("a.S").method(""),
            "match.method",
        ),
    ];
    for (m, path) in cases {
        let err = m.validate().unwrap_err();
        assert_eq!(err.path(), path, "{m:?}");
        assert_eq!(err.setting(), "routes");
    }
}

#[test]
fn bad_policies_are_placed_at_their_route() {
    let routes = [
        Route::path_prefix("/ok"),
        Route::any().hedge(RouteHedge::on().max_hedges(5)),
    ];
    assert_eq!(
        validate_all(&routes).unwrap_err().path(),
        "routes[1].hedge.max_hedges"
    );
    let routes = [Route::any().attempt_timeout(Duration::ZERO)];
    assert_eq!(
        validate_all(&routes).unwrap_err().path(),
        "routes[0].attempt_timeout"
    );
    let routes = [Route::any().hedge(RouteHedge::on().delay(Duration::ZERO))];
    assert_eq!(
        validate_all(&routes).unwrap_err().path(),
        "routes[0].hedge.delay"
    );
    assert!(validate_all(&[Route::grpc_method("a.S", "M"), Route::any()]).is_ok());
}
