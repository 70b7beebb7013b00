package httpfront

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// Idempotency keys (Stripe's semantics): a key and the hash of the request
// body it came with are kept for KeyTTL as one file per key under
// SPOOL/.hopper/idempotency/, so they survive restarts and are shared by
// every front on the spool. A key is claimed by link(2)ing a complete file
// into place, which fails if another request claimed it first.
const (
	// KeyTTL is how long an idempotency key names its job.
	KeyTTL = 24 * time.Hour
	// MaxKeyLen is the longest Idempotency-Key accepted, as Stripe's.
	MaxKeyLen = 255
	// keyInFlight is how long a claimed key whose job does not exist yet
	// is taken to mean a request still being handled.
	keyInFlight = 30 * time.Second
	keyDir      = spool.DirState + "/idempotency"
)

// keyEntry is the file kept for one idempotency key.
type keyEntry struct {
	Key       string    `json:"key"`
	ID        string    `json:"id"`
	BodyHash  string    `json:"body_sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// keyStore keeps idempotency keys in the spool's state directory.
type keyStore struct {
	root     *os.Root
	now      func() time.Time
	fileMode fs.FileMode
	fsync    bool
}

func newKeyStore(sp *spool.Spool, now func() time.Time) (*keyStore, error) {
	o := sp.Options()
	if err := sp.Root().MkdirAll(keyDir, o.DirMode); err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	return &keyStore{root: sp.Root(), now: now, fileMode: o.FileMode, fsync: o.Fsync}, nil
}

// keyFile names a key's file: a hash, since keys are arbitrary text.
func keyFile(key string) string {
	sum := sha256.Sum256([]byte(key))
	return keyDir + "/" + hex.EncodeToString(sum[:]) + ".json"
}

// bodyHash hashes a JSON body in a canonical form (keys sorted, no
// insignificant space), so re-encoding the same job is the same body.
func bodyHash(body []byte) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	canon := body
	if dec.Decode(&v) == nil {
		if b, err := json.Marshal(v); err == nil {
			canon = b
		}
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}

// claim records key for job id unless the key is already held. It returns
// the entry that holds it, or nil when the key is now id's. An entry older
// than KeyTTL no longer holds its key and is replaced.
func (k *keyStore) claim(key, hash, id string) (*keyEntry, error) {
	name := keyFile(key)
	e := &keyEntry{Key: key, ID: id, BodyHash: hash, CreatedAt: k.now().UTC()}
	for try := 0; try < 4; try++ {
		err := k.create(name, e)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		old, err := k.read(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // released meanwhile
		case err != nil:
			// An unreadable entry holds nothing: replace it.
			k.root.Remove(name)
			continue
		case k.now().Sub(old.CreatedAt) >= KeyTTL:
			k.root.Remove(name)
			continue
		}
		return old, nil
	}
	return nil, fmt.Errorf("idempotency key: could not claim %q", key)
}

// release forgets key, for a request that failed after claiming it.
func (k *keyStore) release(key string) {
	_ = k.root.Remove(keyFile(key))
}

// create writes e to name atomically, failing with fs.ErrExist if name
// exists: the file is written in full under a temporary name, then linked.
func (k *keyStore) create(name string, e *keyEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := keyDir + "/.tmp-" + hex.EncodeToString(rnd[:])
	f, err := k.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, k.fileMode)
	if err != nil {
		return err
	}
	defer k.root.Remove(tmp)
	_, err = f.Write(append(data, '\n'))
	if err == nil && k.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := k.root.Link(tmp, name); err != nil {
		return err
	}
	if k.fsync {
		return k.syncDir()
	}
	return nil
}

func (k *keyStore) syncDir() error {
	d, err := k.root.Open(keyDir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

func (k *keyStore) read(name string) (*keyEntry, error) {
	data, err := k.root.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var e keyEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	if e.ID == "" {
		return nil, errors.New("no job ID")
	}
	return &e, nil
}

// sweep removes keys older than KeyTTL and temporary files left by a
// crash, and returns how many it removed.
func (k *keyStore) sweep() int {
	entries, err := fs.ReadDir(k.root.FS(), keyDir)
	if err != nil {
		return 0
	}
	n := 0
	now := k.now()
	for _, de := range entries {
		name := keyDir + "/" + de.Name()
		if strings.HasPrefix(de.Name(), ".tmp-") {
			if fi, err := de.Info(); err == nil && now.Sub(fi.ModTime()) > time.Hour {
				k.root.Remove(name)
			}
			continue
		}
		e, err := k.read(name)
		if err == nil && now.Sub(e.CreatedAt) < KeyTTL {
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Unreadable: judge it by its age.
			if fi, serr := de.Info(); serr != nil || now.Sub(fi.ModTime()) < KeyTTL {
				continue
			}
		}
		if k.root.Remove(name) == nil {
			n++
		}
	}
	return n
}
