//! Every `--help` users read, snapshotted so a change to it is a decision.

use crate::common::TestContext;
use crate::soong_snapshot;

#[test]
fn top_level_help_lists_every_command() {
    let context = TestContext::new(None);
    soong_snapshot!(context, ["--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Launch a Lambda Cloud GPU for an LLM in one command; never pay for a forgotten one.

        An on-instance daemon terminates the instance when it sits idle, when its lease runs out, or at a hard deadline, whichever comes first.

        Usage: soong [OPTIONS] <COMMAND>

        Commands:
          configure    Write the config file: asks on a terminal, or takes flags; keeps every setting it is not given
          start        Launch an instance serving a model, guarded by the soong daemon
          status       Show soong's instances: deadlines, idle time, cost so far
          ssh          Log in to an instance (or run a command there) with the system `ssh`, checking its pinned host key
          tunnel       Forward SGLang, n8n and the daemon to local ports over SSH, in the background, until `soong tunnel stop`
          dashboard    Open the daemon's dashboard in the browser (through the tunnel, which it starts if needed), or print its URL
          history      Launches, extensions and terminations with duration and cost, totals per day, and what the cost controls saved
          worker       The watchdog worker on Cloudflare: deploy it (KV, cron, secrets), check it, follow its log, or remove all of it
          extend       Add hours to an instance's lease (up to its 8 h maximum)
          stop         Terminate an instance through the Lambda API
          available    Show instance types, prices, regions with capacity and which models fit
          models       The model registry: built-in and custom models, VRAM and GPU fit
          completions  Print shell completions, e.g. `soong completions bash > /etc/bash_completion.d/soong`
          man          Print the man page (roff), or write one page per command into a directory
          demo         Run the whole system against an embedded simulated cloud; needs no account, no config and no network
          help         Print this message or the help of the given subcommand(s)

        Options:
              --json
                  Print machine-readable JSON on stdout

          -y, --yes
                  Answer yes to every question; needed when stdin is not a terminal

              --instance <ID|NAME>
                  The instance to act on, by id or name

              --config <PATH>
                  The config file [default: ~/.config/gpu-dashboard/config.yaml]

                  [env: SOONG_CONFIG]

              --no-color
                  Never colour the output (also `NO_COLOR`)

          -v, --verbose
                  Say more (each API step)

          -q, --quiet
                  Say only what was asked for, warnings and errors

          -h, --help
                  Print help (see a summary with '-h')

          -V, --version
                  Print version

        ----- stderr -----
    "#);
}

#[test]
fn start_help_documents_every_flag() {
    let context = TestContext::new(None);
    soong_snapshot!(context, ["start", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Launch an instance serving a model, guarded by the soong daemon

        Usage: soong start [OPTIONS]

        Options:
              --model <MODEL>                   The model to serve (see `soong models list`) [default: config `defaults.model`]
              --gpu <TYPE>                      The instance type, e.g. `gpu_1x_a10` [default: the cheapest that fits and has capacity]
              --region <REGION>                 The region [default: config `lambda.default_region`, else the filesystem's region]
              --hours <HOURS>                   The lease: hours until the instance is terminated unless extended [default: 4]
              --idle-minutes <IDLE_MINUTES>     Minutes without activity before the instance is terminated [default: 30]
              --name <NAME>                     The instance name [default: a unique `soong-…` name]
              --no-wait                         Return once the launch is accepted, without waiting for the daemon
              --wait-for-capacity [<DURATION>]  When there is no capacity, poll until there is, for up to DURATION (e.g. `45m`) [default when given without a value: 30m]
              --dry-run                         Print the launch request and user-data (secrets masked) and launch nothing
              --provision <HOW>                 How the instance is set up: by its user-data at first boot, or by `ansible-playbook` over SSH once it is up [default: cloud-init] [possible values: cloud-init, ansible]
              --json                            Print machine-readable JSON on stdout
          -y, --yes                             Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>              The instance to act on, by id or name
              --config <PATH>                   The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color                        Never colour the output (also `NO_COLOR`)
          -v, --verbose                         Say more (each API step)
          -q, --quiet                           Say only what was asked for, warnings and errors
          -h, --help                            Print help
          -V, --version                         Print version

        ----- stderr -----
    "#);
}

#[test]
fn status_extend_stop_help() {
    let context = TestContext::new(None);
    soong_snapshot!(context, ["status", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Show soong's instances: deadlines, idle time, cost so far

        Usage: soong status [OPTIONS]

        Options:
              --watch [<SECONDS>]   Refresh every SECONDS until interrupted [default when given without a value: 10]
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["extend", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Add hours to an instance's lease (up to its 8 h maximum)

        Usage: soong extend [OPTIONS] <HOURS>

        Arguments:
          <HOURS>  Hours to add to the lease (fractions allowed)

        Options:
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["stop", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Terminate an instance through the Lambda API

        Usage: soong stop [OPTIONS]

        Options:
              --no-wait             Return once the API accepted the termination, without waiting for it
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
}

#[test]
fn models_and_available_help() {
    let context = TestContext::new(None);
    soong_snapshot!(context, ["models", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        The model registry: built-in and custom models, VRAM and GPU fit

        Usage: soong models [OPTIONS] [COMMAND]

        Commands:
          list       List every model with its VRAM need
          info       Show one model in detail
          add        Add a custom model to the config
          remove     Remove a custom model from the config
          recommend  Recommend instance types for a model (or for every model)
          help       Print this message or the help of the given subcommand(s)

        Options:
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["available", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Show instance types, prices, regions with capacity and which models fit

        Usage: soong available [OPTIONS]

        Options:
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["demo", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Run the whole system against an embedded simulated cloud; needs no account, no config and no network

        Usage: soong demo [OPTIONS]

        Options:
              --idle-seconds <IDLE_SECONDS>  Seconds without activity before the daemon terminates the demo instance [default: 20]
              --json                         Print machine-readable JSON on stdout
          -y, --yes                          Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>           The instance to act on, by id or name
              --config <PATH>                The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color                     Never colour the output (also `NO_COLOR`)
          -v, --verbose                      Say more (each API step)
          -q, --quiet                        Say only what was asked for, warnings and errors
          -h, --help                         Print help
          -V, --version                      Print version

        ----- stderr -----
    "#);
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let context = TestContext::new(None);
    soong_snapshot!(context, ["start", "--hours", "9"], @r#"
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: invalid value '9' for '--hours <HOURS>': 9 is not in 1..=8

        For more information, try '--help'.
    "#);
}

#[test]
fn completions_are_generated_without_a_config() {
    let context = TestContext::new(Some("empty.yaml"));
    let output = context.run(&["completions", "bash"]);
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("_soong()"));
}

#[test]
fn ssh_tunnel_dashboard_history_worker_help() {
    let context = TestContext::new(None);
    soong_snapshot!(context, ["ssh", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Log in to an instance (or run a command there) with the system `ssh`, checking its pinned host key

        Usage: soong ssh [OPTIONS] [-- <CMD>...]

        Arguments:
          [CMD]...  The command to run instead of a login shell, after `--` (e.g. `soong ssh -- nvidia-smi`); its exit status is soong's

        Options:
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["tunnel", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Forward SGLang, n8n and the daemon to local ports over SSH, in the background, until `soong tunnel stop`

        Usage: soong tunnel [OPTIONS] [COMMAND]

        Commands:
          start   Start the tunnel (in the background; one per instance)
          stop    Stop the tunnel soong started (only that ssh process)
          status  Show the tunnels and whether each forward answers
          help    Print this message or the help of the given subcommand(s)

        Options:
              --sglang-port <PORT>  The local port for SGLang (the instance's 8000) [default: 8000, or a free one when busy]
              --n8n-port <PORT>     The local port for n8n (the instance's 5678) [default: 5678, or a free one when busy]
              --status-port <PORT>  The local port for the soong daemon (the instance's `status_daemon.port`) [default: that port, or a free one when busy]
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["dashboard", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Open the daemon's dashboard in the browser (through the tunnel, which it starts if needed), or print its URL

        Usage: soong dashboard [OPTIONS]

        Options:
              --print               Print the URL (it holds the token) instead of opening a browser
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["history", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        Launches, extensions and terminations with duration and cost, totals per day, and what the cost controls saved

        Usage: soong history [OPTIONS]

        Options:
              --days <DAYS>         How many days back, today included [default: 7]
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
    soong_snapshot!(context, ["worker", "--help"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        The watchdog worker on Cloudflare: deploy it (KV, cron, secrets), check it, follow its log, or remove all of it

        Usage: soong worker [OPTIONS] <COMMAND>

        Commands:
          deploy   Deploy (or update) the worker with its KV namespace, cron and secrets
          status   Whether the worker answers, and its deployments
          logs     Follow the worker's log (`wrangler tail`)
          destroy  Remove the worker, its cron trigger, its secrets and its KV namespace
          help     Print this message or the help of the given subcommand(s)

        Options:
              --json                Print machine-readable JSON on stdout
          -y, --yes                 Answer yes to every question; needed when stdin is not a terminal
              --instance <ID|NAME>  The instance to act on, by id or name
              --config <PATH>       The config file [default: ~/.config/gpu-dashboard/config.yaml] [env: SOONG_CONFIG]
              --no-color            Never colour the output (also `NO_COLOR`)
          -v, --verbose             Say more (each API step)
          -q, --quiet               Say only what was asked for, warnings and errors
          -h, --help                Print help
          -V, --version             Print version

        ----- stderr -----
    "#);
}

#[test]
fn a_remote_command_needs_the_double_dash() {
    let context = TestContext::new(None);
    soong_snapshot!(context, ["ssh", "nvidia-smi"], @r#"
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: unexpected argument 'nvidia-smi' found

        Usage: soong ssh [OPTIONS] [-- <CMD>...]

        For more information, try '--help'.
    "#);
}
