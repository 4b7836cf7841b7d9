//! Chaos rules checked as routes are: a standard method in the wrong case is refused (it
//! would never fit a request, and the rule would silently inject nothing).

use meshless::chaos::{ChaosConfig, ChaosLayer, ChaosRule, Faults};
use meshless::route::Route;

#[test]
fn a_lowercase_method_in_a_chaos_rule_is_refused_as_in_a_route() {
    let route = Route::with_match(
        meshless::route::RouteMatch::default()
            .path_prefix("/")
            .methods(["get"]),
    );
    assert!(route.validate().is_err(), "routes refuse it");
    let mut config = ChaosConfig::default();
    config.enabled = true;
    config.rules = vec![
        ChaosRule::new()
            .method("get")
            .faults(Faults::none().error(1.0, 503)),
    ];
    let err = ChaosLayer::from_config(&config)
        .expect_err("a chaos rule with method \"get\" can never fit a request");
    assert_eq!(err.setting(), "chaos.rules.method");
    assert!(err.to_string().contains("\"GET\""), "{err}");
    // A method of its own, in any case, is still a method.
    config.rules[0].method = Some("purge".into());
    assert!(ChaosLayer::from_config(&config).is_ok());
}
