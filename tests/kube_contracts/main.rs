//! Kubernetes discovery: black-box tests against kube's real client and watcher,
//! over the mock API server (and, where it cannot script a case, a hand-written one).
#![cfg(all(feature = "kube", feature = "testing"))]

#[path = "../kube/support.rs"]
#[allow(dead_code)]
mod support;

mod common;
mod config;
mod gone;
mod ports;
mod traffic;
mod watch;
