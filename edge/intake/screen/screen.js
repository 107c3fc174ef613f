// Kiosk screen of cxr-edge: polls GET /v1/screen once a second and shows the device state;
// the Acknowledge button posts /v1/ack. No libraries, no external requests.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  const OFFLINE_AFTER = 3; // failed polls before the screen admits it lost the device
  let failures = 0;
  let thumbURL = "";

  const text = (id, s) => { $(id).textContent = s; };
  const num = (v) => (typeof v === "number" ? v.toFixed(2) : "–");

  function clock(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "–" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function ago(thenISO, nowISO) {
    const s = Math.max(0, Math.round((new Date(nowISO) - new Date(thenISO)) / 1000));
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }

  function headline(s) {
    const r = s.latest;
    switch (s.state) {
      case "pneumonia":
        return ["PNEUMONIA SUSPECTED", "Prioritise this study. Press Acknowledge when it has been seen."];
      case "normal":
        return ["NORMAL", "No pneumonia suspected: the score is below the threshold."];
      case "fault":
        if (r && r.label === "unreadable") {
          return ["IMAGE NOT ASSESSED", "Check the image or take it again."];
        }
        return ["DEVICE FAULT", "The device cannot score images. Call support."];
      case "busy":
        return ["SCORING…", "An image is being assessed."];
      default:
        return ["READY", r ? "Waiting for the next image. Last result below." : "Waiting for the first image."];
    }
  }

  function render(s) {
    document.body.dataset.state = s.state;
    const [head, sub] = headline(s);
    text("headline", head);
    text("subline", sub);

    const r = s.latest;
    const t = r ? r.threshold : s.threshold;
    if (r && r.label !== "unreadable") {
      text("score", num(r.score));
      $("fill").style.width = Math.min(100, Math.max(0, r.score * 100)) + "%";
    } else {
      text("score", "–");
      $("fill").style.width = "0";
    }
    $("mark").style.left = "calc(" + Math.min(100, Math.max(0, (t || 0) * 100)) + "% - 1px)";
    text("threshold", "threshold " + num(t) + (r && r.label !== "unreadable" ? (r.score >= t ? " · at or above" : " · below") : ""));
    text("when", r ? clock(r.scored_at) + " (" + ago(r.scored_at, s.time) + ")" : "–");
    const LABEL = { pneumonia: "Pneumonia suspected", normal: "Normal", unreadable: "Not assessed" };
    let what = r ? (LABEL[r.label] || r.label) : "–";
    if (r && r.label === "pneumonia" && s.state !== "pneumonia") what += " (acknowledged)";
    if (r && r.label === "unreadable" && r.reason) what += ": " + r.reason;
    text("result", what);
    $("result").title = what;
    const m = (r && r.model) || s.model || {};
    text("model", m.name ? m.name + (m.version ? " " + m.version : "") : "–");
    $("ack").hidden = s.state !== "pneumonia";

    const url = s.thumbnail || "";
    if (url !== thumbURL) {
      thumbURL = url;
      const img = $("thumb");
      img.hidden = true;
      $("noimage").hidden = false;
      if (url) img.src = url; else img.removeAttribute("src");
    }

    const b = $("broker");
    b.textContent = s.broker === "none" ? "no broker configured" : "broker " + s.broker;
    b.className = s.broker === "disconnected" ? "warn" : "";
    const o = $("outbox");
    o.textContent = s.broker === "none" ? "" : s.outbox > 0 ? s.outbox + " result" + (s.outbox === 1 ? "" : "s") + " waiting to send" : "all results sent";
    o.className = s.outbox > 0 ? "warn" : "";
    text("clock", clock(s.time));
  }

  function offline(why) {
    document.body.dataset.state = "offline";
    text("headline", "NO CONTACT");
    text("subline", "This screen cannot reach the scoring service (" + why + "). New results are not shown.");
    $("ack").hidden = true;
  }

  $("thumb").addEventListener("load", () => { $("thumb").hidden = false; $("noimage").hidden = true; });
  $("thumb").addEventListener("error", () => { $("thumb").hidden = true; $("noimage").hidden = false; });

  $("ack").addEventListener("click", async () => {
    const btn = $("ack");
    btn.disabled = true;
    try {
      const r = await fetch("/v1/ack", { method: "POST" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
    } catch (e) {
      text("subline", "Acknowledge failed (" + e.message + "). Try again.");
    } finally {
      btn.disabled = false;
    }
  });

  async function poll() {
    try {
      const r = await fetch("/v1/screen", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
      failures = 0;
    } catch (e) {
      failures++;
      if (failures >= OFFLINE_AFTER) offline(e.message);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
})();
