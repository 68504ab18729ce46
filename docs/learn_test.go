package docs_test

// These tests keep docs/learn.md true: every file, Go symbol, test function and doc
// heading its tables cite must exist, and every idea of the course must have its row,
// in order. The convention the cells follow is written at the bottom of learn.md.

import (
	"bufio"
	"fmt"
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

const learnFile = "learn.md"

// repoRoot is where the paths in learn.md are relative to.
const repoRoot = ".."

// learnColumns are the header cells of each table of learn.md, in order.
var learnColumns = []string{"#", "idea", "code", "test", "explained in", "look at", "see it"}

// The columns the tests read: the number and the idea, and the three whose cells are
// references, checked against the repository (code, test, explained in).
const (
	colNumber = 0
	colIdea   = 1
	colCode   = 2
	colTest   = 3
	colDocs   = 4
)

// learnIdeas are the ideas of the course, in order: row n's idea must contain the
// n-th phrase (ignoring case).
var learnIdeas = []string{
	"in-process background work",
	"producer, broker, consumer",
	"Redis lists",
	"Redis Pub/Sub",
	"Redis Streams and consumer groups",
	"task queue with retries and time limits",
	"polling its status",
	"periodic tasks",
	"task monitor",
	"database per service",
	"minimal service with health and an event",
	"404 from 503",
	"outbox",
	"API gateway",
	"service discovery and load balancing",
	"health checks",
	"compose with health-gated start",
	"saga with compensations",
	"circuit breaker",
	"exponential backoff and jitter",
}

// learnRow is one row of a table of learn.md.
type learnRow struct {
	line  int
	cells []string
}

func TestLearnCoversEveryIdeaInOrder(t *testing.T) {
	rows := readLearnRows(t)
	if len(rows) != len(learnIdeas) {
		t.Errorf("%s has %d rows, want one per idea: %d", learnFile, len(rows), len(learnIdeas))
	}
	for i, r := range rows {
		if i >= len(learnIdeas) {
			break
		}
		if n, err := strconv.Atoi(r.cells[colNumber]); err != nil || n != i+1 {
			t.Errorf("%s:%d: row %d is numbered %q", learnFile, r.line, i+1, r.cells[colNumber])
		}
		if idea := r.cells[colIdea]; !strings.Contains(strings.ToLower(idea), strings.ToLower(learnIdeas[i])) {
			t.Errorf("%s:%d: row %d is %q, want the idea %q", learnFile, r.line, i+1, idea, learnIdeas[i])
		}
	}
}

func TestLearnReferencesExist(t *testing.T) {
	rows := readLearnRows(t)
	if len(rows) == 0 {
		t.Fatalf("%s has no rows", learnFile)
	}
	c := newRefChecker(repoRoot)
	for _, r := range rows {
		for _, p := range c.row(r.cells) {
			t.Errorf("%s:%d (row %s): %s", learnFile, r.line, r.cells[colNumber], p)
		}
	}
}

// The checker itself: each kind of broken reference is caught, so that a green
// TestLearnReferencesExist means something.
func TestLearnCheckerCatchesBrokenReferences(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pkg/q/q.go", "package q\n\ntype Queue[T any] struct{}\n\nfunc (q *Queue[T]) Push(T) {}\n\nfunc New() {}\n\nconst Size = 1\n\nvar (\n\tA, B = 1, 2\n)\n")
	write("pkg/q/q_test.go", "package q\n\nimport \"testing\"\n\nfunc TestPush(t *testing.T) {}\n\nfunc helper() {}\n")
	write("docs/q.md", "# Queues\n\n## Pushing\n\n```sh\n# Not a heading\n```\n")
	write("deploy/c.yml", "depends_on:\n  condition: service_healthy\n")

	good := []string{"1", "an idea",
		"`pkg/q/q.go` `Queue`, `Queue.Push`, `New`, `Size` and `B`; `deploy/c.yml` `service_healthy`",
		"`pkg/q/q_test.go` `TestPush`",
		"`docs/q.md` \"Queues\", \"Pushing\"",
		"anything", "anything"}
	c := newRefChecker(root)
	if p := c.row(good); len(p) != 0 {
		t.Fatalf("a good row has problems: %q", p)
	}

	for _, tc := range []struct {
		col       int
		cell, why string
	}{
		{colCode, "`pkg/q/missing.go` `New`", "does not exist"},
		{colCode, "`pkg/q/q.go` `Pop`", "no func, method, type, const or var Pop"},
		{colCode, "`pkg/q/q.go` `Queue.Pop`", "no func, method, type, const or var Queue.Pop"},
		{colCode, "`pkg/q/q.go` `Stack.Push`", "no func, method, type, const or var Stack.Push"},
		{colCode, "`pkg/q/q.go`", "names no symbol"},
		{colCode, "`New` in `pkg/q/q.go`", "before any path"},
		{colCode, "nothing cited", "no reference"},
		{colCode, "`deploy/c.yml` `service_started`", "does not contain service_started"},
		{colCode, "`pkg/q/q.go` \"New\"", "a name is written in backticks"},
		{colTest, "`pkg/q/q_test.go` `TestPop`", "no test function TestPop"},
		{colTest, "`pkg/q/q_test.go` `helper`", "no test function helper"},
		{colTest, "`pkg/q/q.go` `New`", "not a _test.go file"},
		{colDocs, "`docs/q.md` \"Popping\"", `no heading "Popping"`},
		{colDocs, "`docs/q.md` \"Not a heading\"", `no heading "Not a heading"`},
		{colDocs, "`docs/q.md`", "names no heading"},
		{colDocs, "`docs/q.md` `Queues`", "a heading is written in double quotes"},
		{colDocs, "`pkg/q/q.go` \"Queues\"", "not a Markdown file"},
		{colDocs, "`docs/gone.md` \"Queues\"", "does not exist"},
		{colDocs, "`../outside.md` \"Queues\"", "outside the repository"},
	} {
		bad := append([]string(nil), good...)
		bad[tc.col] = tc.cell
		problems := c.row(bad)
		if len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), tc.why) {
			t.Errorf("column %q as %s: problems %q, want one saying %q", learnColumns[tc.col], tc.cell, problems, tc.why)
		}
	}
}

// readLearnRows returns the body rows of every table of learn.md whose header is
// learnColumns, in the order they appear. It fails the test on a table whose header
// is another, or on a row with the wrong number of cells.
func readLearnRows(t *testing.T) []learnRow {
	t.Helper()
	f, err := os.Open(learnFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []learnRow
	inTable := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20) // a row is one long line
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := splitRow(line)
		switch {
		case !inTable:
			// A header, then its delimiter row.
			if !slices.Equal(cells, learnColumns) {
				t.Fatalf("%s:%d: a table whose header is %q, want %q", learnFile, n, cells, learnColumns)
			}
			inTable = true
			n++
			if !sc.Scan() || !delimiterRow.MatchString(strings.TrimSpace(sc.Text())) {
				t.Fatalf("%s:%d: want the delimiter row |---|…| under the header", learnFile, n)
			}
		case len(cells) != len(learnColumns):
			t.Fatalf("%s:%d: %d cells, want %d (a | in a cell must be written \\|)", learnFile, n, len(cells), len(learnColumns))
		default:
			rows = append(rows, learnRow{line: n, cells: cells})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// delimiterRow is the line under a table's header.
var delimiterRow = regexp.MustCompile(`^\|( *:?-+:? *\|)+$`)

// splitRow splits a table row into its trimmed cells at the pipes not escaped as \|
// (GitHub's tables take \| as a pipe in a cell, code spans included).
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// refChecker checks the reference cells of rows against the files under root,
// reading each file once.
type refChecker struct {
	root  string
	names map[string]map[string]bool // kind + " " + file → the names found in it
	texts map[string]string          // file → its text, for files that are not Go or Markdown
}

// The kinds of names a file is read for.
const (
	kindSymbols  = "symbols"  // a Go file's declarations (Type.Method for methods)
	kindTests    = "tests"    // a _test.go file's test functions
	kindHeadings = "headings" // a Markdown file's headings
)

func newRefChecker(root string) *refChecker {
	return &refChecker{root: root, names: map[string]map[string]bool{}, texts: map[string]string{}}
}

// row returns what is wrong with the references of one row.
func (c *refChecker) row(cells []string) []string {
	var problems []string
	for _, col := range []int{colCode, colTest, colDocs} {
		for _, p := range c.cell(col, cells[col]) {
			problems = append(problems, fmt.Sprintf("%s: %s", learnColumns[col], p))
		}
	}
	return problems
}

// A reference token is `text` (a path or a symbol) or "text" (a heading).
var refToken = regexp.MustCompile("`([^`]+)`|\"([^\"]+)\"")

// isPath tells a path from a symbol: paths have a slash or a file extension we cite.
func isPath(s string) bool {
	return strings.Contains(s, "/") || strings.HasSuffix(s, ".go") || strings.HasSuffix(s, ".md")
}

// cell returns what is wrong with the references of one cell of column col: a list
// of groups, each a path followed by the names it must hold.
func (c *refChecker) cell(col int, text string) []string {
	type group struct {
		path  string
		names []string
	}
	var groups []group
	var problems []string
	for _, m := range refToken.FindAllStringSubmatch(text, -1) {
		code, quoted := m[1], m[2]
		switch {
		case code != "" && isPath(code):
			groups = append(groups, group{path: code})
		case len(groups) == 0:
			problems = append(problems, fmt.Sprintf("%q comes before any path", m[0]))
		case code != "" && col == colDocs:
			problems = append(problems, fmt.Sprintf("%s: %s: a heading is written in double quotes", groups[len(groups)-1].path, m[0]))
		case quoted != "" && col != colDocs:
			problems = append(problems, fmt.Sprintf("%s: %s: a name is written in backticks", groups[len(groups)-1].path, m[0]))
		default:
			g := &groups[len(groups)-1]
			g.names = append(g.names, code+quoted)
		}
	}
	if len(groups) == 0 && len(problems) == 0 {
		return []string{"no reference in " + strconv.Quote(text)}
	}
	for _, g := range groups {
		problems = append(problems, c.group(col, g.path, g.names)...)
	}
	return problems
}

// group checks one path and the names cited after it.
func (c *refChecker) group(col int, path string, names []string) []string {
	clean := filepath.ToSlash(filepath.Clean(path))
	if filepath.IsAbs(path) || clean == ".." || strings.HasPrefix(clean, "../") {
		return []string{path + ": outside the repository"}
	}
	if _, err := os.Stat(filepath.Join(c.root, filepath.FromSlash(clean))); err != nil {
		return []string{path + ": does not exist"}
	}
	if len(names) == 0 {
		kind := map[int]string{colCode: "symbol", colTest: "test function", colDocs: "heading"}[col]
		return []string{fmt.Sprintf("%s: names no %s", path, kind)}
	}
	switch {
	case col == colTest && !strings.HasSuffix(clean, "_test.go"):
		return []string{path + ": not a _test.go file"}
	case col == colDocs && !strings.HasSuffix(clean, ".md"):
		return []string{path + ": not a Markdown file"}
	}
	var problems []string
	for _, name := range names {
		var ok bool
		var err error
		var missing string
		switch {
		case col == colTest:
			ok, err = c.has(kindTests, clean, name)
			missing = "no test function " + name
		case col == colDocs:
			ok, err = c.has(kindHeadings, clean, name)
			missing = "no heading " + strconv.Quote(name)
		case strings.HasSuffix(clean, ".go"):
			ok, err = c.has(kindSymbols, clean, name)
			missing = "no func, method, type, const or var " + name
		default: // a file that is not Go: the name must be in its text
			var text string
			text, err = c.text(clean)
			ok = strings.Contains(text, name)
			missing = "does not contain " + name
		}
		switch {
		case err != nil:
			return append(problems, fmt.Sprintf("%s: %v", path, err))
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: %s", path, missing))
		}
	}
	return problems
}

// has reports whether file holds name among its names of kind, reading them on
// first use.
func (c *refChecker) has(kind, file, name string) (bool, error) {
	key := kind + " " + file
	names, ok := c.names[key]
	if !ok {
		read := map[string]func(string) (map[string]bool, error){
			kindSymbols: goDeclarations, kindTests: goTests, kindHeadings: markdownHeadings,
		}[kind]
		var err error
		if names, err = read(filepath.Join(c.root, filepath.FromSlash(file))); err != nil {
			return false, err
		}
		c.names[key] = names
	}
	return names[name], nil
}

func (c *refChecker) text(file string) (string, error) {
	if s, ok := c.texts[file]; ok {
		return s, nil
	}
	b, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(file)))
	if err != nil {
		return "", err
	}
	c.texts[file] = string(b)
	return string(b), nil
}

// goDeclarations returns the names a Go file declares at top level: funcs, methods
// as Type.Method, types, consts and vars.
func goDeclarations(path string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv != nil && len(d.Recv.List) == 1 {
				names[receiverType(d.Recv.List[0].Type)+"."+d.Name.Name] = true
			} else {
				names[d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					names[s.Name.Name] = true
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names[n.Name] = true
					}
				}
			}
		}
	}
	return names, nil
}

// receiverType is the name of a method's receiver type: T for T, *T, T[P] and *T[P].
func receiverType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// goTests returns the test functions of a _test.go file: top-level funcs named
// Test…, Benchmark…, Example… or Fuzz….
func goTests(path string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil {
			continue
		}
		for _, prefix := range []string{"Test", "Benchmark", "Example", "Fuzz"} {
			if strings.HasPrefix(fn.Name.Name, prefix) {
				names[fn.Name.Name] = true
			}
		}
	}
	return names, nil
}

// atxHeading is a Markdown heading line: # to ######, its text, optional closing #s.
var atxHeading = regexp.MustCompile(`^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)

// markdownHeadings returns the text of a Markdown file's headings, leaving out lines
// in fenced code blocks (where # starts a shell comment).
func markdownHeadings(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	fence := ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		if m := atxHeading.FindStringSubmatch(line); m != nil {
			names[m[1]] = true
		}
	}
	return names, nil
}
