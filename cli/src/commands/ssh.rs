//! `soong ssh [-- CMD…]`: the system `ssh` to a soong instance, as the
//! configured user with the configured key, checking the host key soong
//! generated at launch. soong execs ssh, so the terminal, the signals and
//! the exit status are ssh's (and the remote command's).

use std::os::unix::process::CommandExt as _;

use crate::args::SshArgs;
use crate::exit::ExitStatus;
use crate::instances;
use crate::output::Printer;
use crate::settings::Settings;
use crate::ssh::Target;

/// Runs `soong ssh`; returns only when ssh could not be started.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &SshArgs,
) -> anyhow::Result<ExitStatus> {
    let client = settings.client()?;
    let instance = instances::choose(settings, &client, "use").await?;
    let target = Target::for_instance(settings, &instance)?;
    printer.verbose(format!(
        "ssh to {} with the host key pinned in `{}`",
        target.destination(),
        target.known_hosts.display()
    ));
    let mut command = std::process::Command::new("ssh");
    // `--` ends ssh's options: nothing in the remote command is read as one.
    command
        .args(target.options())
        .arg("--")
        .arg(&target.ip)
        .args(&args.command);
    let error = command.exec();
    Err(anyhow::Error::new(crate::ssh::SshError::Spawn(error)))
}
