package cli

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLINeverReadsTheCASecret: the CLI takes the endpoint's CA from the
// published ConfigMap (endpointInfo). The CA Secret holds the CA's key; a
// CLI reading it would need, and spread, rights to the key. Only `edgefleet
// server` (server.go, which runs the manager) may name it.
func TestCLINeverReadsTheCASecret(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "server.go" {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == "CASecretName" {
				t.Errorf("%s names the CA Secret: read the CA from ConfigMap edgefleet-system/edgefleet-endpoint (endpointInfo)", fset.Position(id.Pos()))
			}
			return true
		})
	}
}
