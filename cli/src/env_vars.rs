//! Every environment variable soong reads, in one documented registry.
//!
//! `docs/reference/environment.md` is generated from [`ENV_VARS`]; a test
//! fails when the two differ (and prints the command that regenerates the
//! page), and another fails when the source reads a `SOONG_*` variable that
//! is not listed here, so the reference cannot fall behind the code.

use std::fmt::Write as _;

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// Its name.
    pub name: &'static str,
    /// Which program reads it.
    pub read_by: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// The registry, in the order the reference lists it.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: crate::settings::ENV_CONFIG,
        read_by: "soong",
        description: "The config file, instead of `~/.config/gpu-dashboard/config.yaml` (`--config` wins).",
    },
    EnvVar {
        name: crate::settings::ENV_API_KEY,
        read_by: "soong",
        description: "The Lambda Cloud API key; wins over `lambda.api_key`.",
    },
    EnvVar {
        name: crate::settings::ENV_API_URL,
        read_by: "soong",
        description: "The Lambda Cloud API base URL; wins over `lambda.api_url` (the simulator's, for tests and the demo).",
    },
    EnvVar {
        name: crate::settings::ENV_NO_COLOR,
        read_by: "soong",
        description: "Any non-empty value turns colour off, like `--no-color`.",
    },
    EnvVar {
        name: crate::settings::ENV_NO_PACING,
        read_by: "soong",
        description: "`1` drops client-side request pacing (only against a simulator with rate limits off).",
    },
    EnvVar {
        name: crate::settings::ENV_WAIT_SCALE,
        read_by: "soong",
        description: "A factor applied to the boot and health waits (tests use e.g. `0.005`).",
    },
    EnvVar {
        name: crate::settings::ENV_XDG_STATE_HOME,
        read_by: "soong",
        description: "Where the history log and tunnel records live (`$XDG_STATE_HOME/soong`, default `~/.local/state/soong`).",
    },
    EnvVar {
        name: crate::ansible::ENV_ANSIBLE_DIR,
        read_by: "soong",
        description: "The `ansible/` directory `soong start --provision ansible` runs.",
    },
    EnvVar {
        name: crate::commands::dashboard::ENV_BROWSER,
        read_by: "soong",
        description: "The browser `soong dashboard` opens.",
    },
    EnvVar {
        name: crate::commands::worker::ENV_CLOUDFLARE_API_TOKEN,
        read_by: "soong",
        description: "Cloudflare API token for `soong worker`; wins over `worker.cloudflare_api_token`.",
    },
    EnvVar {
        name: crate::commands::worker::ENV_CLOUDFLARE_ACCOUNT_ID,
        read_by: "soong",
        description: "Cloudflare account id for `soong worker`; wins over `worker.cloudflare_account_id`.",
    },
    EnvVar {
        name: "SOONG_DAEMON_URL",
        read_by: "soong (at build time)",
        description: "The default `provision.daemon_binary_url` compiled into a release build.",
    },
    EnvVar {
        name: "SOONG_DAEMON_SHA256",
        read_by: "soong (at build time)",
        description: "The default `provision.daemon_binary_sha256` compiled into a release build.",
    },
    EnvVar {
        name: "SOONG_LOG",
        read_by: "soong-daemon",
        description: "Log level: `error`, `warn`, `info` (default), `debug`, `trace`.",
    },
    EnvVar {
        name: "SOONG_TEST_STALL_LOOP_FILE",
        read_by: "soong-daemon (debug builds only)",
        description: "Test hook: while this file exists the enforcement loop stalls, so tests can watch systemd's watchdog act.",
    },
];

/// The reference page, as generated from [`ENV_VARS`].
pub fn reference_markdown() -> String {
    let mut page = String::from(
        "# Environment variables\n\n\
         Generated from `cli/src/env_vars.rs`; regenerate with\n\
         `SOONG_UPDATE_REFERENCE=1 cargo test -p soong --lib env_vars`.\n\n\
         | variable | read by | what it does |\n|---|---|---|\n",
    );
    for var in ENV_VARS {
        let _ = writeln!(
            page,
            "| `{}` | {} | {} |",
            var.name, var.read_by, var.description
        );
    }
    page
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    #[test]
    fn the_reference_page_is_generated_from_the_registry() {
        let path = repo().join("docs/reference/environment.md");
        let generated = reference_markdown();
        if std::env::var_os("SOONG_UPDATE_REFERENCE").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/reference/environment.md is out of date; run: SOONG_UPDATE_REFERENCE=1 cargo test -p soong --lib env_vars"
        );
    }

    #[test]
    fn every_soong_variable_the_code_mentions_is_in_the_registry() {
        let mut unlisted = Vec::new();
        for dir in [
            "cli/src",
            "daemon/src",
            "sim/src",
            "lambda/src",
            "protocol/src",
        ] {
            scan(&repo().join(dir), &mut unlisted);
        }
        unlisted.sort();
        unlisted.dedup();
        assert!(unlisted.is_empty(), "add these to ENV_VARS: {unlisted:?}");
    }

    /// Collects quoted `"SOONG_…"` names (how code reads a variable) that the
    /// registry lacks. Journal field names and the worker's KV binding share
    /// the prefix but are not environment variables.
    fn scan(dir: &Path, unlisted: &mut Vec<String>) {
        const NOT_VARIABLES: &[&str] = &[
            "SOONG_REASON",
            "SOONG_INSTANCE_ID",
            "SOONG_SHUTDOWN_AT",
            "SOONG_KV",
            "SOONG_UPDATE_REFERENCE",
        ];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scan(&path, unlisted);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (start, _) in text.match_indices("\"SOONG_") {
                let name: String = text[start + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let listed = ENV_VARS.iter().any(|v| v.name == name);
                // A bare prefix is a field-name builder, not a variable.
                if !listed && name.len() > "SOONG_".len() && !NOT_VARIABLES.contains(&name.as_str())
                {
                    unlisted.push(name);
                }
            }
        }
    }
}
