// Package stats holds the statistics behind volleyscope's numbers: warm-up
// truncation (MSER-5); a streaming Batcher that turns a run's latencies
// into confidence intervals for the mean (batch means) and for quantiles
// (sectioning), valid for autocorrelated latencies, in memory that does
// not grow with the run, together with Lancet-style validity checks
// (stationarity, independence of the batches); the same intervals over an
// in-memory series; paired and unpaired ratio comparisons; and
// HdrHistogram summaries. It is pure computation; writers take an
// io.Writer.
package stats
