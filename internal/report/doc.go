// Package report turns a run's measurements into what people and programs
// read: the results.json summary (whose names are a stable contract), a
// terminal summary, requests.csv with one row per round trip, and an
// HdrHistogram log. Writers take an io.Writer and never print on their own.
package report
