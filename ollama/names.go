package ollama

import (
	"path"
	"strings"
)

// The parts Ollama fills in when a model name leaves them out.
const (
	defaultHost      = "registry.ollama.ai"
	defaultNamespace = "library"
	defaultTag       = "latest"
)

// NormalizeModel returns the canonical form of a model name, for comparisons
// and map keys: Ollama's shortest display form ("llama3.2" and
// "registry.ollama.ai/library/llama3.2:latest" both become "llama3.2:latest";
// "hf.co/user/repo:Q4_K_M" keeps its host and namespace), lowercased because
// Ollama matches names case-insensitively. An empty name stays empty.
func NormalizeModel(name string) string { return strings.ToLower(DisplayName(name)) }

// DisplayName returns Ollama's shortest display form of a model name
// (model.Name.DisplayShortest), as /api/ps and /api/tags show it: the tag
// always, the namespace unless it is "library", the host unless it is
// "registry.ollama.ai". Case is kept. An empty name stays empty.
func DisplayName(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		return ""
	}
	host, namespace, model, tag := splitModel(name)
	var b strings.Builder
	switch {
	case !strings.EqualFold(host, defaultHost):
		b.WriteString(host + "/" + namespace + "/")
	case !strings.EqualFold(namespace, defaultNamespace):
		b.WriteString(namespace + "/")
	}
	b.WriteString(model + ":" + tag)
	return b.String()
}

// SameModel reports whether two names denote the same model for Ollama.
func SameModel(a, b string) bool { return NormalizeModel(a) == NormalizeModel(b) }

// MatchModel reports whether model, in canonical form (NormalizeModel's),
// matches one of the path.Match patterns, each tried in canonical form and
// as written. No patterns at all match every model.
func MatchModel(patterns []string, model string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(NormalizeModel(p), model); ok {
			return true
		}
		if ok, _ := path.Match(p, model); ok {
			return true
		}
	}
	return false
}

// splitModel parses [scheme://][host/][namespace/]model[:tag] the way
// Ollama's model.ParseName does and fills in the defaults.
func splitModel(s string) (host, namespace, model, tag string) {
	// "/" cannot occur in a tag, so a ":" after the last "/" starts the tag.
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		s, tag = s[:i], s[i+1:]
	}
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s, model = s[:i], s[i+1:]
		if j := strings.LastIndex(s, "/"); j >= 0 {
			host, namespace = s[:j], s[j+1:]
		} else {
			namespace = s
		}
	} else {
		model = s
	}
	if _, h, ok := strings.Cut(host, "://"); ok {
		host = h
	}
	return orDefault(host, defaultHost), orDefault(namespace, defaultNamespace), model, orDefault(tag, defaultTag)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
