package httpfront

// WithHooks returns cfg with test hooks: onWait is called with a job's ID
// when a request starts waiting on it (before it looks at the job), and
// onLanded once a record landing in done/ or failed/ has been observed.
func WithHooks(cfg Config, onWait, onLanded func(id string)) Config {
	cfg.hooks = testHooks{onWait: onWait, onLanded: onLanded}
	return cfg
}
