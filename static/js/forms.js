// Refusals shown where the person acted. An htmx request sent from a form, or from a group of
// action buttons (`.actions`), that the server refuses (4xx, 5xx) or that cannot reach it puts
// the server's message in that form's or group's `<p class="form-error" role="alert">` slot, and
// the rest of the page stays as it was (nothing is swapped). The message is the answer's first
// role="alert" element with text when it has one (the views' fragments mark their error so), else
// the answer's text (console/middleware.py's 503 and 507 fragments, Django's own error pages).
// The slot is emptied when the next request leaves the same form or group. Requests from
// elsewhere (polling, search-as-you-type outside a form) keep htmx's handling (base.html).
(function () {
  "use strict";
  const SCOPE = "form, .actions";
  const LONGEST = 500;  // characters of an unexpected answer (an HTML error page) worth showing

  // The slot of the form or group `source` belongs to; a form without one gets one at its end.
  function slotFor(source) {
    const scope = source instanceof Element ? source.closest(SCOPE) : null;
    if (!scope) return null;
    let slot = scope.querySelector(".form-error");
    if (!slot) {
      slot = document.createElement("p");
      slot.className = "form-error";
      slot.setAttribute("role", "alert");
      scope.append(slot);
    }
    return slot;
  }

  function show(slot, message) {
    slot.textContent = message;
    slot.hidden = !message;
  }

  function messageOf(xhr) {
    let text = xhr.responseText || "";
    if (!(xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain")) {
      const answer = new DOMParser().parseFromString(text, "text/html");
      const alerts = [...answer.querySelectorAll("[role=alert]")].filter((el) => el.textContent.trim());
      text = (alerts[0] || answer.body).textContent || "";
    }
    text = text.replace(/\s+/g, " ").trim();
    if (!text) return "The server refused this (HTTP " + xhr.status + ").";
    return text.length > LONGEST ? text.slice(0, LONGEST) + "…" : text;
  }

  document.addEventListener("htmx:beforeRequest", (event) => {
    const slot = slotFor(event.target);
    if (slot) show(slot, "");
  });

  // Fired on the swap's target; the element that sent the request is in the request's config.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status < 400) return;
    const slot = slotFor(event.detail.requestConfig && event.detail.requestConfig.elt);
    if (!slot) return;
    show(slot, messageOf(xhr));
    event.detail.shouldSwap = false;
  });

  for (const [name, message] of [
    ["htmx:sendError", "The server could not be reached: check the connection, then try again."],
    ["htmx:timeout", "The server did not answer in time: try again."],
  ]) {
    document.addEventListener(name, (event) => {
      const slot = slotFor(event.target);
      if (slot) show(slot, message);
    });
  }
})();
