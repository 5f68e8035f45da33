/* CAPTCHA widget loader (test bed): one checkbox iframe from the widget host per .h-captcha element. */
(function () {
  "use strict";
  var origin = "{{origin}}";
  var boxes = document.querySelectorAll(".h-captcha");
  for (var i = 0; i < boxes.length; i++) {
    var box = boxes[i];
    var frame = document.createElement("iframe");
    frame.src = origin + "/captcha/v1/static/hcaptcha.html#frame=checkbox&sitekey=" +
      encodeURIComponent(box.getAttribute("data-sitekey") || "");
    frame.title = "Widget containing checkbox for hCaptcha security challenge";
    frame.width = "303";
    frame.height = "78";
    frame.style.border = "0";
    box.appendChild(frame);
    var response = document.createElement("textarea");
    response.name = "h-captcha-response";
    response.style.display = "none";
    box.appendChild(response);
  }
}());
