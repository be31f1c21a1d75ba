package auth

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/finelog/finelog/internal/clock"
)

// Every cause{...} literal in the package's source must be in
// denialCauses, or its series appears only after the first denial.
func TestEveryCauseIsPreRegistered(t *testing.T) {
	listed := map[string]bool{}
	for _, c := range denialCauses {
		listed[c.label] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := cl.Type.(*ast.Ident); !ok || id.Name != "cause" || len(cl.Elts) == 0 {
				return true
			}
			lit, ok := cl.Elts[0].(*ast.BasicLit)
			if !ok {
				return true
			}
			label, _ := strconv.Unquote(lit.Value)
			found++
			if !listed[label] {
				t.Errorf("%s: cause %q is not in denialCauses", fset.Position(cl.Pos()), label)
			}
			return true
		})
	}
	if found < len(denialCauses) {
		t.Fatalf("found %d cause literals, fewer than the %d listed: the scan is broken", found, len(denialCauses))
	}
}

func TestDeniedSeriesExistBeforeAnyDenial(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	h := Middleware(LoopbackOnly(clk), MiddlewareOptions{Registerer: reg, Clock: clk})(http.NotFoundHandler())
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/x", nil)
	req.RemoteAddr = "127.0.0.1:5"
	h.ServeHTTP(rec, req) // admitted: no denial yet
	n, err := testutil.GatherAndCount(reg, "finelog_auth_denied_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(denialCauses) {
		t.Fatalf("%d finelog_auth_denied_total series before any denial, want %d (one per reason)", n, len(denialCauses))
	}
}
