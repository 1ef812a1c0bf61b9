// soong-daemon dashboard. Served from the daemon itself under a strict CSP
// (no inline script, no third-party origin). The page holds no secret: the
// bearer token comes from the URL fragment (which browsers never send to the
// server) or from the form, lives in this tab's sessionStorage only, and is
// sent in the Authorization header. Everything shown is set as text, never
// as HTML.
"use strict";

(() => {
  const KEY = "soong-daemon-token";
  const POLL_MS = 5000;
  const $ = (id) => document.getElementById(id);

  let status = null;        // the last GET /status body
  let fetchedAt = 0;        // Date.now() when it arrived
  let clockSkew = 0;        // server time - browser time, in ms (from the Date header)
  let pollTimer = null;
  let pending = null;       // the action awaiting confirmation

  // --- the token ----------------------------------------------------------
  function tokenFromFragment() {
    const hash = window.location.hash.replace(/^#/, "");
    if (!hash) return null;
    const params = new URLSearchParams(hash);
    const token = params.get("token") || (hash.includes("=") ? null : decodeURIComponent(hash));
    // The fragment is gone from the address bar (and the history) either way.
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return token && token.trim() ? token.trim() : null;
  }
  const getToken = () => sessionStorage.getItem(KEY);
  const setToken = (token) => sessionStorage.setItem(KEY, token);
  const forgetToken = () => sessionStorage.removeItem(KEY);

  // --- the API ------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + getToken() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401) {
      forgetToken();
      showLogin("The daemon did not accept that token.");
      throw new Error("unauthorized");
    }
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) clockSkew = date - Date.now();
    return { status: response.status, data };
  }
  const errorText = (data, fallback) => (data && data.error && data.error.message) || fallback;

  // --- formatting ---------------------------------------------------------
  const now = () => Date.now() + clockSkew;
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s`;
    if (m > 0) return `${m}m ${String(s).padStart(2, "0")}s`;
    return `${s}s`;
  }
  function shortDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m`;
    return `${seconds}s`;
  }
  function when(iso) {
    const date = new Date(iso);
    const local = date.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return `${local} (${date.toISOString().slice(11, 19)} UTC)`;
  }
  const secondsUntil = (iso) => (Date.parse(iso) - now()) / 1000;
  const REASONS = {
    idle_timeout: "idle timeout",
    lease_expired: "lease",
    hard_timeout: "hard timeout",
    shutdown_requested: "shutdown requested",
  };
  const reasonText = (reason) => REASONS[reason] || String(reason);

  // --- rendering ----------------------------------------------------------
  function text(id, value) { $(id).textContent = value; }

  function showLogin(message) {
    stopPolling();
    status = null;
    $("dashboard").hidden = true;
    $("login").hidden = false;
    text("instance", "");
    text("login-error", message || "");
    $("token-input").value = "";
    $("token-input").focus();
  }

  function showDashboard() {
    $("login").hidden = true;
    $("dashboard").hidden = false;
  }

  function render() {
    if (!status) return;
    const s = status;
    const since = (Date.now() - fetchedAt) / 1000;
    const terminating = s.state === "terminating";
    text("instance", [s.instance_name, s.instance_id].filter(Boolean).join(" · ") || "instance not identified yet");
    text("headline-label", terminating ? "Instance" : "Shutdown in");
    if (terminating) {
      text("countdown", s.terminate_confirmed ? "terminated" : "terminating");
      text("reason", reasonText(s.terminate_reason || s.shutdown_reason));
      text("shutdown-at", s.terminating_since ? "since " + when(s.terminating_since) : "");
      const t = $("terminating");
      t.hidden = false;
      t.classList.toggle("error", !s.terminate_confirmed);
      t.textContent = s.terminate_confirmed
        ? "Lambda confirmed the termination."
        : `Terminate calls so far: ${s.terminate_attempts}` + (s.terminate_error ? ` (last error: ${s.terminate_error})` : "");
    } else {
      text("countdown", duration(secondsUntil(s.shutdown_at)));
      text("reason", reasonText(s.shutdown_reason));
      text("shutdown-at", "at " + when(s.shutdown_at));
      $("terminating").hidden = true;
    }
    text("idle", `${shortDuration(s.idle_seconds + since)} of ${shortDuration(s.idle_timeout_seconds)}`);
    text("lease", `${when(s.lease_deadline)}, ${shortDuration(secondsUntil(s.lease_deadline))} left`);
    text("max-lease", when(s.max_lease_deadline));
    text("hard", `${when(s.hard_deadline)}, ${shortDuration(secondsUntil(s.hard_deadline))} left`);
    text("connections", String(s.active_connections));
    text("last-activity", `${when(s.last_activity)}` + (s.last_activity_source ? ` (${s.last_activity_source})` : ""));
    text("uptime", shortDuration(s.uptime_seconds + since));
    text("cost", s.price_cents_per_hour == null
      ? "price unknown"
      : `$${((s.price_cents_per_hour * (s.uptime_seconds + since)) / 360000).toFixed(2)} at $${(s.price_cents_per_hour / 100).toFixed(2)}/h`);
    text("updated", `updated ${shortDuration(since)} ago`);
    $("extend").disabled = terminating;
    $("shutdown").disabled = terminating;
  }

  async function refresh() {
    try {
      const { status: code, data } = await api("GET", "/status");
      if (code !== 200) {
        text("message", errorText(data, `the daemon answered ${code}`));
        return;
      }
      status = data;
      fetchedAt = Date.now();
      showDashboard();
      render();
    } catch (err) {
      if (err.message !== "unauthorized") text("message", "The daemon cannot be reached; retrying.");
    }
  }

  function startPolling() {
    stopPolling();
    refresh();
    pollTimer = setInterval(refresh, POLL_MS);
  }
  function stopPolling() {
    if (pollTimer !== null) clearInterval(pollTimer);
    pollTimer = null;
  }

  // --- actions, each behind a confirmation ---------------------------------
  function ask(question, danger, action) {
    pending = action;
    text("confirm-text", question);
    $("confirm").classList.toggle("danger", danger);
    $("confirm").hidden = false;
    $("confirm-yes").focus();
  }
  function closeConfirm() {
    pending = null;
    $("confirm").hidden = true;
  }

  async function extend(hours) {
    const { status: code, data } = await api("POST", "/extend", { hours });
    if (code === 200) {
      const granted = shortDuration(data.granted_seconds);
      text("message", data.capped
        ? `Extended by ${granted} (the most the lease cap allows); the lease now ends ${when(data.lease_deadline)}.`
        : `Extended by ${granted}; the lease now ends ${when(data.lease_deadline)}.`);
    } else {
      text("message", errorText(data, `extend failed (${code})`));
    }
    await refresh();
  }

  async function shutdown() {
    const { status: code, data } = await api("POST", "/shutdown", { reason: "dashboard" });
    text("message", code === 202 ? "Shutting down: the instance is being terminated." : errorText(data, `shutdown failed (${code})`));
    await refresh();
  }

  // --- wiring -------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      setToken(token);
      $("token-input").value = "";
      text("login-error", "");
      startPolling();
    });
    $("extend").addEventListener("click", () => {
      const hours = Number($("extend-hours").value);
      ask(`Extend the lease by ${hours} hour${hours === 1 ? "" : "s"}? (The lease cap and the hard deadline still apply.)`, false, () => extend(hours));
    });
    $("shutdown").addEventListener("click", () => {
      ask("Shut down now? The instance will be terminated through the Lambda API. This cannot be undone.", true, shutdown);
    });
    $("confirm-yes").addEventListener("click", () => {
      const action = pending;
      closeConfirm();
      if (action) action().catch(() => text("message", "The daemon cannot be reached."));
    });
    $("confirm-no").addEventListener("click", closeConfirm);
    $("forget").addEventListener("click", () => {
      forgetToken();
      showLogin("");
    });

    const fromFragment = tokenFromFragment();
    if (fromFragment) setToken(fromFragment);
    if (getToken()) startPolling(); else showLogin("");
    setInterval(render, 1000);
  });
})();
