// Upload: several slips, each matched to a waiting bet or a new one; per-file progress/status.
"use strict";
(function () {
  var queue = document.getElementById("queue");
  var input = document.getElementById("file-input");
  var drop = document.getElementById("drop");
  var button = document.getElementById("upload-all");
  var summary = document.getElementById("summary");
  var cardTpl = document.getElementById("file-card");
  var betOptions = document.getElementById("bet-options").innerHTML;
  var shopOptions = document.getElementById("shop-options").innerHTML;
  var items = [];
  var MAX = 15 * 1024 * 1024;

  function human(n) { return n > 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.ceil(n / 1024) + " kB"; }

  function add(files) {
    Array.prototype.forEach.call(files, function (file) {
      var node = cardTpl.content.firstElementChild.cloneNode(true);
      var item = { file: file, node: node, done: false };
      node.querySelector(".name").textContent = file.name;
      node.querySelector(".size").textContent = human(file.size);
      var img = node.querySelector("img");
      if (/^image\/(png|jpeg)$/.test(file.type)) img.src = URL.createObjectURL(file); else img.remove();
      var select = node.querySelector(".bet-choice");
      select.innerHTML = betOptions;
      var shop = node.querySelector(".f-shop");
      if (shop) shop.innerHTML = shopOptions;
      var form = node.querySelector(".new-bet");
      select.addEventListener("change", function () { form.hidden = select.value !== "new"; });
      node.querySelector(".remove").addEventListener("click", function () {
        items = items.filter(function (i) { return i !== item; });
        node.remove();
        refresh();
      });
      if (!/\.(png|jpe?g|tiff?)$/i.test(file.name)) setState(item, "error", "not a JPEG, PNG or TIFF file");
      else if (file.size > MAX) setState(item, "error", "file is over the 15 MB limit");
      items.push(item);
      queue.appendChild(node);
    });
    refresh();
  }

  function refresh() {
    var todo = items.filter(function (i) { return !i.done && !i.invalid; }).length;
    button.disabled = todo === 0;
    summary.textContent = items.length ? todo + " to upload" : "";
  }

  function setState(item, kind, text) {
    var state = item.node.querySelector(".state");
    state.textContent = text;
    state.className = "state state-" + kind;
    item.node.dataset.state = kind;
    if (kind === "error" && !item.started) item.invalid = true;
  }

  function betPayload(node) {
    var v = function (sel) { var el = node.querySelector(sel); return el ? el.value.trim() : ""; };
    var stake = parseFloat(v(".f-stake"));
    if (!(stake > 0)) throw new Error("unit stake: enter the stake");
    if (!v(".f-selection")) throw new Error("selection: enter the selection");
    if (!v(".f-sport")) throw new Error("sport: enter the sport");
    var leg = { sport: v(".f-sport"), event: v(".f-event"), selection: v(".f-selection"), market: "Win" };
    if (v(".f-odds")) leg.odds = parseFloat(v(".f-odds"));
    var bet = { stake: stake, bet_type: v(".f-type") || "single", each_way: node.querySelector(".f-ew").checked, legs: [leg] };
    if (v(".f-shop")) bet.shop_id = parseInt(v(".f-shop"), 10);
    return bet;
  }

  function send(item, betId) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/bets/" + betId + "/slip");
      xhr.setRequestHeader("X-CSRF-Token", sliplink.csrf());
      xhr.setRequestHeader("Accept", "application/json");
      var bar = item.node.querySelector(".bar");
      xhr.upload.onprogress = function (ev) {
        if (ev.lengthComputable) {
          var pct = Math.round(100 * ev.loaded / ev.total);
          bar.style.width = pct + "%";
          setState(item, "busy", "uploading " + pct + "%");
        }
      };
      xhr.onload = function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) { bar.style.width = "100%"; resolve(body); }
        else reject(new Error(typeof body.detail === "string" ? body.detail : xhr.status + " " + xhr.statusText));
      };
      xhr.onerror = function () { reject(new Error("network error: the upload did not reach the server")); };
      var form = new FormData();
      form.append("slip", item.file, item.file.name);
      xhr.send(form);
    });
  }

  async function watch(item, slip) {
    var deadline = Date.now() + 180000;
    var status = slip.status;
    while (status === "pending" || status === "processing") {
      setState(item, "busy", "slip " + slip.id + " stored · " + status + "…");
      if (Date.now() > deadline) { setState(item, "warn", "slip " + slip.id + " stored; still " + status + " (it will be processed later)"); return; }
      await new Promise(function (r) { setTimeout(r, 1000); });
      slip = await sliplink.api("GET", "/slips/" + slip.id);
      status = slip.status;
    }
    if (status === "ready") {
      var extra = slip.cluster_id ? " · handwriting cluster " + slip.cluster_id : "";
      setState(item, "ok", "slip " + slip.id + " processed" + (slip.duplicate ? " (already uploaded)" : "") + extra);
    } else {
      setState(item, "error", "slip " + slip.id + " stored, but could not be processed: " + (slip.error || status));
    }
  }

  async function uploadOne(item) {
    var node = item.node;
    item.started = true;
    node.querySelectorAll("select, input, .remove").forEach(function (el) { el.disabled = true; });
    try {
      var choice = node.querySelector(".bet-choice").value;
      var betId = choice;
      if (choice === "new") {
        var payload = betPayload(node);
        var ref = node.querySelector(".f-customer").value.trim();
        if (ref) {
          var found = await sliplink.api("GET", "/ui/lookup/customer?ref=" + encodeURIComponent(ref));
          payload.customer_id = found.id;
        }
        setState(item, "busy", "recording the bet…");
        var bet = await sliplink.api("POST", "/bets", payload);
        betId = bet.id;
        // a retry after a failed upload must reuse this bet, not record another
        var select = node.querySelector(".bet-choice");
        var opt = document.createElement("option");
        opt.value = String(bet.id);
        opt.textContent = "Bet " + bet.id + " (just recorded)";
        select.appendChild(opt);
        select.value = String(bet.id);
        node.querySelector(".new-bet").hidden = true;
      }
      node.dataset.betId = betId;
      var slip = await send(item, betId);
      node.dataset.slipId = slip.id;
      item.done = true;
      await watch(item, slip);
    } catch (e) {
      setState(item, "error", e.message);
      node.querySelectorAll("select, input, .remove").forEach(function (el) { el.disabled = false; });
      item.started = false;
    }
  }

  button.addEventListener("click", async function () {
    button.disabled = true;
    var todo = items.filter(function (i) { return !i.done && !i.invalid; });
    // two at a time: fast on a batch, gentle on a shop's uplink
    var next = 0;
    async function lane() { while (next < todo.length) { await uploadOne(todo[next++]); } }
    await Promise.all([lane(), lane()]);
    var ok = items.filter(function (i) { return i.node.dataset.state === "ok"; }).length;
    summary.textContent = ok + " of " + items.length + " processed";
    refresh();
  });

  input.addEventListener("change", function () { add(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (t) {
    drop.addEventListener(t, function (ev) { ev.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    drop.addEventListener(t, function (ev) { ev.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (ev) { if (ev.dataTransfer) add(ev.dataTransfer.files); });
  drop.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); input.click(); } });
})();
