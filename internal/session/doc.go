// Package session wires one measurement together: it starts the server (a
// built-in reference server in a process of its own, any binary taking
// -p PORT, or none for a running server), runs the load, and, when asked,
// the kernel probe and the breakdown join, and returns the report. The
// command line only parses flags and prints; everything it runs is here.
package session
