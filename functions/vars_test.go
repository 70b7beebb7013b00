package functions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVars(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(path, []byte("from a file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ParseVars([]string{"a=1", "b=x=y", "c=@" + path, "d=@-", "e=@@handle", "f="}, strings.NewReader("from stdin"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":"1","b":"x=y","c":"from a file\n","d":"from stdin","e":"@handle","f":""}`
	if string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestParseVarsRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	binary := filepath.Join(dir, "bin")
	if err := os.WriteFile(binary, []byte{0xff, 0xfe, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"novalue"}, "want name=value"},
		{[]string{"=x"}, "want name=value"},
		{[]string{"a=1", "a=2"}, "--var a is given twice"},
		{[]string{"a=@" + filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"a=@" + binary}, "is not UTF-8 text"},
		{[]string{"a=@-", "b=@-"}, "standard input can be read only once"},
	}
	for _, c := range cases {
		_, err := ParseVars(c.args, strings.NewReader("x"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseVars(%q) = %v, want an error saying %q", c.args, err, c.want)
		}
	}
}
