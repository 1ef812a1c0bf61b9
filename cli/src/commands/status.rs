//! `soong status`.

use crate::exit::{ExitStatus, UserError};
use crate::output::Printer;

/// Not built yet.
#[allow(clippy::unused_async)]
pub async fn run(_printer: &Printer) -> anyhow::Result<ExitStatus> {
    Err(UserError::new("`soong status` is not built yet").into())
}
