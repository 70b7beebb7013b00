package ollamatest

import (
	"testing"

	"github.com/hopper-dev/hopper/ollama"
)

// Client is an ollama.Client for the server at url (this fake's URL, or a
// real Ollama's), failing tb when url is not one.
func Client(tb testing.TB, url string) *ollama.Client {
	tb.Helper()
	c, err := ollama.New(url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Client is an ollama.Client for this server.
func (s *Server) Client() *ollama.Client { return Client(s.tb, s.URL) }

// CheckSlots fails tb for each of fakes (by name) that ever ran requests
// for two models at once, as a lane never should, or more than slots
// requests at once, and returns how many loads they made in all.
func CheckSlots(tb testing.TB, fakes map[string]*Server, slots int) (loads int) {
	tb.Helper()
	for name, f := range fakes {
		loads += f.Loads()
		if got := f.MaxModelsInFlight(); got > 1 {
			tb.Errorf("target %s had %d models in flight at once, want 1", name, got)
		}
		if got := f.MaxInFlight(); got > slots {
			tb.Errorf("target %s had %d requests in flight, over its %d slots", name, got, slots)
		}
	}
	return loads
}
