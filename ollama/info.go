package ollama

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// get fetches path and decodes its JSON answer into v.
func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(path), nil)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("get %s: %w", path, ctx.Err())
		}
		return &JobFailedError{Status: resp.StatusCode, Message: "get " + path + ": bad answer", Err: err}
	}
	return nil
}

// Version returns the server's version from GET /api/version.
func (c *Client) Version(ctx context.Context) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	if err := c.get(ctx, "/api/version", &v); err != nil {
		return "", err
	}
	return v.Version, nil
}

// RunningModel is one model the server holds in memory, from GET /api/ps.
type RunningModel struct {
	Name          string       `json:"name"`
	Model         string       `json:"model"`
	Size          int64        `json:"size"`
	Digest        string       `json:"digest"`
	Details       ModelDetails `json:"details"`
	ExpiresAt     time.Time    `json:"expires_at"`
	SizeVRAM      int64        `json:"size_vram"`
	ContextLength int          `json:"context_length"`
}

// ModelDetails describes a model's format and size class.
type ModelDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// Running lists the models the server has loaded (GET /api/ps).
func (c *Client) Running(ctx context.Context) ([]RunningModel, error) {
	return models[RunningModel](ctx, c, "/api/ps")
}

// Model is one model the server has installed, from GET /api/tags.
type Model struct {
	Name       string       `json:"name"`
	Model      string       `json:"model"`
	ModifiedAt time.Time    `json:"modified_at"`
	Size       int64        `json:"size"`
	Digest     string       `json:"digest"`
	Details    ModelDetails `json:"details"`
}

// Tags lists the models the server has installed (GET /api/tags).
func (c *Client) Tags(ctx context.Context) ([]Model, error) {
	return models[Model](ctx, c, "/api/tags")
}

// models reads the list of models that GET path answers.
func models[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var v struct {
		Models []T `json:"models"`
	}
	if err := c.get(ctx, path, &v); err != nil {
		return nil, err
	}
	return v.Models, nil
}
