//! placeholder

pub mod activity;
