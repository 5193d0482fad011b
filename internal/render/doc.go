// Package render draws the results model (package report) for people and
// tools, one file per format: the terminal text of a run, a sweep, a
// verdict and a comparison (text*.go), the report page (html.go), the
// sweep's chart (svg.go), the Chrome trace of sampled round trips
// (trace.go) and plain JSON (json.go). Every writer takes an io.Writer
// and never prints on its own; none decides where a file goes (package
// outdir does).
package render
