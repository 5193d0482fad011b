// Package serverproc owns the life of a server process that volleyscope
// starts, and finds the process behind a server it did not start.
//
// The life of a started server, in order:
//
//  1. Start picks a free port (unless one is given) and runs the command
//     with the port in place of "{port}", or with "-p PORT" appended, or,
//     for a command that listens on a fixed port of its own, as it is once
//     nothing answers on that port. It runs in a process group of its own,
//     so that a Ctrl-C aimed at volleyscope does not reach the server
//     before it is stopped in order.
//  2. The child is forked from a goroutine locked to an OS thread of its
//     own. That thread is first pinned to the server's CPUs, so the
//     server and every thread it creates inherit them from birth. The
//     child carries PR_SET_PDEATHSIG=SIGKILL, which the kernel sends when
//     the thread that forked it ends, so the same goroutine then waits for
//     the child on the same thread: the thread lives exactly as long as the
//     server, and when volleyscope dies, even by SIGKILL, so does the
//     server.
//  3. Start returns once the port accepts a connection. A server that exits
//     first, or does not listen within ReadyWait, is an error carrying its
//     exit status and the tail of its output.
//  4. While the load runs, Exited says without blocking whether the server
//     has ended and how.
//  5. Stop ends it the protocol's way first (the ping-pong exit message,
//     which an echo server simply returns; skipped with NoExitMessage, for
//     servers of other protocols), then with SIGTERM, then with SIGKILL to
//     its process group, each after a grace period.
package serverproc
