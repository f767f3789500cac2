// MathJax 3 configuration, read by assets/mathjax/tex-svg-full.js (vendored: maths renders
// offline). pymdownx.arithmatex (generic mode) writes \( \) and \[ \] inside elements of class
// "arithmatex"; only those are typeset, so code blocks are left alone.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
