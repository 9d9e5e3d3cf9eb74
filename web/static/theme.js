// Applies the remembered theme before the first paint (no flash of the wrong colours).
(function () {
  var theme = null;
  try { theme = localStorage.getItem("enclave.theme"); } catch (e) {}
  var dark = theme === "dark" || (theme !== "light" && window.matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
})();
