//! The idle timeout with real TCP clients and the real activity sampler, a
//! 5 s idle timeout and 1 s sampling: a client that keeps talking keeps the
//! instance; a forgotten keep-alive connection does not; short requests
//! every few seconds do.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use soong_protocol::ShutdownReason;

use crate::support::{DaemonProcess, Policy, TestContext, arrival};

/// An echo service on a free loopback port: each read is answered after
/// `delay` with the same bytes.
fn echo_service(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    std::thread::sleep(delay);
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn exchange(stream: &mut TcpStream) {
    stream.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).unwrap();
}

async fn idle_daemon(ctx: &TestContext, port: u16) -> DaemonProcess {
    let policy = Policy {
        idle: "5s",
        ..Policy::default()
    };
    let text = ctx
        .config_text(policy, "")
        .replace("ports: []", &format!("ports: [{port}]"));
    let config = ctx.write_config(&text);
    ctx.spawn(&config).await
}

/// Runs blocking client work off the async threads.
async fn client<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_keeps_talking_keeps_the_instance_until_it_stops() {
    let ctx = TestContext::new().await;
    let port = echo_service(Duration::ZERO);
    let _daemon = idle_daemon(&ctx, port).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (stream, last_talk) = client(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(9) {
            exchange(&mut stream);
            std::thread::sleep(Duration::from_millis(500));
        }
        (stream, time::OffsetDateTime::now_utc())
    })
    .await;
    assert!(
        ctx.terminate_calls().is_empty(),
        "terminated while in use:\n{}",
        ctx.log()
    );

    // Silent from now on, though still connected.
    let call = ctx.wait_terminated(Duration::from_secs(10)).await;
    let after = arrival(&call) - last_talk;
    assert!(
        after >= time::Duration::seconds(4) && after <= time::Duration::seconds(8),
        "terminated {after} after the last exchange"
    );
    assert_eq!(
        ctx.status().await.terminate_reason,
        Some(ShutdownReason::IdleTimeout)
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_left_open_is_not_activity() {
    let ctx = TestContext::new().await;
    let port = echo_service(Duration::ZERO);
    let _daemon = idle_daemon(&ctx, port).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut stream);
    let opened = time::OffsetDateTime::now_utc();
    // The connection is seen, and then only seen.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = ctx.status().await;
    assert!(status.active_connections >= 1, "{status:?}");
    assert_eq!(
        status.last_activity_source.as_deref(),
        Some(format!("connection:{port}").as_str())
    );

    let call = ctx.wait_terminated(Duration::from_secs(10)).await;
    let after = arrival(&call) - opened;
    assert!(
        after <= time::Duration::seconds(8),
        "terminated {after} after the last exchange"
    );
    // Still open: an open connection alone did not keep it alive.
    stream.write_all(b"x").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_request_every_three_seconds_keeps_the_instance() {
    let ctx = TestContext::new().await;
    let port = echo_service(Duration::from_millis(200));
    let _daemon = idle_daemon(&ctx, port).await;
    let last = client(move || {
        let start = Instant::now();
        let mut last = time::OffsetDateTime::now_utc();
        while start.elapsed() < Duration::from_secs(13) {
            // A fresh connection per request, closed by the client.
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            exchange(&mut stream);
            drop(stream);
            last = time::OffsetDateTime::now_utc();
            std::thread::sleep(Duration::from_secs(3));
        }
        last
    })
    .await;
    assert!(
        ctx.terminate_calls().is_empty(),
        "terminated while in use:\n{}",
        ctx.log()
    );
    let call = ctx.wait_terminated(Duration::from_secs(10)).await;
    assert!(arrival(&call) - last <= time::Duration::seconds(8));
}

/// A pty pair, as an SSH session has.
fn open_pty() -> (nix::pty::PtyMaster, std::fs::File) {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
    nix::pty::grantpt(&master).unwrap();
    nix::pty::unlockpt(&master).unwrap();
    let path = nix::pty::ptsname_r(&master).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open(path)
        .unwrap();
    (master, slave)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interactive_terminal_in_use_keeps_the_instance() {
    // Only the positive case is asserted end to end: on a shared host another
    // pty may be busy too, which can keep the instance but never end it.
    let ctx = TestContext::new().await;
    let policy = Policy {
        idle: "5s",
        ..Policy::default()
    };
    let text = ctx
        .config_text(policy, "")
        .replace("terminals: false", "terminals: true");
    let config = ctx.write_config(&text);
    let _daemon = ctx.spawn(&config).await;
    let (master, mut slave) = open_pty();
    client(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(9) {
            slave.write_all(b"epoch 3/10\r\n").unwrap();
            std::thread::sleep(Duration::from_secs(1));
        }
        drop(master);
    })
    .await;
    assert!(
        ctx.terminate_calls().is_empty(),
        "terminated while a terminal was in use:\n{}",
        ctx.log()
    );
    let status = ctx.status().await;
    assert!(
        status
            .last_activity_source
            .as_deref()
            .is_some_and(|s| s.starts_with("terminal:pts/")),
        "{status:?}"
    );
}
