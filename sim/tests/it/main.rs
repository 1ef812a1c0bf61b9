//! Integration tests of the simulator over real HTTP on loopback.

mod binary;
mod lifecycle;
mod spec;
mod support;
