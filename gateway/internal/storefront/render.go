package storefront

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// view is what every page template gets: the page's own data in Data, and what the
// layout shows around it.
type view struct {
	Title     string
	Session   *Session // nil: not signed in
	CSRF      string   // the token every form posts back (csrf.go)
	CartCount int
	Query     string // the search box's text
	Notice    string // a message about what just happened (role=status)
	Error     string // what went wrong (role=alert)
	Fields    []apperr.FieldError
	Nav       string // the section the page is in, marked aria-current
	Data      any
}

// pages are the parsed templates, one set per page: the layout and that page's
// "content".
type pages struct {
	sets   map[string]*template.Template
	assets map[string]string // an asset's name → its URL with its content hash
}

func parsePages() (*pages, error) {
	p := &pages{sets: map[string]*template.Template{}, assets: map[string]string{}}
	err := fs.WalkDir(staticFiles, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFiles.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		// The hash in the URL lets the browser keep the file for good: a changed file
		// has a new URL.
		p.assets[path.Base(name)] = "/" + name + "?v=" + hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"asset": func(name string) (string, error) {
			u, ok := p.assets[name]
			if !ok {
				return "", fmt.Errorf("no asset %q", name)
			}
			return u, nil
		},
		"money":  money,
		"status": statusText,
		"when":   func(t time.Time) string { return t.Local().Format("2 Jan 2006, 15:04:05") },
		"whenp": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return t.Local().Format("2 Jan 2006, 15:04:05")
		},
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		// stamp is a time to the millisecond, for a story whose steps are that close.
		"stamp": func(t time.Time) string { return t.Local().Format("15:04:05.000") },
		"derefTime": func(t *time.Time) time.Time {
			if t == nil {
				return time.Time{}
			}
			return *t
		},
		"ref": orderRef,
		"deref": func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		},
		"add": func(a, b int) int { return a + b },
		"mul": func(a int64, b int) int64 { return a * int64(b) },
	}
	// The layout and the partials (_*.html) are in every page's set.
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/_*.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".html")
		if base == "layout" || strings.HasPrefix(base, "_") {
			continue
		}
		set, err := template.Must(layout.Clone()).ParseFS(templateFiles, name)
		if err != nil {
			return nil, err
		}
		p.sets[base] = set
	}
	return p, nil
}

// view starts the view of a page titled title: the browser's session if it has one
// (a page that needs one asks signedIn instead), its CSRF token and its cart.
func (s *Shop) view(w http.ResponseWriter, r *http.Request, title string) view {
	v := view{Title: title, CSRF: csrfToken(w, r), CartCount: readCart(r).count()}
	if sess, err := s.session(r); err == nil {
		v.Session = sess
	}
	v.Notice = notices[r.URL.Query().Get("m")]
	return v
}

// fail shows err on the page, its field errors beside their fields, and returns the
// status the page answers with.
func (v *view) fail(err error) int {
	status, msg := explain(err)
	v.Error = msg
	var ae *apperr.Error
	if errors.As(err, &ae) {
		v.Fields = ae.Fields
	}
	return status
}

// notices are the messages a redirect can ask the next page to show (?m=): fixed
// texts, so that a link cannot make the shop say anything else.
var notices = map[string]string{
	"signed-in":   "Welcome back. You are signed in.",
	"signed-up":   "Welcome to Bazaar. Your account is ready, and you are signed in.",
	"signed-out":  "You are signed out.",
	"added":       "Added to your cart.",
	"updated":     "Your cart is updated.",
	"cancelling":  "Cancellation requested: the stock goes back and the money is refunded.",
	"saved":       "Saved.",
	"created":     "Product created.",
	"session-end": "Your session has ended. Sign in again.",
}

// render answers the page name with status.
func (s *Shop) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	set, ok := s.pages.sets[name]
	if !ok {
		s.log.ErrorContext(r.Context(), "no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	if err := set.ExecuteTemplate(&b, "layout", v); err != nil {
		s.log.ErrorContext(r.Context(), "rendering a page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show a person's cart, orders and tokens' worth of data: never cached.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// failed answers a page whose API call failed, with the failure in words.
func (s *Shop) failed(w http.ResponseWriter, r *http.Request, title string, err error) {
	status, msg := explain(err)
	v := s.view(w, r, title)
	v.Error = msg
	if wait := retryAfter(err); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	}
	s.render(w, r, status, "message", v)
}

// explain is the status a page answers for err and what it tells the person.
func explain(err error) (int, string) {
	code := apperr.CodeOf(err)
	var ae *apperr.Error
	detail := ""
	if errors.As(err, &ae) {
		detail = ae.Message
	}
	switch code {
	case apperr.RateLimited:
		msg := "You are going a little fast for the shop. Wait a moment and try again."
		if wait := retryAfter(err); wait > 0 {
			msg = fmt.Sprintf("You are going a little fast for the shop. Wait %d seconds and try again.", int(math.Ceil(wait.Seconds())))
		}
		return http.StatusTooManyRequests, msg
	case apperr.Unavailable, apperr.BadGateway:
		return http.StatusServiceUnavailable, "Part of the shop is not answering right now. Nothing was lost; try again in a moment."
	case apperr.Timeout:
		return http.StatusGatewayTimeout, "The shop took too long to answer. Try again in a moment."
	case apperr.NotFound:
		return http.StatusNotFound, "There is nothing here. It may have been removed, or the link is wrong."
	case apperr.Forbidden:
		return http.StatusForbidden, "You are not allowed to do that."
	case apperr.Invalid, apperr.Malformed, apperr.Conflict:
		if detail != "" {
			return code.Status(), sentence(detail)
		}
	}
	return http.StatusInternalServerError, "Something went wrong on our side. Try again; if it keeps happening, tell us."
}

// sentence starts s with a capital and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// retryAfter is how long an API refusal asked to wait; zero when it did not say.
func retryAfter(err error) time.Duration {
	var ra retryAfterError
	if errors.As(err, &ra) {
		return ra.wait
	}
	return 0
}

// static serves the stylesheet and the script. Their URLs carry a hash of their
// content (asset), so they are cached for a year.
func (s *Shop) static(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.FileServerFS(staticFiles).ServeHTTP(w, r)
}
