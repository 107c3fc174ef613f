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
