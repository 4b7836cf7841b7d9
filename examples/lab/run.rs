//! One scenario with one client, on a fresh fleet: the load, the fleet's counters sampled
//! beside it, and everything measured afterwards.

use super::common::Spec;
use super::modes::Variant;
use super::overload::Overload;
use super::scenario::{Plan, Scenario};
use super::stats::{EndpointLine, Run};
use super::target::{self, Load, Target};
use super::timeline::{Recovery, Samples, Timeline};
use bytes::Bytes;
use http::Method;
use http::uri::PathAndQuery;
use meshless::testing::Fleet;
use std::error::Error;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub async fn run_one(
    scenario: &Scenario,
    variant: &Variant,
    load: &Load,
    timeout: Duration,
) -> Result<Run, Box<dyn Error>> {
    let fleet = Fleet::builder()
        .backends(scenario.backends.iter().map(|(b, _)| b.clone()))
        .start()
        .await?;
    let addrs = fleet.addrs();
    let target = Arc::new(Target::new(variant, &addrs, timeout)?);
    let spec = Arc::new(Spec {
        method: Method::GET,
        path: PathAndQuery::from_static("/"),
        body: Bytes::new(),
        timeout,
    });
    let start = Instant::now();
    let mut samples = Samples::default();
    let (records, duration) = {
        let mut driving = pin!(target::drive(target.clone(), spec, load, start));
        tokio::select! {
            done = &mut driving => done,
            // Sampling never ends by itself: it stops when the load is done.
            () = samples.record(&fleet, start) => (&mut driving).await,
        }
    };
    samples.finish(&fleet, start);
    let mut run = Run::new(scenario.name, variant.label, &records, duration);
    run.attempts = target.attempts(run.requests);
    run.unfinished = load.requests().saturating_sub(run.requests);
    run.hedges = target.hedges();
    let reports = target.endpoints();
    run.endpoints = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let report = reports.iter().find(|e| e.addr == *addr);
            EndpointLine {
                attempts: report.map_or(0, |e| e.requests),
                failures: report.map_or(0, |e| e.failures),
                ejections: report.map_or(0, |e| e.ejections),
                served: fleet.backend(i).counters().requests(),
            }
        })
        .collect();
    run.meshless = target.meshless_stats().map(|mut stats| {
        // In the fleet's order, as the other tables are.
        stats
            .status
            .sort_by_key(|(addr, _)| addrs.iter().position(|a| a == addr));
        stats
    });
    match scenario.plan {
        Plan::Standard | Plan::Hedging { .. } => {}
        Plan::Recovery {
            outage_at, outage, ..
        } => {
            let timeline = Timeline::new(&records, &samples);
            run.recovery = Some(Recovery::new(&timeline, &records, outage_at, outage));
            run.timeline = Some(timeline);
        }
        Plan::Overload {
            capacity,
            calm,
            rush,
            ..
        } => {
            let mut overload = Overload::new(&records, capacity, calm.0, rush.0);
            let totals = fleet.totals();
            overload.refused = totals.refused;
            overload.fleet_rate = totals.responses() as f64 / duration.as_secs_f64().max(1e-3);
            overload.max_queue = fleet
                .backends()
                .iter()
                .map(|b| b.counters().max_queue_depth())
                .max()
                .unwrap_or(0);
            run.overload = Some(overload);
        }
    }
    drop(target);
    fleet.shutdown().await;
    Ok(run)
}
