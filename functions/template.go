package functions

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
)

// templateFuncs are the functions templates may call besides text/template's
// own: {{json .x}} writes a var as JSON, {{join ", " .tags}} joins a list,
// and trim, upper and lower work on text.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := jsonfmt.Marshal(v)
		return string(b), err
	},
	"join": func(sep string, list any) (string, error) {
		v := reflect.ValueOf(list)
		if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
			return "", fmt.Errorf("join wants a list, got %T", list)
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(parts, sep), nil
	},
	"trim":  strings.TrimSpace,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

// parseTemplate parses text as the template called name (the field it came
// from: "prompt", "messages[0].content"). Missing map keys are errors when
// it runs.
func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s", templateError(name, err))
	}
	return t, nil
}

// templateError rewrites text/template's "template: prompt:3:7: executing
// "prompt" at <.x>: ..." as "line 3, column 7, at <.x>: ...".
func templateError(name string, err error) string {
	msg := goTypes.Replace(err.Error())
	rest, ok := strings.CutPrefix(msg, "template: "+name+":")
	if !ok {
		return msg
	}
	pos, rest, ok := strings.Cut(rest, ": ")
	if !ok {
		return msg
	}
	where := "line " + pos
	if line, col, ok := strings.Cut(pos, ":"); ok {
		where = "line " + line + ", column " + col
	}
	if at, ok := strings.CutPrefix(rest, fmt.Sprintf("executing %q at ", name)); ok {
		if node, after, ok := strings.Cut(at, ": "); ok {
			return where + ", at " + node + ": " + after
		}
	}
	return where + ": " + rest
}

// goTypes names the Go types of decoded JSON vars as JSON does.
var goTypes = strings.NewReplacer(
	"map[string]interface {}", "a JSON object",
	"[]interface {}", "a JSON array",
	"json.Number", "a number",
)

// varsUsed lists the vars template t reads from its data: {{.x}} where dot
// is still the vars (outside range and with), and {{$.x}} anywhere.
// Definitions made with {{define}} are not followed.
func varsUsed(t *template.Template) []string {
	seen := map[string]bool{}
	var walk func(n parse.Node, root bool)
	// branch walks an if, a range or a with; its list runs with dot the
	// vars only when listRoot.
	branch := func(b *parse.BranchNode, root, listRoot bool) {
		walk(b.Pipe, root)
		walk(b.List, listRoot)
		walk(b.ElseList, root)
	}
	walk = func(n parse.Node, root bool) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				walkEach(walk, n.Nodes, root)
			}
		case *parse.ActionNode:
			walk(n.Pipe, root)
		case *parse.PipeNode:
			if n != nil {
				walkEach(walk, n.Cmds, root)
			}
		case *parse.CommandNode:
			walkEach(walk, n.Args, root)
		case *parse.FieldNode:
			if root {
				seen[n.Ident[0]] = true
			}
		case *parse.VariableNode:
			if len(n.Ident) > 1 && n.Ident[0] == "$" {
				seen[n.Ident[1]] = true
			}
		case *parse.ChainNode:
			walk(n.Node, root)
		case *parse.IfNode:
			branch(&n.BranchNode, root, root)
		case *parse.RangeNode:
			branch(&n.BranchNode, root, false)
		case *parse.WithNode:
			branch(&n.BranchNode, root, false)
		case *parse.TemplateNode:
			walk(n.Pipe, root)
		}
	}
	if t.Tree != nil {
		walk(t.Tree.Root, true)
	}
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// walkEach calls walk on each of nodes.
func walkEach[N parse.Node](walk func(parse.Node, bool), nodes []N, root bool) {
	for _, n := range nodes {
		walk(n, root)
	}
}
