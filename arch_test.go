package eddy

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/eddybroker/eddy"

type listedPackage struct {
	ImportPath string
	Name       string
	Dir        string
	Doc        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Standard   bool
}

// listPackages runs `go list -json` over the module.
func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func under(path string, prefixes ...string) bool {
	r := rel(path)
	for _, p := range prefixes {
		if r == p || strings.HasPrefix(r, p+"/") {
			return true
		}
	}
	return false
}

// TestDependencyDirection enforces the layering of DESIGN.md §2.
func TestDependencyDirection(t *testing.T) {
	pkgs := listPackages(t)
	rules := []struct {
		from      []string // packages the rule applies to
		forbidden []string // module packages they may not depend on
		why       string
	}{
		{
			from:      []string{"transport", "plugins/abi", "appliance/record", "appliance/storage"},
			forbidden: []string{"appliance/broker", "appliance/node"},
			why:       "transport, the plugin ABI, records and storage sit below the broker",
		},
		{
			from:      []string{"sdk"},
			forbidden: []string{"appliance"},
			why:       "the SDKs ship to users and never carry broker code",
		},
		{
			from:      []string{"appliance/group", "appliance/replica"},
			forbidden: []string{"appliance/node", "appliance/broker", "transport"},
			why:       "pure cores know nothing of the driver or the wire",
		},
	}
	checked := 0
	for _, p := range pkgs {
		for _, r := range rules {
			if !under(p.ImportPath, r.from...) {
				continue
			}
			checked++
			for _, d := range p.Deps {
				if strings.HasPrefix(d, module+"/") && under(d, r.forbidden...) {
					t.Errorf("%s depends on %s: %s", rel(p.ImportPath), rel(d), r.why)
				}
			}
		}
		if under(p.ImportPath, "plugins/abi") {
			for _, imp := range p.Imports {
				if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
					t.Errorf("plugins/abi imports %s: the ABI package uses the standard library only", imp)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package matched any rule; the layout changed and the test is stale")
	}
}

// pureCores are the state machines that take time as input and do no I/O.
var pureCores = []string{"appliance/group", "appliance/replica", "appliance/controller/fsm"}

// TestPureCores checks that pure cores import no net or os, start no
// goroutine and never read the clock.
func TestPureCores(t *testing.T) {
	for _, p := range listPackages(t) {
		if !under(p.ImportPath, pureCores...) {
			continue
		}
		for _, imp := range p.Imports {
			if imp == "os" || imp == "net" || strings.HasPrefix(imp, "net/") || imp == "os/exec" {
				t.Errorf("%s imports %s; pure cores do no I/O", rel(p.ImportPath), imp)
			}
		}
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.GoStmt:
					t.Errorf("%s: go statement in a pure core", fset.Position(n.Pos()))
				case *ast.SelectorExpr:
					if id, ok := n.X.(*ast.Ident); ok && id.Name == "time" && (n.Sel.Name == "Now" || n.Sel.Name == "Since" || n.Sel.Name == "After" || n.Sel.Name == "NewTimer" || n.Sel.Name == "Sleep") {
						t.Errorf("%s: time.%s in a pure core; pass time in", fset.Position(n.Pos()), n.Sel.Name)
					}
				}
				return true
			})
		}
	}
}

// TestPackageDocs checks that every package has a doc comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s (%s) has no doc comment", rel(p.ImportPath), p.Name)
		}
	}
}
