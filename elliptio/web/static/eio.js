// ElliptIO catalogue: copy buttons, "+ field" buttons, sorting the current page.
// Served from /static so the page's CSP can be script-src 'self'. Data from metadata is
// only ever read from data-* attributes and written with textContent — never as HTML.
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  // plain http on a shared host: the async clipboard API is not available
  return new Promise(function (resolve, reject) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    if (ok) { resolve(); } else { reject(new Error("copy refused")); }
  });
}

function flash(button, text) {
  var old = button.dataset.label || button.textContent;
  button.dataset.label = old;
  button.textContent = text;
  button.classList.add("done");
  window.setTimeout(function () {
    button.textContent = old;
    button.classList.remove("done");
  }, 1500);
}

function sortBy(table, col, button) {
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var dir = button.dataset.dir === "asc" ? "desc" : "asc";
  table.querySelectorAll("button.sort").forEach(function (b) {
    delete b.dataset.dir;
    b.closest("th").removeAttribute("aria-sort");
  });
  button.dataset.dir = dir;
  button.closest("th").setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
  rows.sort(function (a, b) {
    var x = a.cells[col].dataset.value || a.cells[col].textContent;
    var y = b.cells[col].dataset.value || b.cells[col].textContent;
    var c = x.localeCompare(y, undefined, {numeric: true});
    return dir === "asc" ? c : -c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}

document.addEventListener("click", function (event) {
  var target = event.target;
  if (!(target instanceof Element)) { return; }
  var copy = target.closest("button.copy");
  if (copy) {
    event.preventDefault();
    copyText(copy.dataset.copy || "").then(
      function () { flash(copy, "copied"); },
      function () { flash(copy, "press Ctrl-C"); });
    return;
  }
  var add = target.closest("button.add");
  if (add) {
    event.preventDefault();
    var group = add.closest(".multi");
    var inputs = group.querySelectorAll("input");
    var fresh = inputs[inputs.length - 1].cloneNode(false);
    fresh.value = "";
    group.insertBefore(fresh, add);
    fresh.focus();
    return;
  }
  var sort = target.closest("button.sort");
  if (sort) {
    event.preventDefault();
    sortBy(sort.closest("table"), parseInt(sort.dataset.col, 10), sort);
  }
});

// Empty fields stay out of the URL, so a shared link shows only what was asked.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!(form instanceof HTMLFormElement) || form.id !== "search") { return; }
  form.querySelectorAll("input").forEach(function (input) {
    if ((input.type === "text" || input.type === "search" || input.type === "date" ||
         input.type === "") && input.value.trim() === "") {
      input.disabled = true;
    }
  });
  window.setTimeout(function () {
    form.querySelectorAll("input:disabled").forEach(function (i) { i.disabled = false; });
  }, 0);
});
