//! Assembles the daemon: loads the state, starts every task, serves the
//! API, and stops them all on shutdown. [`serve`] is the whole daemon, so
//! tests run it in-process on a port-0 listener.
//!
//! Tasks (see `docs/development/architecture.md`):
//! - the enforcement loop ([`crate::enforcer`]),
//! - the terminator ([`crate::terminator`]),
//! - the identity resolver ([`crate::identity`]),
//! - the heartbeat sender ([`crate::heartbeat`]), when a worker is configured,
//! - the activity sampler thread ([`crate::sampler`]),
//! - the HTTP server ([`crate::server`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lambda_cloud::{ApiKey, Client};
use poem::listener::{Acceptor, TcpAcceptor};
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::enforcer::Enforcer;
use crate::heartbeat::{HeartbeatClient, HeartbeatError};
use crate::policy::{Core, CoreConfig};
use crate::settings::Settings;
use crate::shared::{Shared, now};
use crate::state::{Loaded, Origin, StateError, StateStore, boot_time, resolve_startup};
use crate::systemd::Notifier;
use crate::terminator::Terminator;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The state directory or file.
    #[error(transparent)]
    State(#[from] StateError),
    /// The Lambda client could not be built.
    #[error("cannot set up the Lambda API client")]
    Client(#[source] lambda_cloud::Error),
    /// The heartbeat client could not be built.
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatError),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Server(#[source] std::io::Error),
}

/// Runs the daemon on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with(
        settings,
        listener,
        shutdown,
        Arc::from(crate::systemd::from_env()),
    )
    .await
}

/// [`serve`] with a chosen systemd notifier.
pub async fn serve_with(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    notifier: Arc<dyn Notifier>,
) -> Result<(), ServeError> {
    let config = &settings.config;
    let store = StateStore::open(&config.state_dir)?;
    let started = now();
    let loaded = store.load();
    if let Loaded::Corrupt(reason) = &loaded {
        log::error!(
            "the state file is unusable ({reason}); it is moved aside and the most conservative deadlines are used"
        );
        store.quarantine(started);
    }
    let (state, origin) = resolve_startup(
        &config.instance,
        &config.policy,
        loaded,
        boot_time(),
        started,
    );
    let core = Core::new(
        CoreConfig {
            policy: config.policy,
            heartbeat_interval: settings.worker.as_ref().map(|w| w.interval),
        },
        state,
    );
    log_start(&core, &origin);
    let known_id = core.instance_id().map(str::to_owned);
    let shared = Shared::new(core, store);
    // The start-up state is on disk before anything depends on it.
    shared.persist().await?;

    let client = Client::builder(
        config.lambda.api_url.clone(),
        ApiKey::new(settings.api_key.expose()),
    )
    .pacing(settings.client.pacing)
    .retry(settings.client.retry)
    .timeout(settings.client.timeout)
    .build()
    .map_err(ServeError::Client)?;
    let heartbeat = settings
        .worker
        .as_ref()
        .map(HeartbeatClient::new)
        .transpose()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    let (identity_tx, identity_rx) = watch::channel(None);
    tasks.spawn(crate::identity::run(
        client.clone(),
        Arc::clone(&shared),
        identity_tx,
        known_id,
        config.instance.name.clone(),
        settings.identity_backoff,
    ));

    let heartbeats = heartbeat.clone().map(|client| {
        let (tx, rx) = mpsc::channel(1);
        tasks.spawn(crate::heartbeat::run(client, rx));
        tx
    });

    let (terminate_tx, terminate_rx) = mpsc::channel(4);
    let terminator = Terminator {
        shared: Arc::clone(&shared),
        client,
        identity: identity_rx,
        heartbeat,
        pre_terminate: config
            .pre_terminate
            .clone()
            .map(|command| (command, config.pre_terminate_timeout)),
        backoff: settings.terminate_backoff,
    };
    tasks.spawn(terminator.run(terminate_rx));

    let (samples_tx, samples_rx) = mpsc::channel(8);
    // The thread ends by itself once the loop drops the receiver.
    let _sampler = crate::sampler::spawn(&config.activity, samples_tx);

    let acceptor = TcpAcceptor::from_tokio(listener).map_err(ServeError::Server)?;
    if let Some(addr) = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
    {
        log::info!("listening on {addr}");
    }
    // READY=1 before the loop's first WATCHDOG=1.
    notifier.ready();

    let enforcer = Enforcer {
        shared: Arc::clone(&shared),
        samples: samples_rx,
        terminate: terminate_tx,
        heartbeats,
        notifier: Arc::clone(&notifier),
    };
    let enforcer = tokio::spawn(enforcer.run(stop_rx));

    let result = poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            crate::server::routes(Arc::clone(&shared), settings.token.clone()),
            shutdown,
            Some(Duration::from_secs(5)),
        )
        .await;

    notifier.stopping();
    let _ = stop_tx.send(true);
    // The loop persists once more on its way out; the other tasks hold no
    // state of their own (a termination in progress resumes from disk).
    let _ = enforcer.await;
    tasks.shutdown().await;
    log::info!("stopped");
    result.map_err(ServeError::Server)
}

fn log_start(core: &Core, origin: &Origin) {
    let deadlines = core.deadlines();
    let (at, reason) = core.shutdown();
    let fmt = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let how = match origin {
        Origin::Restored => "restored from the state file".to_owned(),
        Origin::Fresh => "first start: launched_at from the config, else the boot time".to_owned(),
        Origin::Recovered(reason) => {
            format!("state file unusable ({reason}): conservative fallback")
        }
    };
    let shutdown_at = fmt(at);
    log::info!(
        SOONG_INSTANCE_ID = core.instance_id().unwrap_or(""),
        SOONG_REASON = reason.as_str(),
        SOONG_SHUTDOWN_AT = shutdown_at.as_str();
        "guarding instance {}; state {how}; lease until {}, hard deadline {}, shutdown at {shutdown_at} ({reason})",
        core.instance_id().unwrap_or("(to be resolved by name)"),
        fmt(deadlines.lease),
        fmt(deadlines.hard),
    );
    if core.is_terminating() {
        log::warn!("a termination was in progress before the restart; continuing it");
    }
}
