// Package report is the results model: Results, the type of results.json
// (whose names are a stable contract), built once by Build from the typed
// outputs of a run's stages, read back by ReadJSON, and the maths drawn
// from it: the differences that make two runs not like for like, the
// ratios and verdicts of a comparison, the knee of a sweep. It renders
// nothing: the terminal text, the HTML page, the SVG and the trace are
// package render's, and the files of an output directory package
// outdir's.
package report
