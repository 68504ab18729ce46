package programtest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// Response is what came back from a Call.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Call sends a request to url and reads the whole response, failing the test if it
// cannot. A non-empty body is sent as application/json; header is key, value pairs set
// after that (so they may override it).
func Call(t testing.TB, method, url, body string, header ...string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := testhttp.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Bearer is the header pair that presents token to Call.
func Bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// JSON decodes the body into v, failing the test if it cannot.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Problem decodes a problem response, failing unless it is a problem+json document with
// the status, a request_id and a type.
func (r Response) Problem(t testing.TB, status int) problem.Details {
	t.Helper()
	if r.Status != status || r.Header.Get("Content-Type") != problem.ContentType {
		t.Fatalf("got %d %s %s; want a %d problem", r.Status, r.Header.Get("Content-Type"), r.Body, status)
	}
	var d problem.Details
	r.JSON(t, &d)
	if d.Status != status || d.RequestID == "" || d.Type == "" {
		t.Errorf("problem document %+v", d)
	}
	return d
}
