package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitWritesNothingIntoTheCurrentDirectory: run from a source tree,
// init and serve put the spool, config and hooks under the XDG directories
// and say where.
func TestInitWritesNothingIntoTheCurrentDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	cwd := filepath.Join(dir, "repo")
	if err := os.Mkdir(cwd, 0o750); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: cwd}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOPPER_") && !strings.HasPrefix(kv, "XDG_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	w.env = append(env, "HOME="+filepath.Join(dir, "home"))
	out := w.hopper("init")
	spoolDir := filepath.Join(dir, "home", ".local", "state", "hopper", "spool")
	conf := filepath.Join(dir, "home", ".config", "hopper", "hopper.yaml")
	hooksDir := filepath.Join(dir, "home", ".config", "hopper", "hooks")
	for _, p := range []string{spoolDir, conf, filepath.Join(hooksDir, "done.sample")} {
		if !strings.Contains(out, p) {
			t.Errorf("init does not print %s:\n%s", p, out)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("init did not write %s: %v", p, err)
		}
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("init wrote into the current directory: %v", entries)
	}
	if data, _ := os.ReadFile(conf); !strings.Contains(string(data), "\nspool: "+spoolDir+"\n") {
		t.Errorf("the written config does not name the spool")
	}
	again := w.hopper("init")
	if !strings.Contains(again, "kept as it was") {
		t.Errorf("a second init did not keep the config:\n%s", again)
	}
}

// TestInitRefusesADirectoryThatIsNotASpool: --spool / or $HOME never gets
// new/, cur/, tmp/ … unless --force.
func TestInitRefusesADirectoryThatIsNotASpool(t *testing.T) {
	w := newWorld(t)
	foreign := filepath.Join(w.dir, "home")
	writeFile(t, filepath.Join(foreign, ".bashrc"), "x", 0o640)
	for _, cmd := range [][]string{{"init", "--spool", foreign}, {"serve", "--spool", foreign}} {
		out, err := w.hopperErr(cmd...)
		if err == nil || !strings.Contains(out, "not a hopper spool") {
			t.Errorf("hopper %s: %v\n%s\nwant a refusal", strings.Join(cmd, " "), err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(foreign, "new")); err == nil {
		t.Errorf("new/ was created in a foreign directory")
	}
	w.hopper("init", "--spool", foreign, "--force")
	if _, err := os.Stat(filepath.Join(foreign, ".hopper")); err != nil {
		t.Errorf("--force did not make the spool: %v", err)
	}
}
