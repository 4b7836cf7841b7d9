//! The clients the lab compares: loadgen's plain and tower modes, meshless with its defaults,
//! and variants of meshless with a setting or a layer changed.
//!
//! A variant is one line in `VARIANTS`: a label (the report's name for it, unique), and what to
//! do to the `ClientBuilder` before `build()`. Variants marked `extra` run only in the
//! scenarios that compare protections (`Scenario::extras`: the outage and recovery, and the
//! overload), so that they do not lengthen the whole lab.

use super::cli::Mode;
use meshless::http::ClientBuilder;
use meshless::limit::{Algorithm, GradientConfig, LimitConfig};

/// A change to meshless' client before it is built.
pub type Tune = fn(ClientBuilder) -> ClientBuilder;

/// One client under test.
#[derive(Clone, Copy)]
pub struct Variant {
    /// The report's name for it: `plain`, `tower`, `meshless`, `meshless + …`.
    pub label: &'static str,
    pub mode: Mode,
    /// Applied to meshless' builder (endpoints and deadline already set) before `build()`;
    /// ignored by the plain and tower modes.
    pub tune: Tune,
    /// Runs only in the scenarios with `extras`.
    pub extra: bool,
}

fn defaults(builder: ClientBuilder) -> ClientBuilder {
    builder
}

/// The fixed limit the overload compares: a round number a user might pick, above the fleet's
/// 50 workers.
const FIXED_MAX: u32 = 64;

fn fixed_limit(builder: ClientBuilder) -> ClientBuilder {
    let mut limit = LimitConfig::default();
    limit.algorithm = Algorithm::Fixed { max: FIXED_MAX };
    builder.limit(limit)
}

fn adaptive_limit(builder: ClientBuilder) -> ClientBuilder {
    let mut limit = LimitConfig::default();
    limit.algorithm = Algorithm::Gradient(GradientConfig::default());
    builder.limit(limit)
}

/// The label of the variant that the overload verdict judges (the issue's "adaptive limit").
pub const ADAPTIVE: &str = "meshless + adaptive limit";
/// The label of the fixed-limit variant the overload section shows beside it.
pub const FIXED: &str = "meshless + fixed limit 64";

/// Every client, in report order. To add a variant, add a line (a closure that captures
/// nothing is a `fn`, so it fits in this constant), e.g.
///
/// ```text
/// Variant { label: FIXED, mode: Mode::Meshless, tune: |b| b.limit(..), extra: true },
/// Variant { label: ADAPTIVE, mode: Mode::Meshless, tune: |b| b.limit(..), extra: true },
/// ```
///
/// With `extra: false` the variant runs in every scenario (but the overload's plain-free set).
pub const VARIANTS: &[Variant] = &[
    Variant {
        label: "plain",
        mode: Mode::Plain,
        tune: defaults,
        extra: false,
    },
    Variant {
        label: "tower",
        mode: Mode::Tower,
        tune: defaults,
        extra: false,
    },
    Variant {
        label: "meshless",
        mode: Mode::Meshless,
        tune: defaults,
        extra: false,
    },
    Variant {
        label: FIXED,
        mode: Mode::Meshless,
        tune: fixed_limit,
        extra: true,
    },
    Variant {
        label: ADAPTIVE,
        mode: Mode::Meshless,
        tune: adaptive_limit,
        extra: true,
    },
];
