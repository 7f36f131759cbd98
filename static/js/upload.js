// Upload page: a real progress bar from the XHR's upload events, and error fragments swapped in.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("upload-form");
  var bar = document.getElementById("upload-progress");
  var percent = document.getElementById("upload-percent");
  if (!form) return;
  form.addEventListener("htmx:xhr:progress", function (evt) {
    if (!evt.detail.lengthComputable) return;
    var value = Math.round((evt.detail.loaded / evt.detail.total) * 100);
    bar.hidden = false;
    bar.value = value;
    percent.textContent = value + "%";
  });
  form.addEventListener("htmx:beforeRequest", function () {
    bar.hidden = false;
    bar.value = 0;
    percent.textContent = "0%";
  });
});
