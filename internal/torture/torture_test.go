package torture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

var (
	longFlag    = flag.Bool("long", false, "run the long torture test: 1,000 jobs, 60 kills, 8 target restarts, against one target and against three (or set HOPPER_TORTURE=long)")
	seedFlag    = flag.Uint64("torture.seed", 0, "seed of the torture schedule; 0 picks one, which is logged")
	keepFlag    = flag.Bool("torture.keep", false, "keep the spools and logs of the torture and corpus tests, and log where they are")
	webhookFlag = flag.Bool("torture.webhooks", true, "give every job a webhook and check that each terminal event arrives exactly once")
)

// keptDir is where a test keeps its spool and logs under -torture.keep: a
// new directory named from prefix, logged and left behind. Without the
// flag it is "", and the world uses a t.TempDir().
func keptDir(t *testing.T, prefix string) string {
	if !*keepFlag {
		return ""
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spool and logs kept in %s", dir)
	return dir
}

// plan is the size of a torture run.
type plan struct {
	jobs, kills, stops int
	limit              time.Duration // for each wait
}

// tortureplan is the short plan, or the long one with -long or
// HOPPER_TORTURE=long. It skips the test with -short.
func tortureplan(t *testing.T) plan {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the hopper binary")
	}
	if *longFlag || os.Getenv("HOPPER_TORTURE") == "long" {
		return plan{jobs: 1000, kills: 60, stops: 8, limit: 10 * time.Minute}
	}
	return plan{jobs: 150, kills: 10, stops: 2, limit: 3 * time.Minute}
}

// door is how a torture job enters hopper.
type door int

const (
	viaCLI     door = iota // hopper submit: durable once it exits 0
	viaJobsAPI             // POST /jobs on hopper serve's own front, with an Idempotency-Key, retried until acknowledged
	viaDropIn              // POST /api/chat on hopper serve's own front, which dies with every kill
	viaFront               // POST /api/chat on a separate hopper http that is never killed
	viaAbandon             // POST /api/chat on the separate front, by a client that gives up early
	viaRsync               // new/.NAME.json.XXXXXX written, then renamed to new/NAME.json
	viaMaildir             // tmp/NAME written, then renamed into new/
	viaCp                  // new/NAME.json written in place, in two parts
	viaCron                // new/cron.json, the same name every time, once the last one was claimed
	doors
)

var doorNames = [doors]string{"cli", "jobs-api", "drop-in", "front", "abandon", "rsync", "maildir", "cp", "cron"}

func (d door) String() string { return doorNames[d] }

// doorWeights is how often each door is used, in percent.
var doorWeights = [doors]int{12, 14, 12, 12, 4, 14, 12, 12, 8}

// unknownModel is the model of the jobs meant to fail: the target answers
// 404 and hopper fails them at once with Ollama's words.
const unknownModel = "nope"

// tjob is one job of the torture run and what its submitter saw.
type tjob struct {
	n      int
	door   door
	model  string
	prompt string // unique: it identifies the job's record and its requests at the target
	stream bool   // drop-ins

	// Written by the job's submitter alone; read once submitters are done.
	acked   bool   // hopper had the job: submit exited 0, a 2xx, response headers, a file in new/
	id      string // the job's ID, when the submitter learned it
	status  int    // a drop-in's HTTP status
	answer  string // the text a drop-in client received in full
	errMsg  string // an error answer, or the error a stream ended with
	lost    string // why a drop-in client lost its request
	retries int    // requests sent again after the front refused the connection
	took    time.Duration
}

func (j *tjob) body(webhook string) []byte {
	m := map[string]any{
		"model":    j.model,
		"messages": []map[string]string{{"role": "user", "content": j.prompt}},
	}
	switch j.door {
	case viaDropIn, viaFront, viaAbandon:
		m["stream"] = j.stream
	}
	if webhook != "" {
		m["webhook"] = webhook
	}
	data, _ := json.Marshal(m)
	return data
}

func (j *tjob) failing() bool { return j.model == unknownModel }

// torture is one run: the world, the jobs, and the chaos.
type torture struct {
	t          *testing.T
	w          *world
	plan       plan
	rng        *rand.Rand // jobs and the chaos schedule; the test goroutine's alone
	jobs       []*tjob
	frontEnv   []string
	front      string // hopper serve's own front
	standalone string // the separate hopper http
	client     *http.Client
	hooks      *sink // nil with -torture.webhooks=false

	fakes []*ollamatest.Server // the targets
	names []string             // their names in records
	slots int                  // requests each target serves at once, and hopper sends it

	serve    *proc
	progress atomic.Int64 // inference requests the targets have received
	killedAt []time.Time
	blows    []blow
	kills    int
	stops    int
	cronMu   sync.Mutex
	replies  func(prompt string) []int // the target that gave each answer to prompt, in order
}

// blow is one kill of hopper serve or one outage of a target, from the
// moment it struck to the restart after it: a job whose run it cut may run
// again.
type blow struct {
	target   int // the target stopped; -1 for a kill
	from, to time.Time
	inFlight int // requests the target (for a kill: all targets) had in flight as it struck
}

// setups are the shapes TestTorture runs in: the one target of the ollama
// shorthand, serving one request at a time, as most users run hopper; and
// three targets of two slots each, named in a config.
var setups = []struct{ targets, slots int }{{1, 1}, {3, 2}}

// TestTorture is DESIGN's promises under fire: jobs arrive through every
// door while hopper serve is SIGKILLed and a target stopped at random
// moments; at the end every job is in done/ exactly once (or in failed/
// where it was meant to fail), nothing is left in new/, cur/ or deferred/,
// the targets ran no job again unless a kill or an outage cut its run, and
// no target ever had more requests in flight than its slots nor two
// models at once. It runs against one target and against three of two
// slots each (TestTorture/targets=1, TestTorture/targets=3), with the same
// jobs and schedule.
//
// Short by default; -long (or HOPPER_TORTURE=long) for 1,000 jobs.
func TestTorture(t *testing.T) {
	p := tortureplan(t)
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for _, s := range setups {
		t.Run(fmt.Sprintf("targets=%d", s.targets), func(t *testing.T) {
			t.Logf("%d jobs, %d kills, %d target restarts, %d targets of %d slots; seed %d (-torture.seed %d draws the same jobs and schedule)",
				p.jobs, p.kills, p.stops, s.targets, s.slots, seed, seed)
			torment(t, p, seed, s.targets, s.slots)
		})
	}
}

// torment runs the torture with the given number of targets, each serving
// slots requests at once.
func torment(t *testing.T, p plan, seed uint64, targets, slots int) {
	started := time.Now()
	var replyMu sync.Mutex
	replies := map[string][]int{}
	// Every generation answers "answer K to PROMPT", K counting the
	// generations for that prompt on all targets, so an answer names the
	// execution, and the target, that produced it. Each fake may keep all
	// three models loaded (WithMaxLoaded's default): a lane that sent a
	// second model under running requests would have it served beside the
	// first, and MaxModelsInFlight would show it, where a fake that waited
	// for the first model to unload would hide it. Tokens come slower the
	// more slots there are, so that all targets together generate as fast
	// as the one target does: the run takes as long, and its kills land
	// among the same mix of submissions and generations.
	fakes := make([]*ollamatest.Server, targets)
	for i := range fakes {
		fakes[i] = ollamatest.NewServer(t,
			ollamatest.WithModels("m1", "m2", "m3"),
			ollamatest.WithParallel(slots),
			ollamatest.WithTokenDelay(time.Duration(targets*slots)*3*time.Millisecond),
			ollamatest.WithReply(func(r ollamatest.Request) string {
				p := promptOf(r.Body)
				replyMu.Lock()
				defer replyMu.Unlock()
				replies[p] = append(replies[p], i)
				return fmt.Sprintf("answer %d to %s", len(replies[p]), p)
			}))
	}
	dir := keptDir(t, "hopper-torture-run-")
	// Enough attempts that kills and outages alone never fail a job: each
	// costs at most one attempt of each job it cuts.
	settings := []string{fmt.Sprintf("HOPPER_MAX_ATTEMPTS=%d", p.kills+p.stops+3)}
	var hooks *sink
	if *webhookFlag {
		hooks = newSink(t)
		settings = append(settings, "HOPPER_HOOKS_ALLOW=127.0.0.1")
	}
	w := newWorld(t, true, fakes[0], dir, settings...)
	names := []string{"default"} // the ollama shorthand's one target
	if targets > 1 {
		names = w.useTargets(slots, fakes...)
	}
	frontAddr, standaloneAddr := runtest.FreeAddr(t), runtest.FreeAddr(t)
	tt := &torture{
		t: t, w: w, plan: p,
		rng:        rand.New(rand.NewPCG(seed, 0)),
		frontEnv:   []string{"HOPPER_HTTP=" + frontAddr},
		front:      "http://" + frontAddr,
		standalone: "http://" + standaloneAddr,
		// No connection reuse: a refused connection then means that
		// nothing was sent, and any other error that the request may
		// have been received.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		hooks:  hooks,
		fakes:  fakes, names: names, slots: slots,
		replies: func(prompt string) []int {
			replyMu.Lock()
			defer replyMu.Unlock()
			return slices.Clone(replies[prompt])
		},
	}
	tt.makeJobs()
	tt.serve = w.start(tt.frontEnv, "serve")
	standalone := w.start(nil, "http", "--http", standaloneAddr)
	waitHealthy(t, tt.standalone)
	waitHealthy(t, tt.front)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	submitted := make(chan struct{})
	defer func() {
		cancel() // on a failure, stop the submitters before the test ends
		wg.Wait()
	}()
	wg.Go(func() { tt.watchProgress(ctx) })
	var subs sync.WaitGroup
	queue := make(chan *tjob)
	for i := range 8 {
		rng := rand.New(rand.NewPCG(seed, uint64(i+1)))
		subs.Go(func() {
			for j := range queue {
				tt.gate(ctx, j.n)
				start := time.Now()
				tt.submit(ctx, rng, j)
				j.took = time.Since(start)
			}
		})
	}
	wg.Go(func() {
		defer close(submitted)
		defer subs.Wait()
		defer close(queue)
		for _, j := range tt.jobs {
			select {
			case queue <- j:
			case <-ctx.Done():
				return
			}
		}
	})

	tt.chaos()
	select {
	case <-submitted:
	case <-time.After(p.limit):
		t.Fatalf("the submitters did not finish within %v", p.limit)
	}
	tt.waitQuiet()
	if hooks != nil {
		// Before the SIGTERM: deliveries are the runner's to make.
		tt.checkWebhooks(w.records())
	}
	if code := tt.serve.term(t); code != 0 {
		t.Errorf("hopper serve exited %d after SIGTERM, want 0", code)
	}
	if code := standalone.term(t); code != 0 {
		t.Errorf("hopper http exited %d after SIGTERM, want 0", code)
	}
	tt.check(runs(fakes...))
	t.Logf("took %v", time.Since(started).Round(time.Millisecond))
}

// makeJobs draws each job's door and model.
func (tt *torture) makeJobs() {
	for n := range tt.plan.jobs {
		roll, d := tt.rng.IntN(100), door(0)
		for ; roll >= doorWeights[d]; d++ {
			roll -= doorWeights[d]
		}
		j := &tjob{n: n, door: d, model: fmt.Sprintf("m%d", 1+tt.rng.IntN(3)), stream: tt.rng.IntN(2) == 0}
		switch d {
		case viaCLI, viaJobsAPI, viaFront, viaRsync, viaMaildir:
			if tt.rng.IntN(100) < 8 {
				j.model = unknownModel
			}
		}
		j.prompt = fmt.Sprintf("job %04d via %s", n, d)
		tt.jobs = append(tt.jobs, j)
	}
}

// watchProgress keeps progress at the number of inference requests the
// targets have received.
func (tt *torture) watchProgress(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n := 0
		for _, f := range tt.fakes {
			for _, r := range f.Requests() {
				if inference(r.Path) {
					n++
				}
			}
		}
		tt.progress.Store(int64(n))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// window is how far submissions run ahead of the target, so that jobs keep
// arriving through the whole run rather than all before the first kill.
const window = 24

// gate holds job n back until the targets have seen n-window requests.
func (tt *torture) gate(ctx context.Context, n int) {
	for tt.progress.Load() < int64(n-window) && ctx.Err() == nil {
		pause(ctx, 5*time.Millisecond)
	}
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (tt *torture) webhook() string {
	if tt.hooks == nil {
		return ""
	}
	return tt.hooks.srv.URL + "/hook"
}

func (tt *torture) submit(ctx context.Context, rng *rand.Rand, j *tjob) {
	switch j.door {
	case viaCLI:
		tt.submitCLI(ctx, j)
	case viaJobsAPI:
		tt.postJob(ctx, rng, j)
	case viaDropIn:
		tt.dropIn(ctx, rng, tt.front, j, true)
	case viaFront:
		tt.dropIn(ctx, rng, tt.standalone, j, false)
	case viaAbandon:
		cctx, cancel := context.WithTimeout(ctx, time.Duration(10+rng.IntN(240))*time.Millisecond)
		defer cancel()
		tt.dropIn(cctx, rng, tt.standalone, j, false)
	default:
		tt.dropFile(ctx, rng, j)
	}
}

// submitCLI runs hopper submit: the job on standard input, or (for every
// other job) -m and -p, which make it a generate job.
func (tt *torture) submitCLI(ctx context.Context, j *tjob) {
	args, stdin := []string{"submit", "-"}, string(j.body(tt.webhook()))
	if j.n%2 == 1 {
		args, stdin = []string{"submit", "-m", j.model, "-p", j.prompt}, ""
		if wh := tt.webhook(); wh != "" {
			args = append(args, "--webhook", wh)
		}
	}
	out, err := tt.w.hopperErr(ctx, stdin, args...)
	if err != nil {
		if ctx.Err() == nil {
			tt.t.Errorf("job %d: hopper %s: %v\n%s", j.n, strings.Join(args, " "), err, out)
		}
		return
	}
	j.id, j.acked = strings.TrimSpace(out), true
}

// postJob sends POST /jobs to hopper serve's front until it is
// acknowledged, with the same Idempotency-Key every time, as a careful
// client retries.
func (tt *torture) postJob(ctx context.Context, rng *rand.Rand, j *tjob) {
	body := j.body(tt.webhook())
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, tt.front+"/jobs", bytes.NewReader(body))
		if err != nil {
			tt.t.Error(err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("torture-%04d", j.n))
		resp, err := tt.client.Do(req)
		var data []byte
		if err == nil {
			data, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			j.retries++
			pause(ctx, time.Duration(10+rng.IntN(20))*time.Millisecond)
			continue
		}
		switch resp.StatusCode {
		case http.StatusOK, http.StatusAccepted:
			var rec struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(data, &rec); err != nil || rec.ID == "" {
				tt.t.Errorf("job %d: POST /jobs answered %d with %q", j.n, resp.StatusCode, data)
			}
			j.id, j.acked = rec.ID, true
			return
		case http.StatusConflict, http.StatusServiceUnavailable:
			// The key's first request is still being handled, or was
			// cut off by a kill before its job was written.
			j.retries++
			pause(ctx, 200*time.Millisecond)
		default:
			tt.t.Errorf("job %d: POST /jobs answered %d: %s", j.n, resp.StatusCode, data)
			return
		}
	}
}

// dropIn sends the job to /api/chat at base, as an Ollama client would, and
// reads the answer. With retryRefused it sends it again while the front is
// down (the connection refused: nothing reached hopper); any other
// transport error loses the request, as it would with Ollama.
func (tt *torture) dropIn(ctx context.Context, rng *rand.Rand, base string, j *tjob, retryRefused bool) {
	body := j.body(tt.webhook())
	var resp *http.Response
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/chat", bytes.NewReader(body))
		if err != nil {
			tt.t.Error(err)
			return
		}
		resp, err = tt.client.Do(req)
		if err == nil {
			break
		}
		if retryRefused && errors.Is(err, syscall.ECONNREFUSED) && ctx.Err() == nil {
			j.retries++
			pause(ctx, time.Duration(10+rng.IntN(20))*time.Millisecond)
			continue
		}
		j.lost = err.Error()
		return
	}
	defer resp.Body.Close()
	j.acked, j.status, j.id = true, resp.StatusCode, resp.Header.Get("X-Hopper-Job-Id")
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			j.lost = "reading the error: " + err.Error()
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			tt.t.Errorf("job %d: %d with a body not in Ollama's error shape: %q", j.n, resp.StatusCode, data)
		}
		j.errMsg = e.Error
		return
	}
	type chunk struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		Done  bool   `json:"done"`
		Error string `json:"error"`
	}
	if !j.stream {
		var c chunk
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			j.lost = "reading the answer: " + err.Error()
			return
		}
		if !c.Done {
			tt.t.Errorf("job %d: a non-streamed answer without done: %+v", j.n, c)
		}
		j.answer = c.Message.Content
		return
	}
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var c chunk
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			tt.t.Errorf("job %d: a streamed line is not JSON: %q", j.n, sc.Text())
			return
		}
		if c.Error != "" {
			j.errMsg = c.Error
			return
		}
		text.WriteString(c.Message.Content)
		if c.Done {
			j.answer = text.String()
			if sc.Scan() {
				tt.t.Errorf("job %d: a line after the final chunk: %q", j.n, sc.Text())
			}
			return
		}
	}
	j.lost = fmt.Sprintf("the stream ended before its final chunk (%v)", sc.Err())
}

// dropFile writes the job into new/ as rsync, a maildir writer, cp or cron
// would.
func (tt *torture) dropFile(ctx context.Context, rng *rand.Rand, j *tjob) {
	name := fmt.Sprintf("t%04d-%s", j.n, j.door)
	body := j.body(tt.webhook())
	newDir, tmpDir := filepath.Join(tt.w.spool, spool.DirNew), filepath.Join(tt.w.spool, spool.DirTmp)
	var err error
	switch j.door {
	case viaRsync:
		tmp := filepath.Join(newDir, "."+name+".json."+randName(rng, 6))
		if err = os.WriteFile(tmp, body, 0o640); err == nil {
			err = os.Rename(tmp, filepath.Join(newDir, name+".json"))
		}
	case viaMaildir:
		tmp := filepath.Join(tmpDir, name)
		if err = os.WriteFile(tmp, body, 0o640); err == nil {
			err = os.Rename(tmp, filepath.Join(newDir, name+".json"))
		}
	case viaCp:
		var f *os.File
		if f, err = os.OpenFile(filepath.Join(newDir, name+".json"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640); err == nil {
			half := len(body) / 2
			_, err = f.Write(body[:half])
			pause(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
			if err == nil {
				_, err = f.Write(body[half:])
			}
			err = errors.Join(err, f.Close())
		}
	case viaCron:
		name = "cron"
		err = tt.dropCron(ctx, tmpDir, newDir, j, body)
	}
	if err != nil {
		tt.t.Errorf("job %d: drop %s: %v", j.n, j.door, err)
		return
	}
	j.id, j.acked = name, true
}

// dropCron renames a complete file to new/cron.json without replacing the
// one there: a cron job that finds its last file unclaimed waits.
func (tt *torture) dropCron(ctx context.Context, tmpDir, newDir string, j *tjob, body []byte) error {
	tt.cronMu.Lock()
	defer tt.cronMu.Unlock()
	tmp := filepath.Join(tmpDir, fmt.Sprintf("cron-%04d", j.n))
	if err := os.WriteFile(tmp, body, 0o640); err != nil {
		return err
	}
	for ctx.Err() == nil {
		err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, filepath.Join(newDir, "cron.json"), unix.RENAME_NOREPLACE)
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
		pause(ctx, 5*time.Millisecond)
	}
	return ctx.Err()
}

func randName(rng *rand.Rand, n int) string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
	return string(b)
}

// event is one blow of the chaos schedule.
type event struct {
	at   int  // the progress (requests at the targets) that sets it off
	stop bool // stop and restart a target, rather than kill hopper serve
	soon bool // a kill soon after the last restart: during start-up and recovery
}

func (tt *torture) schedule() []event {
	n := tt.plan.jobs
	var evs []event
	for i := range tt.plan.kills + tt.plan.stops {
		evs = append(evs, event{at: n*3/100 + tt.rng.IntN(n*89/100), stop: i >= tt.plan.kills})
	}
	sort.Slice(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
	for i := 1; i < len(evs); i++ {
		if !evs[i].stop && !evs[i-1].stop && tt.rng.IntN(4) == 0 {
			evs[i].soon, evs[i].at = true, evs[i-1].at
		}
	}
	return evs
}

// chaos runs the schedule: each kill is a SIGKILL at a random moment (half
// of them while a target is generating), followed by a restart; each
// stop takes one target, drawn at random, down for 50-300ms while it
// generates.
func (tt *torture) chaos() {
	t := tt.t
	for _, ev := range tt.schedule() {
		deadline := time.Now().Add(tt.plan.limit)
		for tt.progress.Load() < int64(ev.at) {
			if tt.serve.exited() {
				t.Fatalf("hopper serve exited by itself (%v); its log ends:\n%s", tt.serve.state, tt.logTail(tt.serve))
			}
			if time.Now().After(deadline) {
				t.Fatalf("the targets saw %d requests in %v, want %d", tt.progress.Load(), tt.plan.limit, ev.at)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if ev.stop {
			i := 0
			if len(tt.fakes) > 1 {
				i = tt.rng.IntN(len(tt.fakes))
			}
			// An outage with nothing in flight proves little: wait for
			// the target to have work, as a server dies under load.
			for end := time.Now().Add(2 * time.Second); tt.fakes[i].InFlight() == 0 && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(tt.rng.IntN(15000)) * time.Microsecond)
			b := blow{target: i, from: time.Now(), inFlight: tt.fakes[i].InFlight()}
			tt.fakes[i].Stop()
			time.Sleep(time.Duration(50+tt.rng.IntN(250)) * time.Millisecond)
			tt.fakes[i].Start()
			b.to = time.Now()
			tt.blows = append(tt.blows, b)
			tt.stops++
			continue
		}
		switch {
		case ev.soon:
			time.Sleep(time.Duration(tt.rng.IntN(150)) * time.Millisecond)
		case tt.rng.IntN(2) == 0:
			for end := time.Now().Add(2 * time.Second); tt.inFlight() == 0 && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(tt.rng.IntN(15000)) * time.Microsecond)
		}
		if tt.serve.exited() {
			t.Fatalf("hopper serve exited by itself (%v); its log ends:\n%s", tt.serve.state, tt.logTail(tt.serve))
		}
		b := blow{target: -1, from: time.Now(), inFlight: tt.inFlight()}
		tt.serve.kill()
		tt.killedAt = append(tt.killedAt, time.Now())
		tt.kills++
		// The targets see the dead runner's connections close and end its
		// requests; wait for that, so that the slot checks judge the
		// requests of one runner at a time.
		waitFor(t, 10*time.Second, "the targets to end the requests of the killed hopper serve", func() bool { return tt.inFlight() == 0 })
		time.Sleep(time.Duration(tt.rng.IntN(100)) * time.Millisecond)
		b.to = time.Now()
		tt.blows = append(tt.blows, b)
		tt.serve = tt.w.start(tt.frontEnv, "serve")
	}
}

// inFlight is the number of inference requests the targets handle now.
func (tt *torture) inFlight() int {
	n := 0
	for _, f := range tt.fakes {
		n += f.InFlight()
	}
	return n
}

func (tt *torture) logTail(p *proc) string {
	data, _ := os.ReadFile(p.log)
	return tail(string(data), 30)
}

// waitQuiet waits until nothing is queued, running or waiting to retry.
func (tt *torture) waitQuiet() {
	w := tt.w
	waitFor(tt.t, tt.plan.limit, "new/, cur/ and deferred/ to empty", func() bool {
		if tt.serve.exited() {
			tt.t.Fatalf("hopper serve exited by itself (%v); its log ends:\n%s", tt.serve.state, tt.logTail(tt.serve))
		}
		return w.count(spool.DirNew) == 0 && w.count(spool.DirCur) == 0 && w.count(spool.DirDeferred) == 0
	})
}

// check compares the spool, the targets' requests and what each client saw
// with what DESIGN promises.
func (tt *torture) check(execs map[string][]run) {
	t, w := tt.t, tt.w
	for _, d := range []string{spool.DirNew, spool.DirCur, spool.DirDeferred, spool.DirHold} {
		if names := w.names(d); len(names) > 0 {
			t.Errorf("%s/ holds %v at the end, want it empty", d, names)
		}
	}
	// A kill while hopper stages a file in tmp/ leaves it there; DESIGN
	// removes tmp/ files after 36 hours, as maildir does. Nothing else
	// may be left.
	var staged []string
	for _, name := range w.names(spool.DirTmp) {
		if !strings.HasPrefix(name, ".") {
			t.Errorf("tmp/%s is left at the end", name)
			continue
		}
		staged = append(staged, name)
	}
	if len(staged) > tt.kills {
		t.Errorf("tmp/ holds %d staged files after %d kills, want at most one a kill: %v", len(staged), tt.kills, staged)
	}
	for _, d := range []string{spool.DirDone, spool.DirFailed} {
		for _, name := range w.names(d) {
			if !strings.HasSuffix(name, ".json") {
				t.Errorf("%s/%s: only records expected", d, name)
			}
		}
	}

	byPrompt := map[string][]*spool.Record{}
	known := map[string]*tjob{}
	for _, j := range tt.jobs {
		known[j.prompt] = j
	}
	recs := w.records()
	for _, r := range recs {
		p := promptOf(r.Job)
		if known[p] == nil {
			t.Errorf("record %s is no job of this test (prompt %q)", r.ID, p)
			continue
		}
		byPrompt[p] = append(byPrompt[p], r)
	}

	var (
		outcome      = map[string]int{}
		ran, extra   int
		staleAnswer  int
		rerun        int // records with more than one attempt
		resent, lost int // requests sent again after a refused connection; drop-ins lost with their front
		slowestPost  *tjob
	)
	for _, j := range tt.jobs {
		got := byPrompt[j.prompt]
		resent += j.retries
		if j.door == viaJobsAPI && (slowestPost == nil || j.took > slowestPost.took) {
			slowestPost = j
		}
		if j.lost != "" && j.door == viaDropIn {
			lost++
		}
		ran += len(execs[j.prompt])
		again, odd := tt.reruns(j, execs[j.prompt])
		extra += again
		if odd != "" {
			t.Errorf("job %d (%s, model %s): %s", j.n, j.door, j.model, odd)
		}
		if len(got) > 1 {
			ids := make([]string, len(got))
			for i, r := range got {
				ids[i] = string(r.State) + "/" + r.ID
			}
			t.Errorf("job %d (%s): %d records %v, want one", j.n, j.door, len(got), ids)
			continue
		}
		var r *spool.Record
		if len(got) == 1 {
			r = got[0]
		}
		key, msg := tt.judge(j, r)
		outcome[j.door.String()+" "+key]++
		if msg != "" {
			t.Errorf("job %d (%s, model %s): %s", j.n, j.door, j.model, msg)
		}
		if r == nil && len(execs[j.prompt]) > 0 {
			t.Errorf("job %d (%s): the targets ran it %d times, but it has no record", j.n, j.door, len(execs[j.prompt]))
		}
		if r != nil && r.Attempts > 1 {
			rerun++
		}
		if r != nil && r.State == spool.StateDone {
			by := tt.replies(j.prompt)
			if k := tt.answerNumber(j, r); k > 0 {
				if k < len(by) {
					staleAnswer++
				}
				if want := tt.names[by[k-1]]; r.Target != want {
					t.Errorf("job %d (%s): record %s says target %q ran it, but its answer came from %s", j.n, j.door, r.ID, r.Target, want)
				}
			}
		}
	}
	// A kill cuts at most every slot of every target, an outage the slots
	// of one target.
	bound := tt.kills*len(tt.fakes)*tt.slots + tt.stops*tt.slots
	if extra > bound {
		t.Errorf("the targets ran %d requests for %d jobs: %d more than once, want at most %d (one per slot cut by a kill or an outage)", ran, len(tt.jobs), extra, bound)
	}
	var perTarget []string
	for i, f := range tt.fakes {
		if got := f.MaxInFlight(); got > tt.slots {
			t.Errorf("target %s had %d requests in flight at once, want at most its %d slots", tt.names[i], got, tt.slots)
		}
		if got := f.MaxModelsInFlight(); got > 1 {
			t.Errorf("target %s served %d models at once, want 1: hopper swapped a model under running requests", tt.names[i], got)
		}
		n := 0
		for _, r := range f.Requests() {
			if inference(r.Path) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("target %s ran no job", tt.names[i])
		}
		perTarget = append(perTarget, fmt.Sprintf("%s %d (%d loads, at most %d in flight)", tt.names[i], n, f.Loads(), f.MaxInFlight()))
	}

	var keys []string
	for k := range outcome {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "\n  %-52s %4d", k, outcome[k])
	}
	var blows []string
	for _, b := range tt.blows {
		what := "kill"
		if b.target >= 0 {
			what = "stop " + tt.names[b.target]
		}
		blows = append(blows, fmt.Sprintf("%s %s-%s (%d in flight)", what, b.from.Format("15:04:05.000"), b.to.Format("05.000"), b.inFlight))
	}
	t.Logf("kills and outages: %s", strings.Join(blows, ", "))
	t.Logf("%d kills, %d target restarts; %d records (%d failed, %d with more than one attempt); "+
		"the targets ran %d requests (%s), %d of them again (bound %d); %d HTTP requests sent again after a refused connection, %d drop-ins lost with their front; "+
		"%d staged files left in tmp/; %d answers from an earlier generation than the last; %s\noutcomes by door:%s",
		tt.kills, tt.stops, len(recs), len(w.names(spool.DirFailed)), rerun, ran, strings.Join(perTarget, ", "), extra, bound, resent, lost, len(staged), staleAnswer, slowest(slowestPost), sb.String())
}

// reruns counts the runs of a job after its first and says what is wrong
// if one of them is not explained by a kill or an outage that struck
// between it and the run before it (for an outage: of the target that ran
// that one). A job meant to fail is asked of each target once, since each
// may have the model: its runs count from its second at the same target.
func (tt *torture) reruns(j *tjob, rs []run) (n int, problem string) {
	for i, next := range rs {
		prev := -1
		for k := i - 1; k >= 0; k-- {
			if !j.failing() || rs[k].target == next.target {
				prev = k
				break
			}
		}
		if prev < 0 {
			continue
		}
		n++
		p := rs[prev]
		explained := slices.ContainsFunc(tt.blows, func(b blow) bool {
			return (b.target < 0 || b.target == p.target) && p.at.Before(b.to) && next.at.After(b.from)
		})
		if !explained && problem == "" {
			problem = fmt.Sprintf("ran on %s at %s and again on %s at %s, with no kill or outage of %s between",
				tt.names[p.target], p.at.Format("15:04:05.000000"), tt.names[next.target], next.at.Format("15:04:05.000000"), tt.names[p.target])
		}
	}
	return n, problem
}

func slowest(j *tjob) string {
	if j == nil {
		return "no POST /jobs"
	}
	return fmt.Sprintf("the slowest POST /jobs was acknowledged after %v and %d retries", j.took.Round(time.Millisecond), j.retries)
}

// judge returns a job's outcome and, if it is not one DESIGN allows, why.
// r is the job's one record, or nil.
func (tt *torture) judge(j *tjob, r *spool.Record) (outcome, problem string) {
	switch {
	case r == nil:
		outcome = "no record"
	case r.State == spool.StateDone:
		outcome = "done"
	case r.Error != nil:
		outcome = "failed " + string(r.Error.Kind)
	default:
		outcome = "failed without an error"
	}
	if j.lost != "" {
		outcome += " (client lost it)"
	}
	if j.errMsg != "" && j.status == http.StatusOK {
		outcome += " (client got an error)"
	}
	if j.door == viaAbandon {
		// Absent (the client left before it was queued), canceled, or
		// done (it finished before the cancel).
		if r != nil && r.State != spool.StateDone && (r.Error == nil || r.Error.Kind != spool.KindCanceled) {
			return outcome, fmt.Sprintf("an abandoned drop-in ended %s, want done or canceled", outcome)
		}
		return outcome, tt.answerProblem(j, r)
	}
	if j.door == viaDropIn && !j.acked {
		// The front died before it answered: the job may never have been
		// written, and if it was, it runs (nobody canceled it).
		if r != nil && r.State != spool.StateDone {
			return outcome, fmt.Sprintf("a drop-in lost with its front ended %s, want done or no record", outcome)
		}
		return outcome, tt.answerProblem(j, r)
	}
	if !j.acked {
		return outcome, "the submitter never had it acknowledged: " + j.lost
	}
	if r == nil {
		return outcome, "acknowledged, but it has no record in done/ or failed/"
	}
	if j.id != "" && r.ID != j.id && !(j.door == viaCron && strings.HasPrefix(r.ID, "cron.") && r.Source == "cron.json") {
		return outcome, fmt.Sprintf("its record is %s, want %s", r.ID, j.id)
	}
	if j.failing() {
		wantMsg := fmt.Sprintf("model '%s' not found", unknownModel)
		if r.State != spool.StateFailed || r.Error == nil || r.Error.Kind != spool.KindTarget || r.Error.Status != http.StatusNotFound || r.Error.Message != wantMsg {
			return outcome, fmt.Sprintf("got %s %+v, want failed: target 404 %q", r.State, r.Error, wantMsg)
		}
		// A streaming request that had to wait got its headers (200) when
		// it was queued; its error then comes in the stream, as Ollama
		// sends an error mid-stream.
		if j.door == viaFront && ((j.status != http.StatusNotFound && j.status != http.StatusOK) || j.errMsg != wantMsg) {
			return outcome, fmt.Sprintf("the client got %d %q, want 404 %q (or 200 and the error in the stream)", j.status, j.errMsg, wantMsg)
		}
		return outcome, ""
	}
	switch {
	case j.errMsg != "" && j.status == http.StatusOK:
		// An attempt failed after part of the answer reached the client
		// (the target stopped mid-stream, or, behind the separate front,
		// the runner was killed): as Ollama does when its runner dies,
		// the stream ended with an error, and the job is canceled (or it
		// finished before the cancel).
		if r.State != spool.StateDone && r.Error.Kind != spool.KindCanceled {
			return outcome, "a stream that ended in an error left the job " + outcome + ", want canceled (or done)"
		}
		return outcome, ""
	case (j.door == viaDropIn || j.door == viaFront) && j.status != http.StatusOK:
		return outcome, fmt.Sprintf("the client got %d %q", j.status, j.errMsg)
	case j.door == viaFront && j.lost != "":
		return outcome, "the separate front, never killed, lost the request: " + j.lost
	case r.State != spool.StateDone:
		return outcome, fmt.Sprintf("got %s (%+v), want done", r.State, r.Error)
	}
	return outcome, tt.answerProblem(j, r)
}

// answerProblem checks a done record's answer: one the target produced for
// this job, and the very text the client received, if it received one.
func (tt *torture) answerProblem(j *tjob, r *spool.Record) string {
	if r == nil || r.State != spool.StateDone {
		if j.answer != "" {
			return fmt.Sprintf("the client got the answer %q, but the job is not done", j.answer)
		}
		return ""
	}
	if tt.answerNumber(j, r) == 0 {
		return fmt.Sprintf("the record's answer %q is none the target gave for this job", answerOf(r.Response))
	}
	if j.answer != "" && j.answer != answerOf(r.Response) {
		return fmt.Sprintf("the client got %q, the record says %q", j.answer, answerOf(r.Response))
	}
	return ""
}

// answerNumber returns K of a done record's "answer K to PROMPT", or 0 if
// the answer is not one the target produced for this job.
func (tt *torture) answerNumber(j *tjob, r *spool.Record) int {
	text := answerOf(r.Response)
	for k := 1; k <= len(tt.replies(j.prompt)); k++ {
		if text == fmt.Sprintf("answer %d to %s", k, j.prompt) {
			return k
		}
	}
	return 0
}

// sink receives webhooks and keeps, per job and event type, the distinct
// webhook-ids delivered (Standard Webhooks retries keep the id).
type sink struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string]map[string]bool // "ID job.done" → webhook-ids
}

func newSink(t *testing.T) *sink {
	s := &sink{seen: map[string]map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Type string `json:"type"`
			ID   string `json:"id"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		data, _ := io.ReadAll(r.Body)
		if json.Unmarshal(data, &ev) != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		id := ev.ID
		if id == "" {
			id = ev.Data.ID
		}
		s.mu.Lock()
		key := id + " " + ev.Type
		if s.seen[key] == nil {
			s.seen[key] = map[string]bool{}
		}
		s.seen[key][r.Header.Get("webhook-id")] = true
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// delivered is how many distinct deliveries (webhook-ids) of the
// record's terminal event arrived.
func (s *sink) delivered(r *spool.Record) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen[r.ID+" job."+string(r.State)])
}

// events is how many distinct deliveries arrived in all.
func (s *sink) events() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ids := range s.seen {
		n += len(ids)
	}
	return n
}

// killedJustAfter reports whether hopper serve was killed within 250ms
// after the record was finished: the event may then come only from the
// restarted runner (spool.Recover finishes the record and it emits again).
func (tt *torture) killedJustAfter(r *spool.Record) bool {
	if r.FinishedAt == nil {
		return false
	}
	for _, k := range tt.killedAt {
		if d := k.Sub(*r.FinishedAt); d >= 0 && d < 250*time.Millisecond {
			return true
		}
	}
	return false
}

// checkWebhooks waits for each record's terminal event (job.done or
// job.failed) at the job's webhook, and wants it delivered exactly once:
// retries keep their webhook-id, so distinct ids are distinct events.
func (tt *torture) checkWebhooks(recs []*spool.Record) {
	t, hooks := tt.t, tt.hooks
	// An event whose record was finished right before a kill is waited for
	// at least 10 seconds: the restarted runner sends it.
	deadline, lostDeadline := time.Now().Add(tt.plan.limit), time.Now().Add(10*time.Second)
	for _, r := range recs {
		until := deadline
		if tt.killedJustAfter(r) && lostDeadline.After(until) {
			until = lostDeadline
		}
		for hooks.delivered(r) == 0 && time.Now().Before(until) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, r := range recs {
		if n := hooks.delivered(r); n != 1 {
			what := "done"
			if r.Error != nil {
				what = fmt.Sprintf("%s: %s (attempts %d, started %v)", r.Error.Kind, r.Error.Message, r.Attempts, r.StartedAt != nil)
			}
			t.Errorf("job %s (%s, %s): %d distinct job.%s deliveries, want 1", r.ID, promptOf(r.Job), what, n, r.State)
		}
	}
	t.Logf("webhooks: %d distinct deliveries received; the terminal event of all %d records checked", hooks.events(), len(recs))
}
