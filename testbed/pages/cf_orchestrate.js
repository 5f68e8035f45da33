/* Challenge platform (test bed), loaded from the vendor host: it runs the challenge in an iframe of
   its own host, takes the solved token the iframe posts back, redeems it at the site for
   cf_clearance, then reloads. */
(function () {
  "use strict";
  var opt = window._cf_chl_opt;
  var platform = "{{origin}}";
  var text = document.getElementById("challenge-body-text");
  var stage = document.getElementById("challenge-stage");
  document.body.className = "";

  function say(message) { text.textContent = message; }

  window.addEventListener("message", function (event) {
    if (event.origin !== platform || !event.data || event.data.source !== "cf-chl") return;
    fetch("{{redeem}}" + opt.cRay, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: event.data.token })
    }).then(function (response) {
      if (response.status !== 200) { say("Verification failed. Reload the page to try again."); return; }
      stage.textContent = "";
      document.getElementById("challenge-success-text").style.display = "block";
      say("Waiting for " + opt.cZone + " to respond...");
      location.reload();
    });
  });

  var frame = document.createElement("iframe");
  frame.src = platform + "{{frame}}" + opt.cRay + "/#cH=" + encodeURIComponent(opt.cH) +
    "&zone=" + encodeURIComponent(opt.cZone);
  frame.title = "Widget containing a Cloudflare security challenge";
  frame.width = "300";
  frame.height = "65";
  frame.style.border = "0";
  stage.appendChild(frame);
  say("Verifying you are human. This may take a few seconds.");
}());
