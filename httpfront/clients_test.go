package httpfront_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// pump plays the runner against a real target until the test ends: it
// claims each queued job, sends it streaming with hopper's own client,
// writes the chunks to cur/ID.out and finishes the record, failing it with
// the target's status when the target refuses it.
func pump(t testing.TB, sp *spool.Spool, target string) {
	t.Helper()
	fr := newFakeRunner(t, sp)
	client := ollamatest.Client(t, target)
	runtest.Start(t, "the pump", patience, func(ctx context.Context) error {
		for {
			e, ok := nextEntry(ctx, fr.q)
			if !ok {
				return nil
			}
			c, err := sp.Claim(e)
			if err != nil || c.Job == nil {
				continue
			}
			runJob(ctx, sp, client, c)
		}
	})
}

func nextEntry(ctx context.Context, q *spool.Queue) (spool.Entry, bool) {
	for {
		if p, ok := q.TopPriority(); ok {
			if e, ok := q.Oldest(p); ok {
				q.Remove(e.Dir, e.Name)
				return e, true
			}
		}
		select {
		case <-q.Changed():
		case <-ctx.Done():
			return spool.Entry{}, false
		}
	}
}

func runJob(ctx context.Context, sp *spool.Spool, client *ollama.Client, c *spool.Claimed) {
	rec, job := c.Record, c.Job
	extra := map[string]json.RawMessage{}
	if job.Endpoint.Streams() {
		extra["stream"] = json.RawMessage("true")
		if job.Endpoint.OpenAI() {
			extra["stream_options"] = json.RawMessage(`{"include_usage":true}`)
		}
	}
	body, _ := job.Request(extra)
	now := time.Now()
	rec.Attempts, rec.StartedAt, rec.State = 1, &now, spool.StateWorking
	sp.Update(rec)
	out, err := sp.CreateOutput(rec.ID)
	if err != nil {
		return
	}
	resp, err := client.Do(ctx, job.Endpoint.Path(), body, func(chunk []byte) error {
		_, err := out.Write(append(chunk, '\n'))
		return err
	})
	out.Close()
	end := time.Now()
	rec.FinishedAt = &end
	var rejected *ollama.RejectedError
	switch {
	case err == nil:
		rec.State, rec.Response = spool.StateDone, resp
	case errors.As(err, &rejected):
		rec.State, rec.Error = spool.StateFailed, &spool.JobError{Kind: spool.KindTarget, Message: rejected.Message, Status: rejected.Status}
	default:
		rec.State, rec.Error = spool.StateFailed, &spool.JobError{Kind: spool.KindTarget, Message: err.Error(), Status: 500}
	}
	sp.Finish(rec)
}

// hopperAndDirect starts ollamatest, and hopper in front of it with the
// pump as its runner; it returns both base URLs.
func hopperAndDirect(t *testing.T) (hopper, direct string) {
	t.Helper()
	// A token delay, as a real model has: a stream the front relays as it
	// comes, not one that ended before the front looked.
	target := ollamatest.NewServer(t,
		ollamatest.WithModel(ollamatest.Model{Name: "llama3.2"}),
		ollamatest.WithModel(ollamatest.Model{Name: "all-minilm", Embedding: true, Dims: 8}),
		ollamatest.WithTokenDelay(2*time.Millisecond))
	sp := newSpool(t)
	pump(t, sp, target.URL)
	f := startFront(t, sp, func(c *httpfront.Config) { c.Target = target.URL })
	return f.URL, target.URL
}

func ollamaClient(t *testing.T, base string) *api.Client {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(u, http.DefaultClient)
}

func TestOllamaClientGetsWhatOllamaGives(t *testing.T) {
	hopper, direct := hopperAndDirect(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	msgs := []api.Message{{Role: "user", Content: "why is the sky blue"}}
	no := false

	// each runs one call against a client and returns what to compare.
	tests := []struct {
		name string
		run  func(c *api.Client) (any, error)
	}{
		{"ChatStreaming", func(c *api.Client) (any, error) {
			var chunks []string
			var last api.ChatResponse
			err := c.Chat(ctx, &api.ChatRequest{Model: "llama3.2", Messages: msgs}, func(r api.ChatResponse) error {
				chunks, last = append(chunks, r.Message.Content), r
				return nil
			})
			return []any{chunks, last.Done, last.DoneReason, last.EvalCount, last.Model}, err
		}},
		{"ChatNotStreaming", func(c *api.Client) (any, error) {
			var got []api.ChatResponse
			err := c.Chat(ctx, &api.ChatRequest{Model: "llama3.2", Messages: msgs, Stream: &no}, func(r api.ChatResponse) error {
				got = append(got, r)
				return nil
			})
			if len(got) != 1 {
				return len(got), err
			}
			return []any{got[0].Message, got[0].Done, got[0].DoneReason}, err
		}},
		{"Generate", func(c *api.Client) (any, error) {
			var text strings.Builder
			var n int
			err := c.Generate(ctx, &api.GenerateRequest{Model: "llama3.2", Prompt: "hello there"}, func(r api.GenerateResponse) error {
				text.WriteString(r.Response)
				n++
				return nil
			})
			return []any{text.String(), n > 1}, err
		}},
		{"Embed", func(c *api.Client) (any, error) {
			r, err := c.Embed(ctx, &api.EmbedRequest{Model: "all-minilm", Input: "some text"})
			if err != nil {
				return nil, err
			}
			return []any{r.Model, r.Embeddings}, nil
		}},
		{"ChatWithAnUnknownModel", func(c *api.Client) (any, error) {
			return statusOf(c.Chat(ctx, &api.ChatRequest{Model: "nope", Messages: msgs}, func(api.ChatResponse) error { return nil })), nil
		}},
		{"ChatWithoutAModel", func(c *api.Client) (any, error) {
			return statusOf(c.Chat(ctx, &api.ChatRequest{Messages: msgs}, func(api.ChatResponse) error { return nil })), nil
		}},
		{"List", func(c *api.Client) (any, error) {
			r, err := c.List(ctx)
			if err != nil {
				return nil, err
			}
			return namesOf(r.Models, func(m api.ListModelResponse) string { return m.Name }), nil
		}},
		{"ListRunning", func(c *api.Client) (any, error) {
			r, err := c.ListRunning(ctx)
			if err != nil {
				return nil, err
			}
			names := namesOf(r.Models, func(m api.ProcessModelResponse) string { return m.Name })
			slices.Sort(names)
			return names, nil
		}},
		{"Version", func(c *api.Client) (any, error) { return c.Version(ctx) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, werr := tt.run(ollamaClient(t, direct))
			got, gerr := tt.run(ollamaClient(t, hopper))
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("error: got %v, direct %v", gerr, werr)
			}
			if g, w := jsonOf(got), jsonOf(want); g != w {
				t.Errorf("through hopper: %s\ndirect:         %s", g, w)
			}
		})
	}
}

// statusOf is the status and message of the api.StatusError in err.
func statusOf(err error) []any {
	var se api.StatusError
	errors.As(err, &se)
	return []any{se.StatusCode, se.ErrorMessage}
}

// namesOf is the name of each model in models; nil when there is none.
func namesOf[M any](models []M, name func(M) string) []string {
	var names []string
	for _, m := range models {
		names = append(names, name(m))
	}
	return names
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func openaiClient(base string) openai.Client {
	return openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func TestOpenAIClientGetsWhatOllamaGives(t *testing.T) {
	hopper, direct := hopperAndDirect(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	params := openai.ChatCompletionNewParams{
		Model:    "llama3.2",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("tell me a story")},
	}
	tests := []struct {
		name string
		run  func(c openai.Client) (any, error)
	}{
		{"Chat", func(c openai.Client) (any, error) {
			r, err := c.Chat.Completions.New(ctx, params)
			if err != nil {
				return nil, err
			}
			return []any{r.Object, r.Model, r.Choices[0].Message.Content, r.Choices[0].FinishReason, r.Usage.CompletionTokens}, nil
		}},
		{"ChatStreaming", func(c openai.Client) (any, error) {
			stream := c.Chat.Completions.NewStreaming(ctx, params)
			var acc openai.ChatCompletionAccumulator
			var deltas []string
			for stream.Next() {
				chunk := stream.Current()
				acc.AddChunk(chunk)
				if len(chunk.Choices) > 0 {
					deltas = append(deltas, chunk.Choices[0].Delta.Content)
				}
			}
			if err := stream.Err(); err != nil {
				return nil, err
			}
			return []any{deltas, acc.Choices[0].Message.Content, acc.Choices[0].FinishReason}, nil
		}},
		{"ChatStreamingWithUsage", func(c openai.Client) (any, error) {
			p := params
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := c.Chat.Completions.NewStreaming(ctx, p)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			return []any{acc.Choices[0].Message.Content, acc.Usage.CompletionTokens}, stream.Err()
		}},
		{"ChatWithAnUnknownModel", func(c openai.Client) (any, error) {
			p := params
			p.Model = "nope"
			_, err := c.Chat.Completions.New(ctx, p)
			var e *openai.Error
			if !errors.As(err, &e) {
				return nil, err
			}
			return []any{e.StatusCode, e.Message, e.Type}, nil
		}},
		{"Embeddings", func(c openai.Client) (any, error) {
			r, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model: "all-minilm",
				Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("some text")},
			})
			if err != nil {
				return nil, err
			}
			return []any{r.Data[0].Embedding, r.Model}, nil
		}},
		{"Models", func(c openai.Client) (any, error) {
			page, err := c.Models.List(ctx)
			if err != nil {
				return nil, err
			}
			var ids []string
			for _, m := range page.Data {
				ids = append(ids, m.ID)
			}
			return ids, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, werr := tt.run(openaiClient(direct))
			got, gerr := tt.run(openaiClient(hopper))
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("error: got %v, direct %v", gerr, werr)
			}
			if g, w := jsonOf(got), jsonOf(want); g != w {
				t.Errorf("through hopper: %s\ndirect:         %s", g, w)
			}
		})
	}
}
