package e2ereal_test

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/hopper-dev/hopper/internal/realollama"
	"github.com/hopper-dev/hopper/spool"
)

// TestOfficialClientThroughHopper points Ollama's own Go client at hopper's
// front: every inference call is queued as a job, run by the runner against
// the real server and answered as the server answers; the read-only calls
// are proxied.
func TestOfficialClientThroughHopper(t *testing.T) {
	h := startHopper(t)
	base, _ := url.Parse(h.front())
	client := api.NewClient(base, http.DefaultClient)
	ctx := patient(t)
	msgs := []api.Message{{Role: "user", Content: "why is the sky blue"}}
	no := false

	var streamedText string
	t.Run("ChatStreams", func(t *testing.T) {
		var chunks int
		var text strings.Builder
		var last api.ChatResponse
		err := client.Chat(ctx, &api.ChatRequest{Model: "m1", Messages: msgs}, func(r api.ChatResponse) error {
			chunks++
			text.WriteString(r.Message.Content)
			last = r
			return nil
		})
		if err != nil || chunks < 2 || !last.Done || last.DoneReason == "" || last.EvalCount == 0 || last.Message.Role != "assistant" {
			t.Errorf("%d chunks, last %+v, err %v; want chunks ending in a done one with metrics", chunks, last, err)
		}
		streamedText = text.String()
	})
	t.Run("ChatUnstreamed", func(t *testing.T) {
		var got []api.ChatResponse
		err := client.Chat(ctx, &api.ChatRequest{Model: "m1", Messages: msgs, Stream: &no}, func(r api.ChatResponse) error {
			got = append(got, r)
			return nil
		})
		if err != nil || len(got) != 1 || !got[0].Done || got[0].Model != "m1" {
			t.Fatalf("got %+v, %v; want one done answer", got, err)
		}
		// Temperature 0: the same question gets the same answer either way.
		if got[0].Message.Content != streamedText {
			t.Errorf("unstreamed %q, streamed %q", got[0].Message.Content, streamedText)
		}
	})
	t.Run("Generate", func(t *testing.T) {
		for _, stream := range []*bool{nil, &no} {
			var n int
			var last api.GenerateResponse
			err := client.Generate(ctx, &api.GenerateRequest{Model: "m2", Prompt: "hello there", Stream: stream}, func(r api.GenerateResponse) error {
				n++
				last = r
				return nil
			})
			if err != nil || !last.Done || len(last.Context) == 0 || (stream == &no && n != 1) {
				t.Errorf("stream %v: %d answers, last %+v, %v", stream, n, last, err)
			}
		}
	})
	t.Run("Embed", func(t *testing.T) {
		r, err := client.Embed(ctx, &api.EmbedRequest{Model: "m3", Input: []string{"some text", "more text"}})
		if err != nil || len(r.Embeddings) != 2 || len(r.Embeddings[0]) != 64 || r.Model != "m3" {
			t.Errorf("got %+v, %v; want two 64-dimensional embeddings", r, err)
		}
	})
	t.Run("ListIsProxied", func(t *testing.T) {
		list, err := client.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range list.Models {
			names = append(names, m.Name)
		}
		slices.Sort(names)
		if want := []string{"m1:latest", "m2:latest", "m3:latest"}; !slices.Equal(names, want) {
			t.Errorf("List = %v, want %v", names, want)
		}
	})
	t.Run("ListRunningIsProxied", func(t *testing.T) {
		ps, err := client.ListRunning(ctx)
		if err != nil || len(ps.Models) != 1 || ps.Models[0].Name != "m3:latest" || ps.Models[0].ExpiresAt.Year() < 2200 {
			t.Errorf("ListRunning = %+v, %v; want m3:latest kept for ever (hopper's keep_alive -1)", ps, err)
		}
	})
	t.Run("VersionIsProxied", func(t *testing.T) {
		if v, err := client.Version(ctx); err != nil || v != realollama.Version {
			t.Errorf("Version = %q, %v; want %s", v, err, realollama.Version)
		}
	})
	t.Run("UnknownModelIsOllamas404", func(t *testing.T) {
		err := client.Chat(ctx, &api.ChatRequest{Model: "nope", Messages: msgs}, func(api.ChatResponse) error { return nil })
		var se api.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.ErrorMessage != "model 'nope' not found" {
			t.Errorf("got %v, want 404 model 'nope' not found", err)
		}
	})
	t.Run("EveryCallWasAJob", func(t *testing.T) {
		st, err := h.spool.Stats()
		if err != nil {
			t.Fatal(err)
		}
		// Chat ×2, generate ×2, embed; the unknown model failed.
		if st.Done != 5 || st.Failed != 1 {
			t.Errorf("spool: %d done, %d failed; want 5 and 1", st.Done, st.Failed)
		}
		recs, err := h.spool.List(spool.StateFailed)
		if err != nil || len(recs) != 1 || recs[0].Error == nil || recs[0].Error.Status != http.StatusNotFound {
			t.Errorf("failed records %v, %v; want the unknown model's 404", recs, err)
		}
		if n := len(h.w.proxy.requests("/api/chat")); n != 3 {
			t.Errorf("the server got %d chat requests, want 3", n)
		}
	})
}

// openAI is an OpenAI SDK client of the front's /v1 drop-in; it starts the
// front.
func (h *hopper) openAI() openai.Client {
	return openai.NewClient(option.WithBaseURL(h.front()+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

// TestOpenAIClientThroughHopper streams a chat completion with OpenAI's Go
// SDK through hopper's /v1 drop-in to the real server.
func TestOpenAIClientThroughHopper(t *testing.T) {
	h := startHopper(t)
	oc, ctx := h.openAI(), patient(t)
	// Ollama's OpenAI layer samples at temperature 1 unless told otherwise;
	// at 0 the two calls get one answer.
	params := openai.ChatCompletionNewParams{
		Model:       "m2",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("why is the sky blue")},
		Temperature: openai.Float(0),
	}
	stream := oc.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		chunks++
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil || chunks < 2 || len(acc.Choices) != 1 || acc.Choices[0].FinishReason == "" {
		t.Errorf("%d chunks, choices %+v, %v", chunks, acc.Choices, err)
	}
	plain, err := oc.Chat.Completions.New(ctx, params)
	if err != nil || len(plain.Choices) != 1 || plain.Usage.CompletionTokens == 0 {
		t.Fatalf("unstreamed: %v, %v", plain, err)
	}
	if got, want := plain.Choices[0].Message.Content, acc.Choices[0].Message.Content; got != want {
		t.Errorf("unstreamed %q, streamed %q; want one answer", got, want)
	}
}
