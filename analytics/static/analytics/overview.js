// The overview's live tiles: poll the staff API (/api/analytics/overview/live/) every few
// seconds and show each tile's age. No library: fetch, a timer and textContent (never HTML).
(function () {
  "use strict";
  var root = document.getElementById("live-tiles");
  if (!root) { return; }
  var url = root.getAttribute("data-url");
  var every = parseInt(root.getAttribute("data-every-ms"), 10) || 3000;
  var asOf = Date.parse(root.getAttribute("data-as-of"));
  var failedSince = null;
  var format = new Intl.NumberFormat("en-US");

  function age(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + (s % 60) + " s"; }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function tick() {
    var text = isNaN(asOf) ? "no data yet" : "as of " + age(Date.now() - asOf) + " ago";
    if (failedSince !== null) { text += " (cannot reach the server)"; }
    root.querySelectorAll("[data-age]").forEach(function (el) { el.textContent = text; });
    root.classList.toggle("sh-stale", isNaN(asOf) || Date.now() - asOf > 3 * every + 2000);
  }

  function apply(tiles) {
    root.classList.toggle("sh-unavailable", !tiles.available);
    root.querySelectorAll("[data-tile]").forEach(function (el) {
      var value = tiles[el.getAttribute("data-tile")];
      el.textContent = tiles.available && typeof value === "number" ? format.format(value) : "?";
    });
    asOf = Date.parse(tiles.as_of);
    root.setAttribute("data-as-of", tiles.as_of);
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (tiles) { failedSince = null; apply(tiles); })
      .catch(function () { if (failedSince === null) { failedSince = Date.now(); } })
      .then(function () { tick(); window.setTimeout(poll, every); });
  }

  window.setInterval(tick, 1000);
  tick();
  window.setTimeout(poll, every);
})();
