//! A route's `hedge` as a file writes it: `"off"`, `false`, `true`, or a table.

use crate::route::RouteHedge;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// The table form: what it leaves out is the client's.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default = "on")]
    enabled: bool,
    #[serde(default)]
    max_hedges: Option<u32>,
    #[serde(default, with = "super::duration::some")]
    delay: Option<Duration>,
}

fn on() -> bool {
    true
}

impl<'de> Deserialize<'de> for RouteHedge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HedgeVisitor)
    }
}

struct HedgeVisitor;

impl<'de> Visitor<'de> for HedgeVisitor {
    type Value = RouteHedge;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"off\", or a table such as { max_hedges = 1, delay = \"20ms\" }")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<RouteHedge, E> {
        match text {
            "on" => Ok(RouteHedge::on()),
            text if super::is_off(text) => Ok(RouteHedge::off()),
            _ => Err(E::custom(format!(
                "{text:?}: write \"off\", or a table such as {{ delay = \"20ms\" }}"
            ))),
        }
    }

    fn visit_bool<E: de::Error>(self, on: bool) -> Result<RouteHedge, E> {
        Ok(if on {
            RouteHedge::on()
        } else {
            RouteHedge::off()
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RouteHedge, A::Error> {
        let table = Table::deserialize(MapAccessDeserializer::new(map))?;
        Ok(RouteHedge {
            enabled: table.enabled,
            max_hedges: table.max_hedges,
            delay: table.delay,
        })
    }
}
