package functions

import "encoding/json"

// Info describes a function as `hopper functions --json` and the front's
// GET /functions show it: its whole definition, templates as written.
type Info struct {
	Name        string             `json:"name"`
	Description string             `json:"description,omitempty"`
	Model       string             `json:"model"`
	Endpoint    string             `json:"endpoint"`
	System      string             `json:"system,omitempty"`
	Prompt      string             `json:"prompt,omitempty"`
	Messages    []MessageInfo      `json:"messages,omitempty"`
	Vars        map[string]VarInfo `json:"vars"`
	Schema      bool               `json:"schema"`
	Format      json.RawMessage    `json:"format,omitempty"`
	Options     map[string]any     `json:"options,omitempty"`
	KeepAlive   string             `json:"keep_alive,omitempty"`
	Timeout     string             `json:"timeout,omitempty"`
	MaxAge      string             `json:"max_age,omitempty"`
	MaxAttempts int                `json:"max_attempts,omitempty"`
	Priority    int                `json:"priority,omitempty"`
	Webhook     string             `json:"webhook,omitempty"`
	Source      string             `json:"source"`
}

// MessageInfo is one message template of a function.
type MessageInfo struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// VarInfo is one var a function takes.
type VarInfo struct {
	Required    bool   `json:"required"`
	Default     any    `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
}

// Info describes f.
func (f *Function) Info() Info {
	info := Info{
		Name: f.Name, Description: f.Description, Model: f.Model, Endpoint: f.Endpoint,
		System: f.System, Prompt: f.Prompt, Vars: map[string]VarInfo{},
		Schema: f.HasSchema(), Format: f.Format, Options: f.Options, KeepAlive: f.KeepAlive,
		MaxAttempts: f.MaxAttempts, Priority: f.Priority, Webhook: f.Webhook, Source: f.Source,
	}
	for _, m := range f.Messages {
		info.Messages = append(info.Messages, MessageInfo(m))
	}
	for name, v := range f.Vars {
		info.Vars[name] = VarInfo(v)
	}
	if f.Timeout > 0 {
		info.Timeout = f.Timeout.String()
	}
	if f.MaxAge > 0 {
		info.MaxAge = f.MaxAge.String()
	}
	return info
}
