// hookrelay console: the few lines the pages need beyond htmx. No inline script anywhere
// (the Content-Security-Policy forbids it), so behaviour is attached here.
"use strict";

document.addEventListener("change", (event) => {
  const all = event.target.closest("input.select-all");
  if (!all) return;
  const form = all.closest("form");
  for (const box of form.querySelectorAll(`input[type=checkbox][name="${all.dataset.for}"]`)) {
    box.checked = all.checked;
  }
});
