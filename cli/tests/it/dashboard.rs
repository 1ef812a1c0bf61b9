//! `soong dashboard`: the daemon's page, directly or through the tunnel,
//! with the token only in the URL fragment and never on the browser's
//! command line.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;

use crate::common::{TestContext, render};
use crate::ssh::{SshWorld, require_sshd};

const TOKEN: &str = "test-daemon-token-0123456789abcdef";

/// `GET /` at `url` (fragment dropped): the status line and the body.
fn get_page(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let host = rest.split('/').next().unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, text)
}

fn started() -> TestContext {
    let context = TestContext::with_daemons("valid.yaml");
    let output = context
        .command(&["start", "-y", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.05")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", render(&output));
    context
}

#[test]
fn dashboard_print_gives_the_daemon_page_with_the_token_in_the_fragment() {
    let context = started();
    let output = context.run(&["dashboard", "--print"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(url.starts_with("http://127."), "{url}");
    assert!(url.ends_with(&format!("/#token={TOKEN}")), "{url}");
    let (status, body) = get_page(&url);
    assert!(status.contains("200"), "{status}\n{body}");
    assert!(body.to_ascii_lowercase().contains("<html"), "{body}");
}

#[test]
fn the_browser_gets_a_private_page_not_the_token_on_its_command_line() {
    let context = started();
    let bin = context.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let argv_file = context.dir.path().join("browser-argv");
    let browser = bin.join("fake-browser");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n",
            argv_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = context
        .command(&["dashboard", "--json"])
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", render(&output));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["opened"], true, "{shown}");
    let args = std::fs::read_to_string(&argv_file).unwrap();
    assert!(!args.contains(TOKEN), "{args}");
    let page = std::path::PathBuf::from(args.trim());
    assert!(page.ends_with("dashboard.html"), "{args}");
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&format!("/#token={TOKEN}\">")), "{html}");
}

#[test]
fn over_ssh_the_dashboard_goes_through_a_tunnel_it_starts() {
    require_sshd();
    let world = SshWorld::new();
    let _sshd = world.sshd();
    let output = world.context.run(&["dashboard", "--print", "--json"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let url = shown["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, body) = get_page(url);
    assert!(status.contains("200"), "{status}\n{body}");
    let output = world.context.run(&["tunnel", "stop", "--json"]);
    let stopped: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stopped[0]["was_running"], true, "{stopped}");
}
