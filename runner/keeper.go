package runner

import (
	"context"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// keeper does the spool's upkeep beside the lanes, in goroutines of its
// own: at start it completes what a crash left in cur/ and returns the jobs
// that were running to the queue; then it keeps the queue index fed from
// new/ and deferred/ (the watcher, which also releases deferred records
// when their not_before passes, through the index), prunes done/ and
// failed/ per the retention settings, and carries the batches.
type keeper struct {
	r    *Runner
	wg   sync.WaitGroup
	stop context.CancelFunc
}

// startKeeper recovers the spool and starts the keeper's goroutines; stop
// ends them and waits. The caller holds the runner lock.
func (r *Runner) startKeeper() (*keeper, error) {
	s := r.spool
	// A crash may have come before a final record's event was recorded:
	// emit it again (webhooks are at-least-once), before the record moves
	// on, so a crash during recovery loses none either.
	rec, err := s.RecoverAnd(func(f *spool.Record) {
		j := &job{r: r, cfg: r.cfg.Load(), rec: f, prev: spool.StateWorking, log: r.log.With("job", f.ID)}
		j.announce()
	})
	if err != nil {
		r.log.Error("recovery was incomplete", "err", err)
	}
	if rec != nil && (len(rec.Finished) > 0 || len(rec.Rerun) > 0 || rec.TmpRemoved > 0) {
		r.log.Info("recovered the spool", "finished", len(rec.Finished), "rerun", len(rec.Rerun), "tmp_removed", rec.TmpRemoved)
	}
	w, err := s.NewWatcher(r.queue, spool.WatchOptions{
		Settle: r.cfg.Load().Settle,
		Logger: r.log,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &keeper{r: r}
	k.stop = func() {
		cancel()
		k.wg.Wait()
	}
	k.wg.Go(func() { _ = w.Run(ctx) })
	k.wg.Go(func() { k.retain(ctx, r.cfg.Load().RetentionCheck) })
	if err := r.batches.open(); err != nil {
		r.log.Error("cannot take up every batch", "err", err)
	}
	k.wg.Go(func() { r.batches.run(ctx) })

	// Jobs that were running at a crash go back in line, keeping their
	// place (and the attempt they made), unless they must end now.
	if rec != nil {
		for _, c := range rec.Rerun {
			j := r.newJob(nil, c)
			if j.prepare() {
				if err := s.Requeue(j.rec); err != nil {
					r.log.Error("cannot return the job to the queue", "job", j.rec.ID, "err", err)
				}
			}
		}
	}
	return k, nil
}

// retain prunes done/ and failed/ per the retention settings, at start and
// then every RetentionCheck, until ctx ends.
func (k *keeper) retain(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		r := k.r
		keep := r.retention.Load()
		for _, p := range []struct {
			keep  time.Duration
			state spool.State
		}{{keep[0], spool.StateDone}, {keep[1], spool.StateFailed}} {
			if p.keep <= 0 {
				continue
			}
			n, err := r.batches.st.Prune(time.Now().Add(-p.keep), p.state)
			if err != nil {
				r.log.Error("retention", "state", p.state, "err", err)
			} else if n.Records > 0 || n.Batches > 0 {
				r.log.Info("retention pruned records", "state", p.state, "removed", n.Records, "batches", n.Batches, "older_than", p.keep)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
