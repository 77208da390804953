// Registry Hub dashboard: the little script the pages need (no library, no inline script).
// - #live-events refreshes its rows every 2 s from its data-live URL (paused while hidden);
// - forms with data-confirm ask first; a POST form's button is disabled once sent.
"use strict";

(function () {
  const POLL_MS = 2000;

  function live(table) {
    const body = table.tBodies[0];
    const status = document.getElementById("live-status");
    let busy = false;
    async function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const response = await fetch(table.dataset.live, {
          credentials: "same-origin", headers: { Accept: "text/html" }, cache: "no-store",
        });
        if (response.status === 401) {
          if (status) status.textContent = "Signed out: reload the page to sign in again.";
          return;
        }
        if (!response.ok) return;
        const html = await response.text();
        const seen = new Set(Array.from(body.rows, (row) => row.dataset.eventId));
        if (html.trim() !== body.innerHTML.trim()) {
          body.innerHTML = html;
          for (const row of body.rows) {
            if (row.dataset.eventId && !seen.has(row.dataset.eventId)) row.classList.add("new");
          }
        }
      } catch (error) {
        if (status) status.textContent = "Cannot reach the hub; retrying.";
      } finally {
        busy = false;
      }
    }
    setInterval(refresh, POLL_MS);
  }

  function forms() {
    for (const form of document.querySelectorAll("form")) {
      form.addEventListener("submit", (event) => {
        if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
          event.preventDefault();
          return;
        }
        if (form.method.toLowerCase() === "post") {
          for (const button of form.querySelectorAll("button[type=submit]")) {
            button.disabled = true;
          }
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("live-events");
    if (table && table.dataset.live) live(table);
    forms();
  });
})();
