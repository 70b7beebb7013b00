package spool

import (
	"os"
	"path/filepath"
	"testing"
)

// FrontAlive tells a front that holds its lock from one that released it
// or was killed (its lock file left behind, unlocked).
func TestFrontAlive(t *testing.T) {
	s := newSpool(t)
	other, err := Open(s.Path(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	id, release, err := other.HoldFront()
	if err != nil {
		t.Fatal(err)
	}
	if !s.FrontAlive(id) {
		t.Error("a front holding its lock: FrontAlive false")
	}
	release()
	if s.FrontAlive(id) {
		t.Error("a front that released its lock: FrontAlive true")
	}
	// A killed front's lock file stays, unlocked.
	leftover := filepath.Join(s.Path(), DirState, frontLock(id))
	if err := os.WriteFile(leftover, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if s.FrontAlive(id) {
		t.Error("a killed front: FrontAlive true")
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("the killed front's lock file: got %v, want it removed", err)
	}
	if s.FrontAlive("../runner") {
		t.Error("FrontAlive of a name that is no front: true")
	}
}
