package problem

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/logging"
)

func TestWriteAppError(t *testing.T) {
	t.Parallel()
	var f apperr.Fields
	f.Add("email", "must be an e-mail address")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/v1/auth/register", nil)
	req = req.WithContext(logging.WithRequestID(req.Context(), "rid-7"))
	Write(rec, req, nil, f.Err())

	if rec.Code != 422 || rec.Header().Get("Content-Type") != ContentType {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var d Details
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Type != "urn:bazaar:problem:invalid" || d.Status != 422 || d.Instance != "/api/v1/auth/register" ||
		d.RequestID != "rid-7" || len(d.Errors) != 1 || d.Errors[0].Field != "email" {
		t.Fatalf("got %+v", d)
	}
}

func TestWriteHidesUnknownErrors(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	Write(rec, httptest.NewRequest("GET", "/x", nil), nil, errors.New("pq: password for user bazaar is hunter2"))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "hunter2") {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
}

func TestFromResponseRoundTrip(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	Write(rec, httptest.NewRequest("GET", "/x", nil), nil, apperr.E(apperr.Conflict, "email already registered"))
	err := FromResponse(rec.Result())
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != apperr.Conflict || ae.Message != "email already registered" {
		t.Fatalf("got %#v", err)
	}

	// A business reason travels as the problem type and comes back.
	rec = httptest.NewRecorder()
	Write(rec, httptest.NewRequest("POST", "/x", nil), nil, apperr.R(apperr.Conflict, "out_of_stock", "not enough stock"))
	if !strings.Contains(rec.Body.String(), `"type":"urn:bazaar:problem:out_of_stock"`) || rec.Code != 409 {
		t.Fatalf("reasoned problem: %d %s", rec.Code, rec.Body)
	}
	err = FromResponse(rec.Result())
	if !errors.Is(err, apperr.R(apperr.Conflict, "out_of_stock", "")) || errors.Is(err, apperr.R(apperr.Conflict, "other", "")) {
		t.Fatalf("reason lost: %#v", err)
	}

	// A plain-text error page still yields the status's code.
	resp := &http.Response{StatusCode: 502, Body: http.NoBody}
	if apperr.CodeOf(FromResponse(resp)) != apperr.BadGateway {
		t.Fatal("want bad_gateway")
	}
}
