package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/bazaar-shop/bazaar/docs"
)

func newTestAPIDocs(t *testing.T) apiDocs {
	t.Helper()
	d, err := newAPIDocs(docs.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func get(h http.Handler, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestTheOpenAPIDocumentIsServedAsItIs(t *testing.T) {
	t.Parallel()
	d := newTestAPIDocs(t)
	rec := get(d.spec)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /openapi.yaml: %d; want 200", rec.Code)
	}
	if !bytes.Equal(rec.Body.Bytes(), docs.OpenAPI) {
		t.Fatalf("GET /openapi.yaml: %d bytes that differ from docs/openapi.yaml (%d bytes); want it as it is", rec.Body.Len(), len(docs.OpenAPI))
	}
	h := rec.Header()
	if ct := h.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q; want application/yaml", ct)
	}
	if cc := h.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q; want no-cache", cc)
	}
	csp := h.Get("Content-Security-Policy")
	if !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q; want nothing allowed: default-src 'none' first", csp)
	}
	if !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q; want nothing allowed: frame-ancestors 'none'", csp)
	}
	etag := h.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	for _, inm := range []string{etag, "W/" + etag, "*"} {
		rec := get(d.spec, "If-None-Match", inm)
		if rec.Code != http.StatusNotModified {
			t.Errorf("If-None-Match %s: %d; want 304", inm, rec.Code)
		}
		if n := rec.Body.Len(); n != 0 {
			t.Errorf("If-None-Match %s: %d bytes; want no body", inm, n)
		}
		if got := rec.Header().Get("ETag"); got != etag {
			t.Errorf("If-None-Match %s: ETag %q; want the ETag, %q", inm, got, etag)
		}
	}
	if rec := get(d.spec, "If-None-Match", `"stale"`); rec.Code != http.StatusOK {
		t.Errorf("If-None-Match with another tag: %d; want 200", rec.Code)
	}
}

// Issue 9: a readable reference, every asset served by the gateway: here, one inline
// stylesheet allowed by its hash, no script, no link or source elsewhere.
func TestTheReferencePageIsSelfContainedAndStrict(t *testing.T) {
	t.Parallel()
	d := newTestAPIDocs(t)
	rec := get(d.page)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /docs: %d; want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("GET /docs: Content-Type %q; want text/html; charset=utf-8", ct)
	}
	page := rec.Body.String()

	styles := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(page, -1)
	if len(styles) != 1 {
		t.Fatalf("%d style elements; want one", len(styles))
	}
	sum := sha256.Sum256([]byte(styles[0][1]))
	want := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	if csp := rec.Header().Get("Content-Security-Policy"); csp != want {
		t.Errorf("Content-Security-Policy\n %s\nwant\n %s", csp, want)
	}
	for _, bad := range []string{"<script", " style=", "<link", "<img", "<iframe", "src=", "@import", "url("} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("the page has %q: it must load nothing and run nothing", bad)
		}
	}
	// Every link goes to the page itself or to the document, and every anchor exists.
	ids := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bid="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		if ids[m[1]] {
			t.Errorf("id %q twice", m[1])
		}
		ids[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`\bhref="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		switch href := html.UnescapeString(m[1]); {
		case href == "/openapi.yaml":
		case strings.HasPrefix(href, "#"):
			if !ids[href[1:]] {
				t.Errorf("a link to %s, which is not on the page", href)
			}
		default:
			t.Errorf("a link to %q, off the page", href)
		}
	}
	if rec := get(d.page, "If-None-Match", rec.Header().Get("ETag")); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match with its ETag: %d; want 304", rec.Code)
	}
}

// The page is made from the document, all of it: every operation under its tag, with
// its parameters and every answer it documents, and every schema.
func TestTheReferencePageShowsTheWholeDocument(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	page := get(newTestAPIDocs(t).page).Body.String()
	article := regexp.MustCompile(`(?s)<article id="([^"]+)">(.*?)</article>`)
	articles := map[string]string{}
	var order []string
	for _, m := range article.FindAllStringSubmatch(page, -1) {
		articles[m[1]] = m[2]
		order = append(order, m[1])
	}
	n := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			n++
			body, ok := articles["op-"+op.OperationID]
			if !ok {
				t.Errorf("%s %s (%s) is not on the page", method, path, op.OperationID)
				continue
			}
			if !strings.Contains(body, ">"+method+"</span> <code>"+html.EscapeString(path)+"</code>") {
				t.Errorf("%s: its heading does not say %s %s", op.OperationID, method, path)
			}
			for status := range op.Responses.Map() {
				if !strings.Contains(body, `<td class="status">`+status+`</td>`) {
					t.Errorf("%s: answer %s is not shown", op.OperationID, status)
				}
			}
			for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
				if !strings.Contains(body, "<code>"+html.EscapeString(p.Value.Name)+"</code>") {
					t.Errorf("%s: parameter %s is not shown", op.OperationID, p.Value.Name)
				}
			}
			if op.RequestBody != nil && !strings.Contains(body, "Request body") {
				t.Errorf("%s: its request body is not shown", op.OperationID)
			}
			// Under its first tag's heading.
			heading := strings.Index(page, `<h2 class="tag" id="tag-`+op.Tags[0]+`">`)
			at := strings.Index(page, `<article id="op-`+op.OperationID+`">`)
			next := strings.Index(page[heading+1:], `<h2 class="tag"`) + heading + 1
			if heading < 0 || at < heading || at > next {
				t.Errorf("%s is not under the heading of its tag %s", op.OperationID, op.Tags[0])
			}
		}
	}
	if len(order) != n {
		t.Errorf("%d operations on the page; the document has %d", len(order), n)
	}
	for name := range doc.Components.Schemas {
		if !strings.Contains(page, `<section class="schema" id="schema-`+name+`">`) {
			t.Errorf("schema %s is not on the page", name)
		}
	}
	// A sample of what the reader needs: the described members of a schema, a
	// documented header, and Markdown made into markup.
	for _, want := range []string{
		`<code>next_cursor</code> <span class="req">required</span></td><td><a href="#schema-NextCursor">NextCursor</a>`,
		`<code>If-None-Match</code>`,
		`<code>ETag</code>`,
		`<strong>Admin only</strong>`,
		`<code>application/problem+json</code>: <a href="#schema-Problem">Problem</a>`,
	} {
		if !strings.Contains(html.UnescapeString(page), want) {
			t.Errorf("the page has no %s", want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"one line", "<p>one line</p>"},
		{"two\nlines\n\nthen a second", "<p>two lines</p><p>then a second</p>"},
		{"`<b>` and **bold** and *it*", "<p><code>&lt;b&gt;</code> and <strong>bold</strong> and <em>it</em></p>"},
		{"<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"},
		{"Intro:\n\n- one\n  continued\n- two\n\nAfter.", "<p>Intro:</p><ul><li>one continued</li><li>two</li></ul><p>After.</p>"},
		{"Text\n- item", "<p>Text</p><ul><li>item</li></ul>"},
		{"```\na <b>\n  b\n```", "<pre><code>a &lt;b&gt;\n  b</code></pre>"},
	} {
		if got := string(markdown(c.in)); got != c.want {
			t.Errorf("markdown(%q)\n = %s\nwant %s", c.in, got, c.want)
		}
	}
}
