// Live feed: new bets arrive as server-sent events (rendered rows), newest on top.
"use strict";
(function () {
  var table = document.getElementById("feed-table");
  if (!table) return;
  var body = document.getElementById("feed-body");
  var live = document.getElementById("live");
  var count = document.getElementById("feed-count");
  var source = new EventSource(table.dataset.events);
  source.onopen = function () { live.classList.add("on"); };
  source.onerror = function () { live.classList.remove("on"); };
  source.addEventListener("bet", function (ev) {
    var data = JSON.parse(ev.data);
    if (body.querySelector('tr[data-bet-id="' + data.id + '"]')) return;
    body.insertAdjacentHTML("afterbegin", data.html);
    var row = body.firstElementChild;
    row.classList.add("fresh");
    setTimeout(function () { row.classList.remove("fresh"); }, 4000);
    var empty = document.getElementById("feed-empty");
    if (empty) empty.remove();
    count.textContent = String(parseInt(count.textContent || "0", 10) + 1);
    while (body.children.length > 300) body.lastElementChild.remove();
  });
  var pending = null;
  source.addEventListener("runs", function () {
    clearTimeout(pending);
    pending = setTimeout(refreshRuns, 300);
  });
  async function refreshRuns() {
    var x = document.getElementById("runs-x").value;
    var y = document.getElementById("runs-y").value;
    try {
      var data = await sliplink.api("GET", "/ui/feed/runs?x=" + encodeURIComponent(x) + "&y=" + encodeURIComponent(y));
      var list = document.getElementById("runs-list");
      list.textContent = "";
      if (!data.runs.length) {
        var li = document.createElement("li");
        li.className = "muted";
        li.textContent = "No selection took " + data.x + " of the last " + data.y + " bets.";
        list.appendChild(li);
      }
      data.runs.forEach(function (run) {
        var li = document.createElement("li");
        var strong = document.createElement("strong");
        strong.textContent = run.selection;
        var meta = document.createElement("span");
        meta.className = "muted";
        meta.textContent = " " + run.sport + (run.event ? " · " + run.event : "");
        var n = document.createElement("span");
        n.className = "count";
        n.textContent = run.count + " bets";
        li.append(strong, meta, document.createElement("br"), n, " · £" + run.stake.toFixed(2));
        list.appendChild(li);
      });
    } catch (e) { /* the next event retries */ }
  }
  window.addEventListener("beforeunload", function () { source.close(); });
})();
