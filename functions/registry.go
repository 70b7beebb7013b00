package functions

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long the functions directory must be quiet after a change
// before Watch reloads it: an editor's save is several events.
const debounce = 200 * time.Millisecond

// Registry holds the current Set of functions, reloading it from its
// sources on request. It is safe for concurrent use: Get never blocks on a
// reload, and a reload that fails leaves the last good set in place.
type Registry struct {
	config map[string]any
	dir    string
	log    *slog.Logger

	cur      atomic.Pointer[Set]
	mu       sync.Mutex // serialises reloads; guards err
	err      error      // why the last reload failed; nil if it worked
	reloaded chan struct{}
}

// NewRegistry loads the functions from config (the functions: section of
// hopper.yaml) and dir (functions_dir), as Load does, and returns a Registry
// holding them. It fails if they do not load: there is no good set to keep.
func NewRegistry(config map[string]any, dir string, logger *slog.Logger) (*Registry, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s, err := Load(config, dir)
	if err != nil {
		return nil, err
	}
	r := &Registry{config: config, dir: dir, log: logger, reloaded: make(chan struct{}, 1)}
	r.cur.Store(s)
	return r, nil
}

// Get returns the current function called name.
func (r *Registry) Get(name string) (*Function, bool) { return r.cur.Load().Get(name) }

// Lookup returns the current function called name, or an *InputError saying
// there is none (see Set.Lookup).
func (r *Registry) Lookup(name string) (*Function, error) { return r.cur.Load().Lookup(name) }

// Current returns the current set. It does not change under the caller:
// a reload replaces it with another.
func (r *Registry) Current() *Set { return r.cur.Load() }

// Err returns why the last reload failed, or nil if it worked: the
// functions in use are then older than the files.
func (r *Registry) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Reloaded is signalled (without blocking, coalesced) after every reload,
// whether it worked or not. It has room for one listener: a test, or a
// status display that shows Err.
func (r *Registry) Reloaded() <-chan struct{} { return r.reloaded }

// Reload loads the functions again. If they load, they replace the current
// set; if not, the current set stays, the problems are logged, and Reload
// returns them.
func (r *Registry) Reload() error {
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		select {
		case r.reloaded <- struct{}{}:
		default:
		}
	}()
	s, err := Load(r.config, r.dir)
	if err != nil {
		r.err = err
		r.log.Error("functions did not reload; keeping the last good set", "dir", r.dir, "err", err)
		return fmt.Errorf("reload functions: %w", err)
	}
	r.err = nil
	r.cur.Store(s)
	r.log.Info("functions loaded", "count", len(s.names), "dir", r.dir)
	return nil
}

// ReloadFrom is Reload with section as the functions: section of
// hopper.yaml from now on (after SIGHUP read the file again).
func (r *Registry) ReloadFrom(section map[string]any) error {
	r.mu.Lock()
	r.config = section
	r.mu.Unlock()
	return r.Reload()
}

// Watch reloads the functions whenever a function file in the directory
// changes, once the directory has been quiet for a moment, until ctx is
// done; then it returns nil. It reloads once when the watch begins, so no
// change made before it is missed. A directory that does not exist when
// Watch starts is not watched (Watch just waits for ctx); restart hopper
// once it exists.
func (r *Registry) Watch(ctx context.Context) error {
	if fi, err := os.Stat(r.dir); r.dir == "" || err != nil || !fi.IsDir() {
		if r.dir != "" && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("not watching functions_dir", "dir", r.dir, "err", err)
		}
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch functions: %w", err)
	}
	defer w.Close()
	if err := w.Add(r.dir); err != nil {
		return fmt.Errorf("watch functions %s: %w", r.dir, err)
	}
	_ = r.Reload() // logged; the last good set stays

	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if _, fn := fileFunction(filepath.Base(ev.Name)); (fn && ev.Op != fsnotify.Chmod) || ev.Name == r.dir {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("watching functions_dir", "dir", r.dir, "err", err)
			timer.Reset(debounce) // an overflow may have hidden a change
		case <-timer.C:
			_ = r.Reload()
		}
	}
}
