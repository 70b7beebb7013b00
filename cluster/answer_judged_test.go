package cluster_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/cluster"
	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// reviewLabel is a function whose answers must be one of three labels; the
// fake target below never gives one, so every attempt's answer is invalid.
const reviewLabel = `model: tiny
system: 'Classify the message. Answer {"label": "..."}.'
prompt: "{{.text}}"
vars:
  text: {required: true}
format:
  type: object
  properties:
    label: {type: string, enum: [bug, feature, question]}
  required: [label]
max_attempts: 2
`

// TestInvalidAnswerIsRunAgain: a function job whose answer does not
// match its schema is tried again (max_attempts: 2) and then fails, as on
// one host: the target must see two requests. On the cluster, the second
// attempt's Relay finds the first attempt's answer in the bucket (earlier:
// Error == nil) and hands it back without running anything, with Lost -1,
// so rec.Attempts never grows and the job loops in deferred/ forever.
func TestInvalidAnswerIsRunAgain(t *testing.T) {
	n := start(t, cluster.Config{Name: "solo", Node: "only"}, t.TempDir())
	provision(t, n)
	fake := ollamatest.NewServer(t, ollamatest.WithModels("tiny"), ollamatest.WithParallel(2),
		ollamatest.WithReply(func(ollamatest.Request) string { return `{"label":"nope"}` }))
	sp, err := spool.Init(filepath.Join(t.TempDir(), "spool"), spool.Options{Fsync: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	fdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(fdir, "label.yaml"), []byte(reviewLabel), 0o640); err != nil {
		t.Fatal(err)
	}
	reg, err := functions.NewRegistry(nil, fdir, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client, err := ollama.New(fake.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := runner.New(runner.Config{
		Spool:      sp,
		Targets:    []runner.TargetConfig{{Name: "cluster", Target: n.Relay(), Parallel: 8}},
		Functions:  reg,
		Settle:     20 * time.Millisecond,
		RetryBase:  10 * time.Millisecond,
		RetryMax:   50 * time.Millisecond,
		OutageBase: 10 * time.Millisecond,
		OutageMax:  200 * time.Millisecond,
		Logger:     logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, "runner", patience, r.Run)
	runtest.Start(t, "executor", patience, func(ctx context.Context) error {
		return n.Execute(ctx, cluster.ExecConfig{
			Targets: []runner.TargetConfig{{Name: "gpu", URL: fake.URL, Target: client, Parallel: 2}},
			AckWait: 2 * time.Second,
			Logger:  logger,
		})
	})
	if _, err := sp.Submit([]byte(`{"function":"label","vars":{"text":"hello"}}`), spool.SubmitOptions{ID: "fn1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec, err := sp.Get("fn1")
		if err == nil && rec.State.Terminal() {
			if rec.State != spool.StateFailed || rec.Attempts != 2 {
				t.Errorf("ended %s after %d attempts, want failed after 2", rec.State, rec.Attempts)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never ended: state %v, attempts %v, err %v; the target served %d requests (want 2)",
				stateOf(rec), attemptsOf(rec), err, fake.RequestsTo("/api/chat"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := fake.RequestsTo("/api/chat"); got != 2 {
		t.Errorf("the target served %d requests, want 2 (one per attempt)", got)
	}
}

func stateOf(r *spool.Record) spool.State {
	if r == nil {
		return ""
	}
	return r.State
}

func attemptsOf(r *spool.Record) int {
	if r == nil {
		return -1
	}
	return r.Attempts
}
