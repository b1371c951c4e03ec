// Model pages: activate / roll back / cancel buttons, and the rollout's progress while it runs.
"use strict";
(function () {
  document.addEventListener("click", async function (event) {
    var button = event.target.closest("[data-model-action]");
    if (!button) return;
    button.disabled = true;
    try {
      var r = await window.sliplink.api("POST", button.getAttribute("data-model-action"));
      window.sliplink.toast("rollout of " + r.version + ": " + r.state, "ok");
      setTimeout(function () { window.location.reload(); }, 800);
    } catch (err) {
      window.sliplink.toast(err.message, "error");
      button.disabled = false;
    }
  });
  var box = document.getElementById("rollout");
  if (!box || ["running", "finishing"].indexOf(box.getAttribute("data-state")) < 0) return;
  var timer = setInterval(async function () {
    try {
      var s = await window.sliplink.api("GET", "/models/rollout");
      var r = s.rollout;
      if (!r) return;
      document.getElementById("rollout-state").textContent = r.state;
      document.getElementById("rollout-done").textContent = r.done;
      document.getElementById("rollout-total").textContent = r.total;
      document.getElementById("rollout-percent").textContent = r.percent;
      document.getElementById("rollout-bar").value = r.percent;
      if (["running", "finishing"].indexOf(r.state) < 0) {
        clearInterval(timer);
        window.location.reload();
      }
    } catch (err) { clearInterval(timer); }
  }, 2000);
})();
