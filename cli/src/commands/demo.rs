//! `soong demo`: the whole system against an embedded simulator. It needs
//! the daemon library, which is landing separately; until then it says so.

use crate::args::DemoArgs;
use crate::exit::{ExitStatus, UserError};
use crate::output::Printer;

/// Not built yet.
#[allow(clippy::unused_async)]
pub async fn run(_printer: &Printer, _args: &DemoArgs) -> anyhow::Result<ExitStatus> {
    Err(UserError::new("`soong demo` is not built yet").into())
}
