/* Challenge platform (test bed): earn cf_clearance from the flow endpoint, then reload. */
(function () {
  "use strict";
  var opt = window._cf_chl_opt;
  var text = document.getElementById("challenge-body-text");
  var stage = document.getElementById("challenge-stage");
  var human = false;
  document.body.className = "";

  function say(message) { text.textContent = message; }

  function attempt() {
    fetch("{{flow}}" + opt.cRay, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ cH: opt.cH, human: human })
    }).then(function (response) {
      return response.json().then(function (data) { settle(response.status, data); });
    }).catch(function () { setTimeout(attempt, 1000); });
  }

  function settle(status, data) {
    if (status === 200) {
      stage.textContent = "";
      document.getElementById("challenge-success-text").style.display = "block";
      say("Waiting for " + opt.cZone + " to respond...");
      location.reload();
    } else if (status === 202) {
      setTimeout(attempt, data.retry_ms || 250);
    } else if (data.interactive) {
      showCheckbox();
    } else {
      say("Verification failed. Reload the page to try again.");
    }
  }

  function showCheckbox() {
    say("Verify you are human by completing the action below.");
    stage.innerHTML = '<label class="cf-checkbox"><input type="checkbox" id="cf-chl-widget-check">' +
      '<span>Verify you are human</span></label>' +
      '<input type="hidden" name="cf-turnstile-response" value="">';
    document.getElementById("cf-chl-widget-check").addEventListener("change", function () {
      human = true;
      say("Verifying...");
      attempt();
    });
  }

  say("Verifying you are human. This may take a few seconds.");
  attempt();
}());
