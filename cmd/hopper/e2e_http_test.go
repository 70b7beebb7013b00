package main

import (
	"context"
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

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// frontAndRunner starts `hopper serve --http off` and `hopper http` as two
// processes on one spool, and returns the front's base URL.
func frontAndRunner(t *testing.T, w *world) string {
	t.Helper()
	w.serve()
	_, base := w.startFront("http")
	return base
}

func TestFrontAndRunnerAsSeparateProcessesServeOfficialClients(t *testing.T) {
	w := newWorld(t, ollamatest.WithModel(ollamatest.Model{Name: "emb", Embedding: true}))
	base := frontAndRunner(t, w)
	u, _ := url.Parse(base)
	client := api.NewClient(u, http.DefaultClient)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("ChatStreams", func(t *testing.T) {
		var chunks int
		var text strings.Builder
		var last api.ChatResponse
		err := client.Chat(ctx, &api.ChatRequest{Model: "m1", Messages: []api.Message{{Role: "user", Content: "why is the sky blue"}}},
			func(r api.ChatResponse) error {
				chunks++
				text.WriteString(r.Message.Content)
				last = r
				return nil
			})
		if err != nil || chunks < 2 || !last.Done || !strings.Contains(text.String(), "why is the sky blue") {
			t.Errorf("got %d chunks, done=%v, text %q, err %v", chunks, last.Done, text.String(), err)
		}
	})
	t.Run("Generate", func(t *testing.T) {
		no := false
		var got api.GenerateResponse
		err := client.Generate(ctx, &api.GenerateRequest{Model: "m2", Prompt: "hello there", Stream: &no}, func(r api.GenerateResponse) error {
			got = r
			return nil
		})
		if err != nil || !got.Done || !strings.Contains(got.Response, "hello there") {
			t.Errorf("got %+v, %v", got, err)
		}
	})
	t.Run("Embed", func(t *testing.T) {
		r, err := client.Embed(ctx, &api.EmbedRequest{Model: "emb", Input: "some text"})
		if err != nil || len(r.Embeddings) != 1 || len(r.Embeddings[0]) == 0 {
			t.Errorf("got %+v, %v", r, err)
		}
	})
	t.Run("UnknownModelIsOllamas404", func(t *testing.T) {
		err := client.Chat(ctx, &api.ChatRequest{Model: "nope", Messages: []api.Message{{Role: "user", Content: "x"}}}, func(api.ChatResponse) error { return nil })
		var se api.StatusError
		if !errors.As(err, &se) || se.StatusCode != 404 || se.ErrorMessage != "model 'nope' not found" {
			t.Errorf("got %v, want 404 model 'nope' not found", err)
		}
	})
	t.Run("ListAndVersionAreProxied", func(t *testing.T) {
		list, err := client.List(ctx)
		if err != nil || len(list.Models) < 3 {
			t.Errorf("List: %+v, %v", list, err)
		}
		if v, err := client.Version(ctx); err != nil || v != ollamatest.Version {
			t.Errorf("Version: %q, %v", v, err)
		}
	})
	t.Run("OpenAIChatStreams", func(t *testing.T) {
		oc := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
		stream := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:    "m3",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("tell me a story")},
		})
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil || len(acc.Choices) == 0 || !strings.Contains(acc.Choices[0].Message.Content, "tell me a story") {
			t.Errorf("got %+v, %v", acc.Choices, err)
		}
	})
	t.Run("DisconnectCancelsTheJob", func(t *testing.T) {
		w.fake.HangNext(1)
		cctx, ccancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			errc <- client.Chat(cctx, &api.ChatRequest{Model: "m1", Messages: []api.Message{{Role: "user", Content: "hang"}}}, func(api.ChatResponse) error { return nil })
		}()
		waitFor(t, "the job to reach the target", func() bool { return w.fake.InFlight() == 1 })
		ccancel()
		<-errc
		waitFor(t, "the job to be canceled", func() bool {
			return slices.ContainsFunc(w.records("failed"), func(r *spool.Record) bool {
				return r.Error != nil && r.Error.Kind == spool.KindCanceled
			})
		})
		waitFor(t, "the target to see the request end", func() bool { return w.fake.InFlight() == 0 })
	})
	t.Run("JobsAPILongPoll", func(t *testing.T) {
		code, header, body := runtest.Call(t, time.Minute, "POST", base+"/jobs", chatJob("m1", "queued over http"))
		if code != http.StatusAccepted {
			t.Fatalf("POST /jobs: %d %s", code, body)
		}
		_, _, body = runtest.Call(t, time.Minute, "GET", base+header.Get("Location")+"?wait=30s", nil)
		r := runtest.Decode[spool.Record](t, body)
		if r.State != spool.StateDone || !strings.Contains(answer(t, &r), "queued over http") {
			t.Errorf("got %+v", r)
		}
	})
}
