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

	if rec.Code != 422 {
		t.Fatalf("status %d, want 422", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != ContentType {
		t.Fatalf("content type %q, want %q", ct, ContentType)
	}
	var d Details
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Type != "urn:bazaar:problem:invalid" {
		t.Errorf("type %q, want urn:bazaar:problem:invalid", d.Type)
	}
	if d.Status != 422 {
		t.Errorf("status %d in the body, want 422", d.Status)
	}
	if d.Instance != "/api/v1/auth/register" {
		t.Errorf("instance %q, want /api/v1/auth/register", d.Instance)
	}
	if d.RequestID != "rid-7" {
		t.Errorf("request id %q, want rid-7", d.RequestID)
	}
	if len(d.Errors) != 1 {
		t.Fatalf("errors %+v, want 1", d.Errors)
	}
	if d.Errors[0].Field != "email" {
		t.Errorf("error on field %q, want email", d.Errors[0].Field)
	}
}

func TestWriteHidesUnknownErrors(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	Write(rec, httptest.NewRequest("GET", "/x", nil), nil, errors.New("pq: password for user bazaar is hunter2"))
	if rec.Code != 500 {
		t.Errorf("status %d, want 500", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "hunter2") {
		t.Errorf("body %s shows the unknown error's text, want it hidden", rec.Body)
	}
}

func TestFromResponseRoundTrip(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	Write(rec, httptest.NewRequest("GET", "/x", nil), nil, apperr.E(apperr.Conflict, "email already registered"))
	err := FromResponse(rec.Result())
	var ae *apperr.Error
	if !errors.As(err, &ae) {
		t.Fatalf("FromResponse = %#v, want an *apperr.Error", err)
	}
	if ae.Code != apperr.Conflict {
		t.Errorf("code %s, want %s", ae.Code, apperr.Conflict)
	}
	if ae.Message != "email already registered" {
		t.Errorf("message %q, want %q", ae.Message, "email already registered")
	}

	// A business reason travels as the problem type and comes back.
	rec = httptest.NewRecorder()
	Write(rec, httptest.NewRequest("POST", "/x", nil), nil, apperr.R(apperr.Conflict, "out_of_stock", "not enough stock"))
	if rec.Code != 409 {
		t.Fatalf("reasoned problem: status %d, want 409; body %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"type":"urn:bazaar:problem:out_of_stock"`) {
		t.Fatalf("reasoned problem: body %s, want the type urn:bazaar:problem:out_of_stock", rec.Body)
	}
	err = FromResponse(rec.Result())
	if !errors.Is(err, apperr.R(apperr.Conflict, "out_of_stock", "")) {
		t.Fatalf("reason lost: %#v, want a conflict for out_of_stock", err)
	}
	if errors.Is(err, apperr.R(apperr.Conflict, "other", "")) {
		t.Fatalf("reason lost: %#v matches a conflict for another reason, want only out_of_stock", err)
	}

	// A plain-text error page still yields the status's code.
	resp := &http.Response{StatusCode: 502, Body: http.NoBody}
	if apperr.CodeOf(FromResponse(resp)) != apperr.BadGateway {
		t.Fatal("want bad_gateway")
	}
}
