// Package stats holds the statistics behind volleyscope's numbers: warm-up
// truncation (MSER-5), batch-means confidence intervals for the mean and for
// quantiles (latencies are autocorrelated, so an iid interval would be far
// too narrow), paired and unpaired ratio comparisons, and HdrHistogram
// summaries. It is pure computation; writers take an io.Writer.
package stats
