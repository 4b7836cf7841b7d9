//! The clients the lab compares: loadgen's plain and tower modes, meshless with its defaults,
//! and variants of meshless with a setting or a layer changed.
//!
//! A variant is one line in `VARIANTS`: a label (the report's name for it, unique), which
//! client, what to do to meshless' `ClientBuilder` before `build()`, and the scenarios it runs
//! in (`Group`): variants that compare protections run only in the outage and recovery and the
//! overload, those that compare hedging only in the hedging scenario, so that they do not
//! lengthen the whole lab.

use meshless::hedge::HedgeConfig;
use meshless::http::ClientBuilder;
use meshless::limit::{Algorithm, GradientConfig, LimitConfig};

/// A change to meshless' client before it is built.
pub type Tune = fn(ClientBuilder) -> ClientBuilder;

/// Which client a variant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// loadgen's `--mode plain`.
    Plain,
    /// loadgen's `--mode tower`.
    Tower,
    /// loadgen's `--mode tower` inside tower's own `hedge` middleware (`lab/tower_hedge.rs`).
    TowerHedge,
    /// `meshless::http::Client`, as loadgen's `--mode meshless` builds it, then `tune`d.
    Meshless,
}

/// The scenarios a variant runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Every scenario (plain but in the overload and hedging scenarios).
    Every,
    /// Only the scenarios that compare protections: the outage and recovery, the overload.
    Protect,
    /// Only the hedging scenario.
    Hedging,
}

/// One client under test.
#[derive(Clone, Copy)]
pub struct Variant {
    /// The report's name for it: `plain`, `tower`, `meshless`, `meshless + …`.
    pub label: &'static str,
    pub client: Client,
    /// Applied to meshless' builder (endpoints and deadline already set) before `build()`;
    /// ignored by the other clients.
    pub tune: Tune,
    pub group: Group,
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

/// Hedging with the library's defaults, as loadgen's `--hedge` turns it on.
fn hedging(builder: ClientBuilder) -> ClientBuilder {
    builder.hedge(HedgeConfig::default())
}

/// The label of the variant that the hedging verdict judges against `meshless`.
pub const HEDGING: &str = "meshless + hedging";
/// The label of tower's hedge middleware around loadgen's tower client.
pub const TOWER_HEDGE: &str = "tower + hedge";

/// The label of the variant that the overload verdict judges (the issue's "adaptive limit").
pub const ADAPTIVE: &str = "meshless + adaptive limit";
/// The label of the fixed-limit variant the overload section shows beside it.
pub const FIXED: &str = "meshless + fixed limit 64";

/// Every client, in report order. To add a variant, add a line (a closure that captures
/// nothing is a `fn`, so it fits in this constant), e.g.
///
/// ```text
/// Variant { label: FIXED, client: Client::Meshless, tune: |b| b.limit(..), group: Group::Protect },
/// ```
pub const VARIANTS: &[Variant] = &[
    Variant {
        label: "plain",
        client: Client::Plain,
        tune: defaults,
        group: Group::Every,
    },
    Variant {
        label: "tower",
        client: Client::Tower,
        tune: defaults,
        group: Group::Every,
    },
    Variant {
        label: "meshless",
        client: Client::Meshless,
        tune: defaults,
        group: Group::Every,
    },
    Variant {
        label: FIXED,
        client: Client::Meshless,
        tune: fixed_limit,
        group: Group::Protect,
    },
    Variant {
        label: ADAPTIVE,
        client: Client::Meshless,
        tune: adaptive_limit,
        group: Group::Protect,
    },
    Variant {
        label: TOWER_HEDGE,
        client: Client::TowerHedge,
        tune: defaults,
        group: Group::Hedging,
    },
    Variant {
        label: HEDGING,
        client: Client::Meshless,
        tune: hedging,
        group: Group::Hedging,
    },
];
