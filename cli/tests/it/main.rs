//! The one integration-test binary of the CLI (one binary links once, which
//! matters on two cores). Each test runs the real `soong` binary against a
//! real simulator on a loopback port, through [`TestContext`].

mod common;
mod config;
mod configure;
mod daemon;
mod dashboard;
mod help;
mod history;
mod man;
mod manage;
mod models;
mod provision;
mod ssh;
mod start;
mod tunnel;
mod worker;
