//! The dashboard at `GET /` (DESIGN.md §3.2): one page, its script and its
//! style sheet, compiled into the binary (no CDN, nothing fetched from
//! anywhere but the daemon).
//!
//! The page holds no secret and needs none to load: the script reads the
//! bearer token from the URL fragment (never sent to a server) or asks for
//! it, keeps it in `sessionStorage`, removes the fragment from the address
//! bar, and calls the API with the `Authorization` header. The script and
//! style are separate files rather than inline, so the CSP can forbid all
//! inline code (`script-src 'self'`) without hashes to keep in sync.

use poem::http::{StatusCode, header};
use poem::{Response, handler};

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// The Content-Security-Policy of the three files: nothing but the daemon's
/// own script, style and API; no inline code, no frames, no forms posting
/// anywhere, no `<base>` tricks.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header("cross-origin-opener-policy", "same-origin")
        .header("cross-origin-resource-policy", "same-origin")
        .body(body)
}

/// `GET /`.
#[handler]
pub fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard.js`.
#[handler]
pub fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard.css`.
#[handler]
pub fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_script_and_style() {
        assert!(PAGE.contains(r#"<script src="/dashboard.js" defer></script>"#));
        assert!(PAGE.contains(r#"<link rel="stylesheet" href="/dashboard.css">"#));
        // No inline script, no inline style, no other origin.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(!PAGE.contains("<style"));
        assert!(!PAGE.contains(" style="));
        // No inline event handlers (` onclick=` and the like).
        let handlers = PAGE.split(" on").skip(1).filter(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert_eq!(handlers.count(), 0, "no inline event handlers");
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }

    #[test]
    fn the_script_never_writes_html() {
        assert!(!SCRIPT.contains("innerHTML"));
        assert!(!SCRIPT.contains("outerHTML"));
        assert!(!SCRIPT.contains("document.write"));
        assert!(!SCRIPT.contains("eval("));
    }
}
