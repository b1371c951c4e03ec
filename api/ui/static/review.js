// Review pages (cluster, alert): handwriting boxes over each slip, crops of those regions,
// link decisions (POST /links) and alert actions (POST /alerts/{id}/...), keyboard-friendly.
"use strict";
(function () {
  var toggle = document.getElementById("show-boxes");

  function loaded(img) {
    return new Promise(function (resolve) {
      if (img.complete && img.naturalWidth) resolve(); else img.addEventListener("load", resolve, { once: true });
    });
  }

  function drawBoxes(card) {
    var img = card.querySelector(".slip-view img");
    var view = card.querySelector(".slip-view");
    var crops = card.querySelector(".crops");
    var id = card.dataset.slipId;
    Promise.all([sliplink.api("GET", "/ui/slips/" + id + "/boxes"), loaded(img)]).then(function (res) {
      var data = res[0];
      var W = img.naturalWidth || data.width, H = img.naturalHeight || data.height;
      card.dataset.boxes = String(data.boxes.length);
      data.boxes.forEach(function (b) {
        var r0 = b[0], c0 = b[1], r1 = b[2], c1 = b[3];
        var el = document.createElement("div");
        el.className = "box";
        el.style.left = (100 * c0 / W) + "%";
        el.style.top = (100 * r0 / H) + "%";
        el.style.width = (100 * (c1 - c0) / W) + "%";
        el.style.height = (100 * (r1 - r0) / H) + "%";
        view.appendChild(el);
      });
      // crops from the stored image, largest regions first, scaled to a common height
      var boxes = data.boxes.slice().sort(function (a, b) {
        return (b[2] - b[0]) * (b[3] - b[1]) - (a[2] - a[0]) * (a[3] - a[1]);
      }).slice(0, 6);
      boxes.forEach(function (b) {
        var h = b[2] - b[0], w = b[3] - b[1];
        if (h < 4 || w < 4) return;
        var scale = Math.min(1, 48 / h);
        var canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(w * scale));
        canvas.height = Math.max(1, Math.round(h * scale));
        canvas.getContext("2d").drawImage(img, b[1], b[0], w, h, 0, 0, canvas.width, canvas.height);
        crops.appendChild(canvas);
      });
      card.classList.add("boxes-ready");
    }).catch(function (e) { card.dataset.boxes = "error"; });
  }
  document.querySelectorAll(".slip-card").forEach(drawBoxes);
  if (toggle) {
    toggle.addEventListener("change", function () {
      document.querySelectorAll(".slip-view .box").forEach(function (b) { b.hidden = !toggle.checked; });
    });
  }

  // ---- link decisions: the picked slips, pairwise against the first picked
  function picked() {
    return Array.prototype.map.call(document.querySelectorAll(".pick:checked"), function (el) { return parseInt(el.value, 10); });
  }
  document.querySelectorAll(".pick").forEach(function (el) {
    el.addEventListener("change", function () {
      el.closest(".slip-card").classList.toggle("selected", el.checked);
      compareLetters();
    });
    el.closest(".slip-card").classList.toggle("selected", el.checked);
  });

  // ---- letters compared: the two picked slips side by side, glyph by glyph
  var letters = document.getElementById("letters");
  function glyphCanvas(img, b, height) {
    var h = b[2] - b[0], w = b[3] - b[1], pad = 2;
    var scale = height / (h + 2 * pad);
    var canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round((w + 2 * pad) * scale));
    canvas.height = Math.max(1, Math.round((h + 2 * pad) * scale));
    canvas.getContext("2d").drawImage(img, b[1] - pad, b[0] - pad, w + 2 * pad, h + 2 * pad, 0, 0, canvas.width, canvas.height);
    return canvas;
  }
  var compared = "";
  function compareLetters() {
    if (!letters) return;
    var ids = picked();
    if (ids.length !== 2) { letters.hidden = true; compared = ""; return; }
    var key = ids.join("-");
    if (key === compared) { letters.hidden = false; return; }
    compared = key;
    var imgs = ids.map(function (id) { return document.querySelector('.slip-card[data-slip-id="' + id + '"] .slip-view img'); });
    Promise.all([sliplink.api("GET", "/ui/slips/" + ids[0] + "/letters?other=" + ids[1])].concat(imgs.map(loaded))).then(function (res) {
      if (compared !== key) return;  // the picks changed meanwhile
      var data = res[0], box = document.getElementById("letter-pairs");
      box.innerHTML = "";
      data.pairs.forEach(function (p) {
        var el = document.createElement("div");
        el.className = "letter-pair";
        var row = document.createElement("div");
        row.className = "glyphs";
        row.appendChild(glyphCanvas(imgs[0], p.slip, 44));
        row.appendChild(glyphCanvas(imgs[1], p.other, 44));
        var cap = document.createElement("small");
        cap.textContent = p.similarity.toFixed(2);
        el.appendChild(row);
        el.appendChild(cap);
        box.appendChild(el);
      });
      document.getElementById("letters-title").textContent = data.score === null
        ? "(slip " + ids[0] + " or " + ids[1] + " has no letters to compare)"
        : "slip " + ids[0] + " and slip " + ids[1] + ": letter match " + data.score.toFixed(2) +
          " over " + data.glyphs[0] + " and " + data.glyphs[1] + " letters" +
          (data.different_writers_below === null ? "" : " (higher than " +
            Math.floor(100 * data.different_writers_below) + " % of different writers' pairs with as many letters)");
      letters.dataset.pairs = String(data.pairs.length);
      letters.hidden = false;
    }).catch(function (e) { letters.dataset.pairs = "error"; });
  }
  compareLetters();
  async function decide(decision) {
    var ids = picked();
    if (ids.length < 2) { sliplink.toast("Pick at least two slips to " + (decision === "confirmed" ? "confirm" : "reject") + " a link", "error"); return; }
    var note = (document.getElementById("link-note") || {}).value || "";
    try {
      for (var i = 1; i < ids.length; i++) {
        await sliplink.api("POST", "/links", { slip_a: ids[0], slip_b: ids[i], decision: decision, note: note });
      }
      sliplink.toast("Link " + decision + " for " + (ids.length - 1) + " pair(s)", "");
      setTimeout(function () { location.reload(); }, 700);
    } catch (e) { sliplink.toast(e.message, "error"); }
  }
  var confirmBtn = document.getElementById("confirm-link");
  var rejectBtn = document.getElementById("reject-link");
  if (confirmBtn) confirmBtn.addEventListener("click", function () { decide("confirmed"); });
  if (rejectBtn) rejectBtn.addEventListener("click", function () { decide("rejected"); });

  // ---- alert actions
  var panel = document.getElementById("alert-actions");
  async function act(action, body) {
    var id = panel.dataset.alertId;
    try {
      await sliplink.api("POST", "/alerts/" + id + "/" + action, body);
      sliplink.toast("Alert " + id + ": " + action + " done", "");
      setTimeout(function () { location.reload(); }, 600);
    } catch (e) { sliplink.toast(e.message, "error"); }
  }
  if (panel) {
    panel.querySelectorAll("[data-action]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var action = btn.dataset.action;
        var note = document.getElementById("alert-note").value.trim();
        if (action === "assign") {
          var who = document.getElementById("assignee").value.trim();
          if (!who) { sliplink.toast("assignee: enter a name", "error"); return; }
          act("assign", { assignee: who });
        } else if (action === "notes") {
          if (!note) { sliplink.toast("note: write the note first", "error"); return; }
          act("notes", { text: note });
        } else if (action === "escalate") {
          act("escalate", { note: note || null });
        } else if (btn.dataset.status === "closed") {
          act("status", { status: "closed", outcome: document.getElementById("outcome").value, note: note || null });
        } else {
          act("status", { status: btn.dataset.status, note: note || null });
        }
      });
    });
  }

  // ---- keyboard: c confirm, x reject, a assign, e escalate, r resolve, n note, arrows pick slips
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var map = { c: "confirm-link", x: "reject-link", a: "do-assign", e: "do-escalate", r: "do-resolve", n: "alert-note" };
    var target = map[ev.key];
    if (!target) return;
    var el = document.getElementById(target);
    if (!el) return;
    ev.preventDefault();
    if (el.tagName.toLowerCase() === "button") el.click(); else el.focus();
  });
})();
