// Package hostinfo reads the facts of the machine a run measures on: its
// kernel, CPU, CPU vulnerabilities and governor (Local), and what it runs
// on (Virtualization), so that a comparison can say when two runs were
// not measured alike. It depends on nothing else of volleyscope, so the
// VM test's init can use it alone.
package hostinfo
