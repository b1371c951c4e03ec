// Alert queue triage by keyboard: j/k move, Enter or o opens, / jumps to the filters.
"use strict";
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr[data-href]"));
  var at = -1;
  function move(to) {
    if (!rows.length) return;
    if (at >= 0) rows[at].classList.remove("cursor");
    at = Math.max(0, Math.min(rows.length - 1, to));
    rows[at].classList.add("cursor");
    rows[at].focus();
    rows[at].scrollIntoView({ block: "nearest" });
  }
  rows.forEach(function (row, i) {
    row.addEventListener("click", function (ev) { if (ev.target.tagName !== "A") location.href = row.dataset.href; });
  });
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "j" || ev.key === "ArrowDown") { ev.preventDefault(); move(at + 1); }
    else if (ev.key === "k" || ev.key === "ArrowUp") { ev.preventDefault(); move(at - 1); }
    else if ((ev.key === "Enter" || ev.key === "o") && at >= 0) { ev.preventDefault(); location.href = rows[at].dataset.href; }
    else if (ev.key === "/") { ev.preventDefault(); var f = document.querySelector("#queue-filters select"); if (f) f.focus(); }
  });
})();
