// Package torture holds hopper's proof tests: they build the hopper binary,
// run it as a subprocess against ollama/ollamatest, and check the promises
// DESIGN makes about what ends where, whatever happens to the process.
//
//   - TestTorture submits jobs through every door at once (hopper submit,
//     POST /jobs, the Ollama drop-in on two fronts, rsync-, maildir-, cp- and
//     cron-style file drops) while it SIGKILLs hopper serve and stops a
//     fake target at random moments, then checks that every job ended
//     exactly once where it should, that each job's webhook got its final
//     event once, that the targets ran no job more often than the kills
//     and outages explain, and that no target had more requests in flight
//     than its slots or two models at once. It runs against one target
//     (TestTorture/targets=1) and against three of two slots each
//     (TestTorture/targets=3). A short version runs with go test; -long
//     (or HOPPER_TORTURE=long) runs 1,000 jobs and 60 kills.
//   - TestBadInputFiles and TestBadInputHTTP run the corpus in
//     testdata/badinput (and the cases that cannot be committed: FIFOs,
//     symlinks, a 100 MB file, ...) against file drops into a running hopper
//     serve and against its HTTP front, with canaries outside the spool.
//   - TestCrashWhileSettingAsideKeepsARecord and
//     TestCrashAroundFinishDeliversTheFinalEventOnce kill hopper at one
//     precise moment each.
//   - BenchmarkModelSwap and BenchmarkScale are the measurements in
//     docs/BENCHMARKS.md; each reports ratios to a baseline measured in the
//     same run.
//
// The tests are skipped with -short, as the end-to-end tests in cmd/hopper
// are. They build the binary with -race (HOPPER_TORTURE_BIN names a binary
// to use instead); the benchmarks build it without. The package has no
// non-test code but this comment.
package torture
