// Keyboard shortcuts for the common path. Pages work without it.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target && e.target.tagName;
    return t === "INPUT" || t === "SELECT" || t === "TEXTAREA";
  }
  function go(id) { var a = document.getElementById(id); if (a) { location.href = a.href; } }
  function submit(id) { var b = document.getElementById(id); if (b) { b.click(); } }
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.row"));
  var at = rows.length ? 0 : -1;
  function mark() {
    rows.forEach(function (r, i) { r.classList.toggle("sel", i === at); });
    if (at >= 0) { rows[at].scrollIntoView({ block: "nearest" }); }
  }
  mark();
  document.addEventListener("keydown", function (e) {
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) { return; }
    var k = e.key;
    if (rows.length) {
      if (k === "j" && at < rows.length - 1) { at++; mark(); }
      else if (k === "k" && at > 0) { at--; mark(); }
      else if (k === "x" && at >= 0) { var c = rows[at].querySelector("input[type=checkbox]"); c.checked = !c.checked; }
      else if ((k === "o" || k === "Enter") && at >= 0) { location.href = rows[at].querySelector("a.open").href; }
      else if (k === "A") { submit("bulk-approve"); }
      else if (k === "R") { submit("bulk-reject"); }
      else { return; }
    } else {
      if (k === "a") { submit("approve"); }
      else if (k === "r") { submit("reject"); }
      else if (k === "c") { var f = document.querySelector("#correct-form input[name^='set.']"); if (f) { f.focus(); } }
      else if (k === "j") { go("next"); }
      else if (k === "k") { go("prev"); }
      else if (k === "u") { go("back"); }
      else { return; }
    }
    e.preventDefault();
  });
})();
