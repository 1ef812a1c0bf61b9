//! One module per subcommand.

pub mod available;
pub mod configure;
pub mod dashboard;
pub mod demo;
pub mod extend;
pub mod history;
pub mod models;
pub mod ssh;
pub mod start;
pub mod status;
pub mod stop;
pub mod tunnel;
pub mod worker;
