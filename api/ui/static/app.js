// Shared helpers: the session's CSRF token on every state-changing call, a toast.
"use strict";
window.sliplink = (function () {
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  function toast(text, kind) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.className = "show " + (kind || "");
    clearTimeout(el._timer);
    el._timer = setTimeout(function () { el.className = ""; }, 4000);
  }
  async function errorText(resp) {
    try {
      var body = await resp.json();
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) {
        return body.detail.map(function (d) {
          return (d.loc ? d.loc.slice(1).join(".") + ": " : "") + d.msg;
        }).join("; ");
      }
      return JSON.stringify(body.detail || body);
    } catch (e) {
      return resp.status + " " + resp.statusText;
    }
  }
  // fetch JSON with the session cookie and the CSRF header; throws Error(detail) on 4xx/5xx
  async function api(method, url, body) {
    var opts = { method: method, headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" },
                 credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    var resp = await fetch(url, opts);
    if (!resp.ok) throw new Error(await errorText(resp));
    var type = resp.headers.get("content-type") || "";
    return type.indexOf("json") >= 0 ? resp.json() : null;
  }
  return { csrf: csrf, toast: toast, api: api, errorText: errorText };
})();
