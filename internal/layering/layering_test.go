// Package layering checks the repository's architecture: which packages
// may import which (data flows one way, one package per pipeline stage),
// and that no library package names a command-line flag, since library
// users have no flags and the command phrases errors in its own terms.
package layering

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/onnx-cria/onnx-cria/"

// allowed lists, for every library package, the packages of this module it
// may import (besides internal/ helpers, which any may use).
var allowed = map[string][]string{
	"onnxio/ops": {},
	"onnxio":     {"onnxio/onnxpb", "onnxio/ops"},
	"dataset":    {},
	"spectral":   {},
	"ort":        {"onnxio", "onnxio/onnxpb", "dataset"},
	"evaluate":   {"onnxio", "ort", "dataset"},
	"capture":    {"onnxio", "onnxio/onnxpb", "ort", "dataset"},
	"rewrite":    {"onnxio", "onnxio/onnxpb", "onnxio/ops"},
	"autodiff":   {"onnxio", "onnxio/onnxpb", "onnxio/ops", "ort", "dataset"},
	"finetune":   {"onnxio", "ort", "dataset", "evaluate", "autodiff"},
	"recover":    {"onnxio", "onnxio/onnxpb", "ort", "dataset", "evaluate", "rewrite", "autodiff", "finetune"},
	"shrink":     {"onnxio", "onnxio/onnxpb", "ort", "dataset", "evaluate", "capture", "spectral", "rewrite", "autodiff", "recover"},
}

// files parses the non-test Go files of a package directory.
func files(t *testing.T, dir string) (*token.FileSet, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*ast.File
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no Go files", dir)
	}
	return fset, out
}

// The import graph flows one way: onnxio <- ort <- {capture, evaluate};
// autodiff <- {finetune, shrink}; recover <- shrink; nothing imports cmd.
func TestImports(t *testing.T) {
	for pkg, ok := range allowed {
		_, fs := files(t, filepath.Join("../..", pkg))
		for _, f := range fs {
			for _, im := range f.Imports {
				p, _ := strconv.Unquote(im.Path.Value)
				if !strings.HasPrefix(p, module) {
					continue
				}
				dep := strings.TrimPrefix(p, module)
				if strings.HasPrefix(dep, "internal/") || slices.Contains(ok, dep) {
					continue
				}
				t.Errorf("%s imports %s, which the layering does not allow", pkg, dep)
			}
		}
	}
}

var flagLike = regexp.MustCompile(`(^|[\s"'(])--[a-z][a-z-]*`)

// No library package names a command-line flag in a string.
func TestNoFlagsInLibraries(t *testing.T) {
	for pkg := range allowed {
		fset, fs := files(t, filepath.Join("../..", pkg))
		for _, f := range fs {
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				if s, err := strconv.Unquote(lit.Value); err == nil && flagLike.MatchString(s) {
					t.Errorf("%s: %s names a flag", fset.Position(lit.Pos()), lit.Value)
				}
				return true
			})
		}
	}
}
