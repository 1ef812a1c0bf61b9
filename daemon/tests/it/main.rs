mod api;
mod config;
mod heartbeat;
mod identity;
mod lease;
mod support;
mod termination;
