// Package agent is the control plane between a controlling `volleyscope
// run --agent HOST:PORT` and a `volleyscope agent` on the server's
// machine: the agent runs the probe on its server's processes there and
// streams the kernel events to the controller, which joins them with its
// own.
//
// The transport is gRPC. Its service is declared by hand (a
// grpc.ServiceDesc and its handlers, in service.go) with a codec of our
// own registered for the content-subtype "vsagent", rather than generated
// from a .proto file: the build has no protoc, and the messages are few
// and plain — JSON for the control messages, and for the event batches
// the probe's own record layout (probe.Encode), which is already a
// stable, versioned binary format (the --record files use it). gRPC still
// does everything a hand-rolled protocol would get wrong: the framing,
// HTTP/2 streams and their flow control, deadlines and cancellation,
// keepalive, TLS and per-RPC credentials.
//
// The service (ServiceName):
//
//	Hello   unary   versions both ways, the agent's host and servers
//	Ping    unary   the agent's clock, for the controller's clock estimate
//	Events  bidi    start request, then marks and stop from the controller;
//	                started, batches, mark replies and the final account
//	                from the agent
//	Load    bidi    a load request (loadgen.Options as data, a slot
//	                origin), then stop; began, slots of round trips
//	                (loadgen.Slot) and the final account from the agent
//	                (load.go; RunLoad merges several agents' loads)
//
// Load is served only by an agent given --load-to (WithLoad), and only to
// the addresses that names; a Host without it refuses every Load.
//
// Security: every RPC carries the token and the protocol and volleyscope
// versions in its metadata (callCreds), checked by the server's
// interceptors before any handler runs and before its request is even
// decoded: the token compared in constant time, a version mismatch
// refused with both versions named. Optionally mutual TLS
// (Credentials.TLS), where the agent requires and verifies the client's
// certificate. The agent starts only the servers on its own command line;
// a start request names one of them. A load request is data, never a
// command: the agent connects only to its address, which its own
// --load-to must allow.
//
// Liveness: the agent sends a batch at least every flushEvery, empty if
// need be, so a controller that hears nothing for silentFor calls the
// agent lost (gRPC's client keepalive may not ping more often than every
// 10 s); the agent pings an idle controller's connection (keepalive) and
// ends the session of one that does not answer.
package agent
