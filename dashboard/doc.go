// Package dashboard is hopper's page in a browser: the queue at a glance.
//
// New returns an http.Handler the HTTP front mounts at /ui and /ui/. It
// serves
//
//	GET /ui            the page: html/template, rendered from a Snapshot
//	                   (the Snapshot as JSON when the client asks for
//	                   application/json and not HTML)
//	GET /ui/data.json  the Snapshot as JSON
//	GET /ui/events     Server-Sent Events: "snapshot" events (the same
//	                   JSON) when jobs change, at most twice a second, and
//	                   every few seconds; "tokens" events with the live
//	                   output of up to eight running jobs; a comment line
//	                   every 15 seconds; at most 64 streams at once
//	                   (503 beyond)
//	GET /ui/app.js, /ui/style.css  the page's script and style sheet
//
// everything embedded in the binary: no build step, no CDN. A Snapshot
// lists at most a few dozen jobs of each kind (the newest, or the most
// recently failed) and counts the rest, so the page costs the same with a
// hundred or a hundred thousand jobs queued.
//
// The handler reads the spool only through spool's API (the Catalog for
// jobs, ReadTargets for the runner's lanes, batch.Store.List, Follow and
// OutputLines for live output) and never imports the runner. It changes
// nothing itself: the page's buttons call the front's own HTTP API (DELETE
// /jobs/ID, POST /jobs/ID/retry, /hold, /release, /pause, /resume, POST
// /v1/batches/ID/cancel) with the CSRF value Config.CSRF gives. The front
// authenticates every request before it reaches the handler.
//
// Security: every answer carries a Content-Security-Policy that allows
// only the page's own script and style sheet (no inline script), denies
// framing and sets nosniff; data answers are not cached. The script puts
// data into the page only as text (textContent and attributes), never as
// HTML.
package dashboard
