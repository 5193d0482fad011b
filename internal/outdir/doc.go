// Package outdir is a run's output directory (--out) and the files in it:
// requests.csv and latency.hlog, written while the run streams, then
// results.json, report.html and trace.json, each written under a
// temporary name and renamed into place, so that a reader never sees a
// part. PrepareDir and PrepareFile check, before anything is measured,
// that what is measured will have somewhere to go.
package outdir
