/*! tailorkit browser snippet: events, decisions, placements. No build step.
 *
 * <script src="https://your-server/sdk.js" data-key="tk_ingest_..." async></script>
 * <div data-tailorkit-placement="home_hero">Default content (shown if the server is down)</div>
 *
 * Attributes of the script tag: data-key (ingest key, required), data-api (server
 * origin; default: where sdk.js came from), data-timeout (ms to wait for decisions,
 * default 1500), data-auto="false" (no automatic page view and decide).
 *
 * window.tailorkit: track(type, properties), page(properties), identify(userId, traits),
 * decide(placements?) -> Promise, optOut(), optIn(), reset(), flush().
 * Calls made before the script loaded (window.tailorkit = [["track", ...], ...]) are replayed.
 */
(function (w, d) {
  "use strict";
  var script = d.currentScript;
  function attr(name) { return script ? script.getAttribute(name) : null; }
  var cfg = {
    api: attr("data-api") || (script && script.src ? new URL(script.src, location.href).origin : ""),
    key: attr("data-key") || "",
    timeout: +attr("data-timeout") || 1500,
    auto: attr("data-auto") !== "false",
    batch: 20,
    flushMs: 1000
  };
  var queue = [], timer = null, viewed = {};

  function load(k) { try { return w.localStorage.getItem("tk_" + k); } catch (e) { return null; } }
  function save(k, v) {
    try { if (v == null) w.localStorage.removeItem("tk_" + k); else w.localStorage.setItem("tk_" + k, v); } catch (e) { /* private mode */ }
  }
  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0; return (c === "x" ? r : (r & 3 | 8)).toString(16);
    });
  }
  var anonymousId = load("aid") || uuid();
  save("aid", anonymousId);
  function optedOut() { return load("optout") === "1"; }
  function endpoint(path) { return cfg.api + path + "?key=" + encodeURIComponent(cfg.key); }
  function device() { return w.matchMedia && w.matchMedia("(max-width: 767px)").matches ? "mobile" : "desktop"; }
  function pageContext() {
    return { page: { url: location.href, path: location.pathname, referrer: d.referrer, title: d.title },
             user_agent: navigator.userAgent, locale: navigator.language, device: device() };
  }

  // Events: queued, sent in batches; on page hide with sendBeacon so nothing is lost.
  function track(type, properties) {
    var event = { event_id: uuid(), type: type, anonymous_id: anonymousId, timestamp: new Date().toISOString(),
                  properties: properties || {}, context: pageContext() };
    var userId = load("uid");
    if (userId) event.user_id = userId;
    if (optedOut()) event.consent = { personalization: false };
    queue.push(event);
    if (queue.length >= cfg.batch) flush();
    else if (!timer) timer = setTimeout(flush, cfg.flushMs);
  }
  function flush(onHide) {
    clearTimeout(timer); timer = null;
    if (!queue.length) return;
    var batch = queue.splice(0, queue.length), sentAt = new Date().toISOString();
    for (var i = 0; i < batch.length; i++) batch[i].sent_at = sentAt;
    var body = JSON.stringify(batch);
    // text/plain keeps these "simple" requests: no CORS preflight, and sendBeacon allows it.
    if (onHide === true && navigator.sendBeacon &&
        navigator.sendBeacon(endpoint("/v1/events"), new Blob([body], { type: "text/plain" }))) return;
    fetch(endpoint("/v1/events"), { method: "POST", body: body, keepalive: body.length < 60000,
                                    headers: { "Content-Type": "text/plain" } })
      .then(function (r) { if (r.status >= 500) throw new Error(String(r.status)); })
      .catch(function () { queue = batch.concat(queue).slice(-1000); }); // retried with the next flush
  }
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") flush(true); });
  w.addEventListener("pagehide", function () { flush(true); });

  // Decisions: fill [data-tailorkit-placement] elements; their own content is the fallback.
  function elements() { return d.querySelectorAll("[data-tailorkit-placement]"); }
  function decide(placements) {
    var els = elements(), keys = placements || [];
    if (!placements) for (var i = 0; i < els.length; i++) keys.push(els[i].getAttribute("data-tailorkit-placement"));
    if (optedOut() || !keys.length) { mark(els, "fallback"); return Promise.resolve(null); }
    var now = new Date(), ctx = pageContext();
    var body = { anonymous_id: anonymousId, placements: keys,
                 context: { device: ctx.device, url: location.href, path: location.pathname, referrer: d.referrer,
                            language: navigator.language, hour: now.getHours(), weekday: now.getDay() || 7 } };
    var userId = load("uid");
    if (userId) body.user_id = userId;
    var ctrl = w.AbortController ? new AbortController() : null;
    var timeout = setTimeout(function () { if (ctrl) ctrl.abort(); }, cfg.timeout);
    return fetch(endpoint("/v1/decide"), { method: "POST", body: JSON.stringify(body),
                                           headers: { "Content-Type": "text/plain" }, signal: ctrl && ctrl.signal })
      .then(function (r) { if (!r.ok) throw new Error("decide " + r.status); return r.json(); })
      .then(function (answer) { clearTimeout(timeout); apply(answer); return answer; })
      .catch(function () { clearTimeout(timeout); mark(elements(), "fallback"); return null; });
  }
  function mark(els, source) {
    for (var i = 0; i < els.length; i++) if (!els[i].hasAttribute("data-tailorkit-source")) els[i].setAttribute("data-tailorkit-source", source);
  }
  function apply(answer) {
    var els = elements();
    for (var i = 0; i < els.length; i++) {
      var el = els[i], key = el.getAttribute("data-tailorkit-placement");
      var p = answer && answer.placements && answer.placements[key];
      if (!p) { mark([el], "fallback"); continue; }
      el.innerHTML = p.content;
      el.setAttribute("data-tailorkit-variant", p.variant);
      el.setAttribute("data-tailorkit-source", p.source);
      watch(el, key, p);
    }
  }
  // An exposure is recorded when the placement is actually on screen; clicks feed bandit rewards.
  function watch(el, key, p) {
    var props = { placement: key, variant: p.variant, source: p.source };
    if (p.rule) props.rule = p.rule;
    if (p.experiment) props.experiment = p.experiment;
    if (p.bandit) props.bandit = p.bandit;
    function seen() { if (!viewed[key]) { viewed[key] = true; track("placement_view", props); } }
    if (w.IntersectionObserver) {
      var observer = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) { seen(); observer.disconnect(); }
      });
      observer.observe(el);
    } else { seen(); }
    if (!el.__tkClick) {
      el.__tkClick = true;
      el.addEventListener("click", function () {
        track("click", { placement: key, variant: el.getAttribute("data-tailorkit-variant") });
      });
    }
  }

  function identify(userId, traits) {
    save("uid", String(userId));
    track("identify", traits || {});
  }
  function consent(personalization, reset) {
    var body = { anonymous_id: anonymousId, personalization: personalization, reset: !!reset };
    var userId = load("uid");
    if (userId) body.user_id = userId;
    return fetch(endpoint("/v1/consent"), { method: "POST", body: JSON.stringify(body),
                                            headers: { "Content-Type": "text/plain" }, keepalive: true })
      .then(function (r) { return r.ok; }, function () { return false; });
  }
  function optOut() { save("optout", "1"); return consent(false, true); }
  function optIn() { save("optout", null); return consent(true, false); }
  function reset() {
    var done = consent(!optedOut(), true);
    save("uid", null); anonymousId = uuid(); save("aid", anonymousId);
    return done;
  }

  var api = {
    track: track, page: function (props) { track("page_view", props); }, identify: identify, decide: decide,
    optOut: optOut, optIn: optIn, reset: reset, flush: function () { flush(false); },
    anonymousId: function () { return anonymousId; }, config: cfg
  };
  var pending = Array.isArray(w.tailorkit) ? w.tailorkit : [];
  w.tailorkit = api;
  for (var j = 0; j < pending.length; j++) {
    var call = pending[j];
    if (call && api[call[0]]) api[call[0]].apply(null, call.slice(1));
  }
  if (cfg.auto) {
    track("page_view", { url: location.href, path: location.pathname });
    if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", function () { decide(); });
    else decide();
  }
})(window, document);
