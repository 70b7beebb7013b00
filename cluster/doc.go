// Package cluster joins hopper hosts into one queue on NATS JetStream
// (DESIGN §11): it embeds a NATS server with JetStream in hopper (routes
// between the hosts, the store under the spool's state directory, no
// client port unless asked) or connects to an existing NATS cluster, and
// keeps the shared parts there: a replicated work-queue stream of jobs
// (one subject per priority and load key; each handing-on of a job has
// its own message id, a.<origin>.<job ID base64>.r<round>.<nonce>, so a
// publish retried after a timeout is dropped as a duplicate while a retry
// of the job is not) and a replicated key-value bucket of answers under
// the same keys.
//
// The contract of this package: Start gives a Node connected to JetStream;
// Provision creates (or adopts) the stream and bucket with the configured
// replicas; Publish puts a job in line exactly once per message id; Depth
// and Status say what is queued by key and which nodes are up, and a node
// without quorum says so instead of hanging. Relay is the origin host's
// side of a job (a runner Target that hands each attempt to the stream and
// relays its progress and answer back); Execute is every host's side (its
// targets take jobs from the stream by priority and load key, as the
// runner's lanes do on one host).
package cluster
