//! The dashboard at `GET /`: served with a strict CSP and no secret in it,
//! and, in headless Chromium driven over WebDriver, against the real binary:
//! the token from the fragment (then gone from the address bar), the live
//! countdown and its reason, Extend and Shut down behind a confirmation,
//! and nothing shown without the token. Screenshots go to
//! `target/test-artifacts/dashboard*.png`.
//!
//! The browser tests need `chromium` and `chromium-driver` (Debian), which
//! they do not install: `daemon/tests/browser-setup.sh` does, then
//! `cargo test -p soong-daemon --test it -- --ignored dashboard`.
//! `SOONG_CHROMEDRIVER` and `SOONG_CHROMIUM` name other binaries.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Policy, TOKEN, TestContext, free_port, wait_for};

const BROWSER_TESTS: &str =
    "needs chromium + chromium-driver: daemon/tests/browser-setup.sh, then --ignored";

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_served_without_auth_with_a_strict_csp_and_no_secret() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    let _daemon = ctx.spawn(&config).await;

    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let response = ctx.http.get(ctx.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_owned()
        };
        assert_eq!(header("content-type"), content_type);
        let csp = header("content-security-policy");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self';"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header("cache-control"), "no-store");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        let body = response.text().await.unwrap();
        assert!(!body.contains(TOKEN), "{path} holds the token");
        assert!(
            !body.contains(&ctx.instance_id),
            "{path} holds instance data"
        );
    }
    // The API is still behind the token.
    let response = ctx.http.get(ctx.url("/status")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium + chromium-driver: daemon/tests/browser-setup.sh, then --ignored"]
async fn dashboard_in_chromium_shows_the_countdown_extends_with_confirmation_and_shuts_down() {
    let ctx = TestContext::new().await;
    // The lease is what ends the instance, before and after the extension.
    let policy = Policy {
        idle: "50m",
        lease: "10m",
        max_lease: "40m",
        hard: "60m",
    };
    let config = ctx.write_config(&ctx.config_text(policy, ""));
    let _daemon = ctx.spawn(&config).await;
    let browser = Browser::start().await;

    browser.go(&format!("{}#token={TOKEN}", ctx.url("/"))).await;
    let countdown = browser
        .wait_text("#countdown", "a countdown like `9m 58s`", |t| {
            is_countdown(t) && t.starts_with('9')
        })
        .await;
    assert_eq!(browser.text("#reason").await, "lease");
    assert!(browser.text("#shutdown-at").await.contains("UTC"));
    assert!(browser.text("#idle").await.ends_with(" of 50m"));
    assert_eq!(browser.text("#connections").await, "0");
    assert!(browser.text("#hard").await.contains(" left"));
    // Live: the countdown moves by itself between polls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ne!(browser.text("#countdown").await, countdown);
    // The fragment is gone from the address bar; the token is in this tab's
    // session storage.
    let url = browser.url().await;
    assert!(!url.contains('#') && !url.contains(TOKEN), "{url}");
    assert_eq!(
        browser
            .script("return sessionStorage.getItem('soong-daemon-token')")
            .await,
        json!(TOKEN)
    );

    // Extend: nothing happens until it is confirmed.
    let before = ctx.status().await;
    let lease_text = browser.text("#lease").await;
    browser.click("#extend").await;
    assert!(
        browser
            .text("#confirm-text")
            .await
            .starts_with("Extend the lease by 1 hour?")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ctx.status().await.lease_deadline, before.lease_deadline);
    browser.click("#confirm-yes").await;
    browser
        .wait_text("#message", "the extension's result", |t| {
            t.starts_with("Extended by 30m (the most the lease cap allows)")
        })
        .await;
    let after = ctx.status().await;
    assert_eq!(after.lease_deadline, after.max_lease_deadline);
    assert!(after.lease_deadline > before.lease_deadline);
    browser
        .wait_text("#lease", "the new lease end", |t| t != lease_text)
        .await;
    browser
        .wait_text("#countdown", "a countdown near 40 minutes", |t| {
            is_countdown(t) && t.starts_with("39m")
        })
        .await;
    assert_eq!(browser.text("#reason").await, "lease");

    let screenshot = browser.screenshot("dashboard.png").await;
    eprintln!("screenshot: {}", screenshot.display());

    // At the cap, a further extension is refused with the daemon's reason.
    browser.click("#extend").await;
    browser.click("#confirm-yes").await;
    browser
        .wait_text("#message", "the refusal at the cap", |t| {
            t.starts_with("the lease already ends at its maximum")
        })
        .await;
    assert_eq!(ctx.status().await.lease_deadline, after.lease_deadline);

    // Shut down: cancel first (nothing happens), then confirm.
    browser.click("#shutdown").await;
    assert!(
        browser
            .text("#confirm-text")
            .await
            .contains("cannot be undone")
    );
    browser.click("#confirm-no").await;
    assert_eq!(
        browser
            .script("return document.getElementById('confirm').hidden")
            .await,
        json!(true)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ctx.terminate_calls().is_empty());
    browser.click("#shutdown").await;
    browser.click("#confirm-yes").await;
    ctx.wait_terminated(Duration::from_secs(20)).await;
    browser
        .wait_text("#countdown", "the terminating state", |t| {
            t == "terminating" || t == "terminated"
        })
        .await;
    assert_eq!(browser.text("#reason").await, "shutdown requested");
    browser.screenshot("dashboard-terminating.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium + chromium-driver: daemon/tests/browser-setup.sh, then --ignored"]
async fn dashboard_in_chromium_without_the_token_shows_nothing_and_asks_for_it() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    let _daemon = ctx.spawn(&config).await;
    let browser = Browser::start().await;

    browser.go(&ctx.url("/")).await;
    wait_for_true(
        &browser,
        "document.getElementById('dashboard').hidden && !document.getElementById('login').hidden",
    )
    .await;
    let page = browser
        .script("return document.documentElement.outerHTML")
        .await;
    let page = page.as_str().unwrap();
    assert!(!page.contains(&ctx.instance_id) && !page.contains(&ctx.instance_name));
    assert!(!page.contains(TOKEN));
    browser.screenshot("dashboard-login.png").await;

    // A wrong token is refused and forgotten.
    browser.type_into("#token-input", "not-the-token").await;
    browser.click("#login-form button").await;
    browser
        .wait_text("#login-error", "the refusal", |t| {
            t == "The daemon did not accept that token."
        })
        .await;
    assert_eq!(
        browser
            .script("return sessionStorage.getItem('soong-daemon-token')")
            .await,
        Value::Null
    );

    // The right one shows the status.
    browser.type_into("#token-input", TOKEN).await;
    browser.click("#login-form button").await;
    browser
        .wait_text("#instance", "the instance", |t| {
            t.contains(&ctx.instance_id)
        })
        .await;
    browser
        .wait_text("#countdown", "a countdown", is_countdown)
        .await;
    assert_eq!(browser.text("#reason").await, "idle timeout");

    // "Forget the token" brings the form back.
    browser.click("#forget").await;
    wait_for_true(&browser, "!document.getElementById('login').hidden").await;
    browser.close().await;
}

/// `9m 58s`, `1h 02m 03s`, `45s`.
fn is_countdown(text: &str) -> bool {
    let parts: Vec<&str> = text.split(' ').collect();
    !parts.is_empty()
        && parts.iter().all(|p| {
            p.len() >= 2
                && p[..p.len() - 1].bytes().all(|b| b.is_ascii_digit())
                && matches!(p.as_bytes()[p.len() - 1], b'h' | b'm' | b's')
        })
}

async fn wait_for_true(browser: &Browser, expression: &str) {
    let start = Instant::now();
    loop {
        if browser.script(&format!("return {expression}")).await == json!(true) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for `{expression}`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A chromedriver process (in its own process group, killed with its
/// browser on drop) and one headless Chromium session, spoken to over the
/// W3C WebDriver protocol with reqwest.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    /// The browser profile, removed after the browser is gone.
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Self {
        let driver_bin =
            std::env::var("SOONG_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium =
            std::env::var("SOONG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|err| panic!("cannot run `{driver_bin}` ({err}); {BROWSER_TESTS}"))
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let profile_path = profile.path().display().to_string();
        let mut browser = Self {
            http,
            base,
            session: String::new(),
            driver,
            _profile: profile,
        };
        wait_for("chromedriver", Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .await;
        let created = browser
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            "--disable-dev-shm-usage", "--window-size=1000,900",
                            format!("--user-data-dir={profile_path}"),
                        ]
                    }
                }}}),
            )
            .await;
        created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .clone_into(&mut browser.session);
        browser
    }

    /// One WebDriver command; its `value`.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {path}: {status} {body}");
        body["value"].clone()
    }

    async fn session_call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn go(&self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn url(&self) -> String {
        self.session_call(reqwest::Method::GET, "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn script(&self, script: &str) -> Value {
        self.session_call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    async fn element(&self, selector: &str) -> String {
        let found = self
            .session_call(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": selector }),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{selector}`: {found}"))
            .to_owned()
    }

    async fn text(&self, selector: &str) -> String {
        let id = self.element(selector).await;
        self.session_call(
            reqwest::Method::GET,
            &format!("/element/{id}/text"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn click(&self, selector: &str) {
        let id = self.element(selector).await;
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let id = self.element(selector).await;
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Polls the element's text until `check` accepts it.
    async fn wait_text(&self, selector: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.text(selector).await;
            if check(&text) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "timed out waiting for {what} in `{selector}`; it says {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot under the test artifacts directory.
    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let png = self
            .session_call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn close(self) {
        self.session_call(reqwest::Method::DELETE, "", Value::Null)
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser it left behind.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.driver.wait();
    }
}

/// `$SOONG_TEST_ARTIFACTS`, else `target/test-artifacts` (under
/// `CARGO_TARGET_DIR` when set).
fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SOONG_TEST_ARTIFACTS") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("test-artifacts")
}
