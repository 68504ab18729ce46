package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/bazaar-shop/bazaar/pkg/httpserver"
)

// The API's reference, served by the gateway itself from the OpenAPI document it was
// built with (docs.OpenAPI): GET /openapi.yaml is the document as it is, GET /docs a
// page made from it once at start. The page is plain HTML and one inline stylesheet:
// no script, nothing fetched from anywhere, and a Content-Security-Policy that allows
// that stylesheet alone, by its hash. Both answers carry an ETag and
// Cache-Control: no-cache, so a browser asks again and gets 304 until the gateway
// runs another document.

//go:embed apidocs.html
var apiDocsTemplate string

//go:embed apidocs.css
var apiDocsStyle string

// specPolicy is the Content-Security-Policy of GET /openapi.yaml: a document, not a
// page, so nothing may load or run, even if a browser renders it.
const specPolicy = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"

// apiDocs are the handlers of GET /openapi.yaml (spec) and GET /docs (page).
type apiDocs struct {
	spec, page http.Handler
}

// newAPIDocs serves spec, an OpenAPI 3.0 document in YAML, and a page made from it. It
// fails when the document does not load or is not valid, or the page cannot be made.
func newAPIDocs(spec []byte) (apiDocs, error) {
	loader := openapi3.NewLoader()
	loader.IncludeOrigin = true // for the document's order of operations and schemas
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return apiDocs{}, fmt.Errorf("the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return apiDocs{}, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	page, err := renderAPIDocs(doc)
	if err != nil {
		return apiDocs{}, err
	}
	sum := sha256.Sum256([]byte(apiDocsStyle))
	pagePolicy := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return apiDocs{
		spec: staticContent("application/yaml", specPolicy, spec),
		page: staticContent("text/html; charset=utf-8", pagePolicy, page),
	}, nil
}

// staticContent answers every request with body, tagged with its ETag, or 304 Not
// Modified when the client has it already.
func staticContent(contentType, policy string, body []byte) http.Handler {
	etag := httpserver.ETag(body)
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		if httpserver.NoneMatch(r, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", contentType)
		h.Set("Content-Length", length)
		_, _ = w.Write(body)
	})
}

// The page's model.
type (
	docPage struct {
		Title, Version string
		Intro          template.HTML
		Style          template.CSS
		Groups         []docGroup
		Schemas        []docSchema
	}
	docGroup struct {
		Name, ID    string
		Description template.HTML
		Ops         []docOp
	}
	docOp struct {
		ID, Method, Path, Summary string
		Access                    string
		Description               template.HTML
		Params                    []docField
		Body                      []docMedia
		BodyRequired              bool
		Responses                 []docResponse
	}
	docField struct {
		Name, In    string
		Required    bool
		Type        template.HTML
		Description template.HTML
	}
	docMedia struct {
		ContentType string
		Type        template.HTML
	}
	docResponse struct {
		Status      string
		Description template.HTML
		Headers     []docField
		Content     []docMedia
	}
	docSchema struct {
		Name, ID    string
		Description template.HTML
		Type        template.HTML
		Props       []docField
	}
)

var apiDocsPage = template.Must(template.New("apidocs").Funcs(template.FuncMap{"lower": strings.ToLower}).Parse(apiDocsTemplate))

// renderAPIDocs is the page of doc: its operations grouped by tag (in the order of
// the document's tags, then of its paths), then its schemas.
func renderAPIDocs(doc *openapi3.T) ([]byte, error) {
	page := docPage{Title: doc.Info.Title, Version: doc.Info.Version, Intro: markdown(doc.Info.Description), Style: template.CSS(apiDocsStyle)}

	var ops []docOp
	opTags := map[string][]string{}
	lines := map[string]int{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			d := describeOperation(method, path, item, op)
			ops = append(ops, d)
			opTags[d.ID] = op.Tags
			lines[d.ID] = line(op.Origin)
		}
	}
	slices.SortFunc(ops, func(a, b docOp) int {
		return cmp.Or(cmp.Compare(lines[a.ID], lines[b.ID]), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})

	tags := doc.Tags
	for _, op := range ops { // tags the operations use that the document does not list
		for _, name := range opTags[op.ID] {
			if tags.Get(name) == nil {
				tags = append(tags, &openapi3.Tag{Name: name})
			}
		}
	}
	for _, tag := range tags {
		g := docGroup{Name: tag.Name, ID: "tag-" + anchor(tag.Name), Description: markdown(tag.Description)}
		for _, op := range ops {
			if slices.Contains(opTags[op.ID], tag.Name) {
				g.Ops = append(g.Ops, op)
			}
		}
		if len(g.Ops) > 0 {
			page.Groups = append(page.Groups, g)
		}
	}
	if untagged := slices.DeleteFunc(slices.Clone(ops), func(op docOp) bool { return len(opTags[op.ID]) > 0 }); len(untagged) > 0 {
		page.Groups = append(page.Groups, docGroup{Name: "other", ID: "tag-other", Ops: untagged})
	}

	names := make([]string, 0, len(doc.Components.Schemas))
	for name := range doc.Components.Schemas {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(line(doc.Components.Schemas[a].Value.Origin), line(doc.Components.Schemas[b].Value.Origin)), cmp.Compare(a, b))
	})
	for _, name := range names {
		s := doc.Components.Schemas[name].Value
		d := docSchema{Name: name, ID: "schema-" + anchor(name), Description: markdown(s.Description), Type: typeOf(&openapi3.SchemaRef{Value: s}, 0)}
		if isObject(s) {
			d.Props = properties(s, 0)
		}
		page.Schemas = append(page.Schemas, d)
	}

	var b bytes.Buffer
	if err := apiDocsPage.Execute(&b, page); err != nil {
		return nil, fmt.Errorf("the API reference page: %w", err)
	}
	return b.Bytes(), nil
}

func describeOperation(method, path string, item *openapi3.PathItem, op *openapi3.Operation) docOp {
	id := op.OperationID
	if id == "" {
		id = method + " " + path
	}
	d := docOp{
		ID: "op-" + anchor(id), Method: method, Path: path, Summary: op.Summary,
		Description: markdown(op.Description), Access: "anyone",
	}
	if op.Security != nil && len(*op.Security) > 0 {
		d.Access = "a bearer token"
		if strings.Contains(op.Description, "Admin only") {
			d.Access = "a bearer token with the admin role"
		}
	}
	// The path's parameters, then the operation's, which override them by name and
	// place.
	params := map[string]*openapi3.Parameter{}
	var order []string
	for _, list := range []openapi3.Parameters{item.Parameters, op.Parameters} {
		for _, p := range list {
			key := p.Value.In + " " + p.Value.Name
			if _, ok := params[key]; !ok {
				order = append(order, key)
			}
			params[key] = p.Value
		}
	}
	for _, key := range order {
		p := params[key]
		d.Params = append(d.Params, docField{Name: p.Name, In: p.In, Required: p.Required, Type: typeOf(p.Schema, 0), Description: markdown(p.Description)})
	}
	if op.RequestBody != nil && op.RequestBody.Value != nil {
		d.BodyRequired = op.RequestBody.Value.Required
		d.Body = media(op.RequestBody.Value.Content)
	}
	codes := op.Responses.Map()
	statuses := make([]string, 0, len(codes))
	for status := range codes {
		statuses = append(statuses, status)
	}
	slices.Sort(statuses)
	for _, status := range statuses {
		resp := codes[status].Value
		r := docResponse{Status: status, Description: markdown(deref(resp.Description)), Content: media(resp.Content)}
		for _, name := range sortedKeys(resp.Headers) {
			h := resp.Headers[name].Value
			r.Headers = append(r.Headers, docField{Name: name, Required: h.Required, Type: typeOf(h.Schema, 0), Description: markdown(h.Description)})
		}
		d.Responses = append(d.Responses, r)
	}
	return d
}

func media(content openapi3.Content) []docMedia {
	var out []docMedia
	for _, ct := range sortedKeys(content) {
		out = append(out, docMedia{ContentType: ct, Type: typeOf(content[ct].Schema, 0)})
	}
	return out
}

// maxDepth bounds how deep inline schemas are spelled out.
const maxDepth = 4

// typeOf describes a schema in a line: a link to a named schema, or its type with its
// constraints; an inline object lists its properties below.
func typeOf(ref *openapi3.SchemaRef, depth int) template.HTML {
	if ref == nil || ref.Value == nil {
		return "any"
	}
	if name, ok := strings.CutPrefix(ref.Ref, "#/components/schemas/"); ok {
		return template.HTML(`<a href="#schema-` + html.EscapeString(anchor(name)) + `">` + html.EscapeString(name) + `</a>`)
	}
	s := ref.Value
	var b strings.Builder
	switch {
	case len(s.AllOf) == 1:
		b.WriteString(string(typeOf(s.AllOf[0], depth)))
	case len(s.OneOf) > 0 || len(s.AnyOf) > 0:
		alts := append(slices.Clone(s.OneOf), s.AnyOf...)
		for i, a := range alts {
			if i > 0 {
				b.WriteString(" or ")
			}
			b.WriteString(string(typeOf(a, depth+1)))
		}
	case s.Type.Is("array"):
		b.WriteString("array of " + string(typeOf(s.Items, depth+1)))
	case isObject(s) && s.AdditionalProperties.Schema != nil && len(s.Properties) == 0:
		b.WriteString("object of string to " + string(typeOf(s.AdditionalProperties.Schema, depth+1)))
	case s.Type != nil && len(*s.Type) > 0:
		b.WriteString(html.EscapeString(strings.Join(s.Type.Slice(), " or ")))
	default:
		b.WriteString("any")
	}
	var notes []string
	if s.Format != "" {
		notes = append(notes, html.EscapeString(s.Format))
	}
	if len(s.Enum) > 0 {
		var vals []string
		for _, v := range s.Enum {
			if v != nil {
				vals = append(vals, "<code>"+html.EscapeString(fmt.Sprint(v))+"</code>")
			}
		}
		notes = append(notes, "one of "+strings.Join(vals, ", "))
	}
	if r := span(s.Min, s.Max, ""); r != "" {
		notes = append(notes, r)
	}
	if r := span(uintFloat(&s.MinLength), uintFloat(s.MaxLength), " characters"); r != "" {
		notes = append(notes, r)
	}
	if r := span(uintFloat(&s.MinItems), uintFloat(s.MaxItems), " items"); r != "" {
		notes = append(notes, r)
	}
	if s.Pattern != "" {
		notes = append(notes, "matching <code>"+html.EscapeString(s.Pattern)+"</code>")
	}
	if s.Default != nil {
		notes = append(notes, "default <code>"+html.EscapeString(fmt.Sprint(s.Default))+"</code>")
	}
	if len(notes) > 0 {
		b.WriteString(" (" + strings.Join(notes, "; ") + ")")
	}
	if s.Nullable {
		b.WriteString(" or null")
	}
	if isObject(s) && len(s.Properties) > 0 && depth < maxDepth && ref.Ref == "" {
		b.WriteString(`<ul class="props">`)
		for _, p := range properties(s, depth+1) {
			req := ""
			if p.Required {
				req = ` <span class="req">required</span>`
			}
			fmt.Fprintf(&b, "<li><code>%s</code>%s: %s", html.EscapeString(p.Name), req, p.Type)
			if p.Description != "" {
				b.WriteString(" — " + string(p.Description))
			}
			b.WriteString("</li>")
		}
		b.WriteString("</ul>")
	}
	return template.HTML(b.String())
}

// properties are an object schema's members, in name order.
func properties(s *openapi3.Schema, depth int) []docField {
	var out []docField
	for _, name := range sortedKeys(s.Properties) {
		p := s.Properties[name]
		desc := ""
		if p.Value != nil {
			desc = p.Value.Description
		}
		out = append(out, docField{Name: name, Required: slices.Contains(s.Required, name), Type: typeOf(p, depth), Description: inlineMarkdown(desc)})
	}
	return out
}

func isObject(s *openapi3.Schema) bool {
	return s.Type.Is("object") || (s.Type == nil && len(s.Properties) > 0)
}

// span says what a minimum and a maximum (either nil for none) allow, in unit; a
// minimum of 0 for a count is none.
func span(lo, hi *float64, unit string) string {
	if lo != nil && *lo == 0 && unit != "" {
		lo = nil
	}
	num := func(v *float64) string { return strconv.FormatFloat(*v, 'f', -1, 64) }
	switch {
	case lo != nil && hi != nil:
		return num(lo) + " to " + num(hi) + unit
	case lo != nil:
		return "at least " + num(lo) + unit
	case hi != nil:
		return "at most " + num(hi) + unit
	}
	return ""
}

func uintFloat(v *uint64) *float64 {
	if v == nil {
		return nil
	}
	f := float64(*v)
	return &f
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func line(o *openapi3.Origin) int {
	if o == nil || o.Key == nil {
		return 0
	}
	return o.Key.Line
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var nonAnchor = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// anchor makes s fit an element id.
func anchor(s string) string { return strings.Trim(nonAnchor.ReplaceAllString(s, "-"), "-") }

// markdown renders the little Markdown the document's descriptions use: paragraphs,
// "- " lists, ``` fenced blocks, `code`, **strong** and *emphasis*. Everything else is
// text, escaped.
func markdown(s string) template.HTML {
	var b strings.Builder
	lines := strings.Split(strings.TrimSpace(s), "\n")
	var para, item []string
	inList := false
	flushItem := func() {
		if item != nil {
			b.WriteString("<li>" + string(inlineMarkdown(strings.Join(item, " "))) + "</li>")
			item = nil
		}
	}
	flush := func() {
		if len(para) > 0 {
			b.WriteString("<p>" + string(inlineMarkdown(strings.Join(para, " "))) + "</p>")
			para = nil
		}
		flushItem()
		if inList {
			b.WriteString("</ul>")
			inList = false
		}
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "```"):
			flush()
			var code []string
			for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				code = append(code, lines[i])
			}
			b.WriteString("<pre><code>" + html.EscapeString(strings.Join(code, "\n")) + "</code></pre>")
		case t == "":
			flush()
		case strings.HasPrefix(t, "- "):
			if len(para) > 0 {
				b.WriteString("<p>" + string(inlineMarkdown(strings.Join(para, " "))) + "</p>")
				para = nil
			}
			flushItem()
			if !inList {
				b.WriteString("<ul>")
				inList = true
			}
			item = []string{strings.TrimPrefix(t, "- ")}
		case inList && strings.HasPrefix(l, " "):
			item = append(item, t)
		default:
			if inList {
				flushItem()
				b.WriteString("</ul>")
				inList = false
			}
			para = append(para, t)
		}
	}
	flush()
	return template.HTML(b.String())
}

var (
	strong   = regexp.MustCompile(`\*\*([^*]+)\*\*`)
	emphasis = regexp.MustCompile(`\*([^*\s][^*]*)\*`)
)

// inlineMarkdown renders `code`, **strong** and *emphasis* in a line of text, escaped.
func inlineMarkdown(s string) template.HTML {
	var b strings.Builder
	for i, part := range strings.Split(s, "`") {
		if i%2 == 1 {
			b.WriteString("<code>" + html.EscapeString(part) + "</code>")
			continue
		}
		// Escaped first: the tags added below are the only markup.
		t := html.EscapeString(part)
		t = strong.ReplaceAllString(t, "<strong>$1</strong>")
		t = emphasis.ReplaceAllString(t, "<em>$1</em>")
		b.WriteString(t)
	}
	return template.HTML(b.String())
}
