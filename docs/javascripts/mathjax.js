// MathJax for pymdownx.arithmatex (generic mode): \( ... \) inline, \[ ... \] display. The component is the
// vendored tex-chtml-full.js (every TeX extension built in), so nothing is loaded from the internet.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
  chtml: { fontURL: new URL("mathjax/output/chtml/fonts/woff-v2", document.currentScript.src).href },
};
document$.subscribe(() => { MathJax.typesetPromise && MathJax.typesetPromise(); });
