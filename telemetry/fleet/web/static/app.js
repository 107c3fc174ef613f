// Live updates: the server sends "change" events naming what changed (devices, results,
// alerts); each element with data-fragment re-fetches its HTML when one of its data-on kinds
// changed. Relative times are refreshed every 30 s. No framework, no external assets.
(function () {
  "use strict";
  var parts = Array.prototype.slice.call(document.querySelectorAll("[data-fragment]"));
  var live = document.getElementById("live");
  var pending = {}, timer = null;

  // A fragment is fetched at most once per max(1 s, 10 × its last fetch time), so a large
  // fleet table does not keep the browser busy; a change in between is fetched afterwards.
  function load(el) {
    var now = Date.now();
    if (el._busy || now < (el._next || 0)) {
      el._again = true;
      if (!el._timer) {
        el._timer = setTimeout(function () { el._timer = null; if (el._again) { load(el); } },
          Math.max(50, (el._next || now) - now));
      }
      return;
    }
    el._busy = true; el._again = false;
    fetch(el.getAttribute("data-fragment"), { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) { el.innerHTML = html; })
      .catch(function () { /* keep what is shown; the next event retries */ })
      .then(function () {
        el._busy = false;
        el._next = Date.now() + Math.max(1000, 10 * (Date.now() - now));
      });
  }
  function flush() {
    timer = null;
    var kinds = pending; pending = {};
    parts.forEach(function (el) {
      var on = (el.getAttribute("data-on") || "").split(" ");
      if (on.some(function (k) { return kinds[k]; })) { load(el); }
    });
  }
  function setLive(text, cls) { if (live) { live.textContent = text; live.className = "live " + cls; } }

  if (!window.EventSource || parts.length === 0) { setLive("static", "off"); return; }
  var es = new EventSource("/events");
  es.onopen = function () { setLive("live", "on"); };
  es.onerror = function () { setLive("reconnecting…", "off"); };
  es.addEventListener("change", function (e) {
    String(e.data).split(" ").forEach(function (k) { pending[k] = true; });
    if (!timer) { timer = setTimeout(flush, 150); }
  });
  setInterval(function () { parts.forEach(load); }, 30000);
})();

// Commands from the device page: the operator's token stays in this tab (sessionStorage) and
// goes with each command as a bearer token; the answer (the device's reply, or why there is
// none) is shown, and the audit list refreshes through the "commands" event.
(function () {
  "use strict";
  var form = document.getElementById("command-form");
  if (!form) { return; }
  var token = document.getElementById("cmd-token");
  var threshold = document.getElementById("cmd-threshold");
  var status = document.getElementById("cmd-status");
  var base = "/api/devices/" + encodeURIComponent(form.getAttribute("data-site")) + "/" +
    encodeURIComponent(form.getAttribute("data-device")) + "/cmd/";
  try { token.value = sessionStorage.getItem("cxr-operator-token") || ""; } catch (e) { /* storage off */ }

  function show(text, cls) { status.textContent = text; status.className = cls; }
  function modelSHA() {
    var m = document.getElementById("device-model");
    return m ? m.getAttribute("data-sha256") : "";
  }
  function describe(code, body) {
    if (body.outcome === "ok") {
      var d = body.reply && body.reply.detail;
      if (d && typeof d.threshold === "number") {
        return "Done: the device now applies threshold " + d.threshold + " (" + d.source + ").";
      }
      return "Done: the device replied ok.";
    }
    if (body.outcome === "refused") { return "The device refused: " + body.error; }
    if (body.outcome === "no_reply") { return "Sent, but no reply yet: " + body.error; }
    return "Not sent (" + code + "): " + (body.error || "error");
  }
  function send(name, payload) {
    if (!token.value) { show("Enter your operator token.", "bad"); token.focus(); return; }
    show("Sending " + name + "…", "");
    fetch(base + name, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token.value, "Content-Type": "application/json" },
      body: JSON.stringify(payload)
    }).then(function (r) {
      return r.json().then(function (body) { return { code: r.status, body: body }; });
    }).then(function (res) {
      if (res.code !== 401) {
        try { sessionStorage.setItem("cxr-operator-token", token.value); } catch (e) { /* storage off */ }
      }
      show(describe(res.code, res.body), res.body.outcome === "ok" ? "ok" : "bad");
    }).catch(function (err) { show("The dashboard did not answer: " + err, "bad"); });
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var t = parseFloat(threshold.value);
    if (!(t > 0 && t < 1)) { show("The threshold must be a number between 0 and 1.", "bad"); threshold.focus(); return; }
    send("set-threshold", { threshold: t, model_sha256: modelSHA() });
  });
  form.querySelector("[data-cmd=clear]").addEventListener("click", function () {
    send("set-threshold", { threshold: null, model_sha256: modelSHA() });
  });
  form.querySelector("[data-cmd=ping]").addEventListener("click", function () { send("ping", {}); });
})();
