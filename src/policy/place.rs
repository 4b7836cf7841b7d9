//! Each layer's own check, run on a section of a file, its errors placed at the section.

use crate::error::ConfigError;
use crate::outlier::OutlierConfig;

/// Places `err`, which a layer named `layer` reported (`retry.backoff.base`), at `section`
/// in the file (`routes[2].retry`): `routes[2].retry.backoff.base`. A name from a nested layer
/// (the balancer's `outlier.interval`) goes under the section as it is.
pub(crate) fn place(section: &str, layer: &str, err: ConfigError) -> ConfigError {
    let full = err.path();
    let path = match full
        .strip_prefix(layer)
        .and_then(|rest| rest.strip_prefix('.'))
    {
        Some(rest) => format!("{section}.{rest}"),
        None => format!("{section}.{full}"),
    };
    err.placed(path)
}

/// Runs `check` on a section, placing its error.
pub(crate) fn checked(
    section: &str,
    layer: &str,
    check: impl FnOnce() -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    check().map_err(|err| place(section, layer, err))
}

/// `err` placed at `to` when its path is `from`: a layer whose check names a field by a
/// shorter name than its place in the file (`limit.max` for `limit.algorithm.fixed.max`).
pub(crate) fn renamed(err: ConfigError, from: &str, to: impl FnOnce() -> String) -> ConfigError {
    if err.path() == from {
        let to = to();
        return err.placed(to);
    }
    err
}

/// The outlier settings as the builder checks and normalises them (periods above their
/// largest value brought down to it), since a deserialized [`OutlierConfig`] skipped it.
///
/// A `max_ejection_time` left at its default follows a longer base, as when it is not set
/// on the builder (Envoy's rule); one written equal to the default is read the same way.
pub(crate) fn outlier(config: &OutlierConfig) -> Result<OutlierConfig, ConfigError> {
    let c = config.clone();
    let mut builder = OutlierConfig::builder()
        .interval(c.interval)
        .consecutive_failures(c.consecutive_failures)
        .base_ejection_time(c.base_ejection_time)
        .ejection_jitter(c.ejection_jitter)
        .probe_timeout(c.probe_timeout)
        .success_rate(c.success_rate)
        .failure_percentage(c.failure_percentage)
        .latency(c.latency)
        .max_ejected_share(c.max_ejected_share)
        .panic_threshold(c.panic_threshold)
        .slow_start(c.slow_start)
        .slow_start_floor(c.slow_start_floor)
        .slow_start_new_endpoints(c.slow_start_new_endpoints);
    if c.max_ejection_time != OutlierConfig::default().max_ejection_time {
        builder = builder.max_ejection_time(c.max_ejection_time);
    }
    builder.build()
}
