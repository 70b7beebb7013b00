package ollama_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestDoFoldsOllamaStreams(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		chunks []string
		want   string
	}{
		{
			name: "ChatJoinsContentAndThinkingAndCollectsToolCalls",
			path: "/api/chat",
			chunks: []string{
				`{"model":"qwen3","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"","thinking":"Let me "},"done":false}`,
				`{"model":"qwen3","created_at":"2026-01-01T00:00:01Z","message":{"role":"assistant","content":"","thinking":"think."},"done":false}`,
				`{"model":"qwen3","created_at":"2026-01-01T00:00:02Z","message":{"role":"assistant","content":"Hello"},"done":false,"logprobs":[{"token":"Hello","logprob":-0.1}]}`,
				`{"model":"qwen3","created_at":"2026-01-01T00:00:03Z","message":{"role":"assistant","content":", <world> & \"you\""},"done":false,"logprobs":[{"token":",","logprob":-0.2}]}`,
				`{"model":"qwen3","created_at":"2026-01-01T00:00:04Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}`,
				`{"model":"qwen3","created_at":"2026-01-01T00:00:05Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_2","function":{"index":1,"name":"get_time","arguments":{}}}]},"done":false}`,
				`{"model":"qwen3","created_at":"2026-01-01T00:00:06Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5,"load_duration":1,"prompt_eval_count":7,"prompt_eval_duration":2,"eval_count":4,"eval_duration":3}`,
			},
			want: `{"model":"qwen3","created_at":"2026-01-01T00:00:06Z","message":{"role":"assistant","content":"Hello, \u003cworld\u003e \u0026 \"you\"","thinking":"Let me think.","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}},{"id":"call_2","function":{"index":1,"name":"get_time","arguments":{}}}]},"done":true,"done_reason":"stop","logprobs":[{"token":"Hello","logprob":-0.1},{"token":",","logprob":-0.2}],"total_duration":5,"load_duration":1,"prompt_eval_count":7,"prompt_eval_duration":2,"eval_count":4,"eval_duration":3}`,
		},
		{
			name: "ChatWithoutThinkingHasNoThinkingField",
			path: "/api/chat",
			chunks: []string{
				`{"model":"tiny","created_at":"t1","message":{"role":"assistant","content":"a"},"done":false}`,
				`{"model":"tiny","created_at":"t2","message":{"role":"assistant","content":" b"},"done":false}`,
				`{"model":"tiny","created_at":"t3","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","total_duration":9,"unknown_future_field":{"x":1}}`,
			},
			want: `{"model":"tiny","created_at":"t3","message":{"role":"assistant","content":"a b"},"done":true,"done_reason":"length","total_duration":9,"unknown_future_field":{"x":1}}`,
		},
		{
			name: "GenerateJoinsResponseAndThinkingAndKeepsContext",
			path: "/api/generate",
			chunks: []string{
				`{"model":"tiny","created_at":"t1","response":"","thinking":"hmm","done":false}`,
				`{"model":"tiny","created_at":"t2","response":"The sky","done":false}`,
				`{"model":"tiny","created_at":"t3","response":" is blue.","done":false}`,
				`{"model":"tiny","created_at":"t4","response":"","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10,"load_duration":2,"prompt_eval_count":3,"prompt_eval_duration":1,"eval_count":3,"eval_duration":5}`,
			},
			want: `{"model":"tiny","created_at":"t4","response":"The sky is blue.","thinking":"hmm","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10,"load_duration":2,"prompt_eval_count":3,"prompt_eval_duration":1,"eval_count":3,"eval_duration":5}`,
		},
		{
			name: "ChunksWithoutDoneAreNotFinal",
			path: "/api/generate",
			chunks: []string{
				`{}`,
				`{"model":"tiny","response":"a","done":null}`,
				`{"model":"tiny","response":"b"}`,
				`{"model":"tiny","response":"","done":true}`,
			},
			want: `{"model":"tiny","response":"ab","done":true}`,
		},
		{
			name: "SingleDoneChunkComesBackAsIs",
			path: "/api/generate",
			chunks: []string{
				`{"model":"tiny","created_at":"t","response":"all at once","done":true,"done_reason":"stop"}`,
			},
			want: `{"model":"tiny","created_at":"t","response":"all at once","done":true,"done_reason":"stop"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
				lines := make([]string, len(tt.chunks))
				for i, ch := range tt.chunks {
					lines[i] = ch + "\n"
				}
				// What follows the final chunk is ignored.
				writeLines(w, "application/x-ndjson", append(lines, "\n")...)
			})
			var seen []string
			out, err := c.Do(t.Context(), tt.path, []byte(`{}`), func(b []byte) error {
				seen = append(seen, string(b))
				return nil
			})
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if string(out) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", out, tt.want)
			}
			if strings.Join(seen, "\n") != strings.Join(tt.chunks, "\n") {
				t.Errorf("onChunk saw %q, want %q", seen, tt.chunks)
			}
		})
	}
}

func TestDoFoldsOpenAIEventStreams(t *testing.T) {
	tests := []struct {
		name   string
		events string
		want   string
		chunks int
	}{
		{
			name: "ChatCompletionJoinsDeltasAndTakesUsageFromTheLastChunk",
			events: `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"ponder"},"finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}

: a comment line

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"lo"},"finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"tiny","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}

data: [DONE]

`,
			want:   `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Hello","reasoning":"ponder"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
			chunks: 5,
		},
		{
			name: "ToolCallDeltasAreMergedByIndex",
			events: "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\r\n\r\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}\r\n\r\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\r\n\r\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\r\n\r\n" +
				"data: [DONE]\r\n\r\n",
			want:   `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_a","index":0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_b","index":1,"type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
			chunks: 4,
		},
		{
			name: "OllamaStyleWholeToolCallsWithTheSameIndexStaySeparate",
			events: `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_x","index":0,"type":"function","function":{"name":"a","arguments":"{}"}}]},"finish_reason":null}]}

data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_y","index":0,"type":"function","function":{"name":"b","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}

data: [DONE]
`,
			want:   `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_x","index":0,"type":"function","function":{"name":"a","arguments":"{}"}},{"id":"call_y","index":0,"type":"function","function":{"name":"b","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
			chunks: 2,
		},
		{
			name: "TextCompletionJoinsText",
			events: `data: {"id":"cmpl-9","object":"text_completion","created":5,"choices":[{"text":"The","index":0,"finish_reason":null}],"model":"tiny","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}

data: {"id":"cmpl-9","object":"text_completion","created":5,"choices":[{"text":" end","index":0,"finish_reason":null}],"model":"tiny","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}

data: {"id":"cmpl-9","object":"text_completion","created":5,"choices":[{"text":"","index":0,"finish_reason":"length"}],"model":"tiny","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}

data: {"id":"cmpl-9","object":"text_completion","created":5,"choices":[],"model":"tiny","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}

data: [DONE]

`,
			want:   `{"id":"cmpl-9","object":"text_completion","created":5,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"text":"The end","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}`,
			chunks: 4,
		},
		{
			name:   "MultiLineDataIsJoined",
			events: "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\ndata: \"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]",
			want:   `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}]}`,
			chunks: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
				writeLines(w, "text/event-stream", tt.events)
			})
			n := 0
			out, err := c.Do(t.Context(), "/v1/chat/completions", []byte(`{}`), func([]byte) error {
				n++
				return nil
			})
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if string(out) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", out, tt.want)
			}
			if n != tt.chunks {
				t.Errorf("onChunk called %d times, want %d", n, tt.chunks)
			}
		})
	}
}
