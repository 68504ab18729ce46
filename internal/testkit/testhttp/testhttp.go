// Package testhttp gives tests an HTTP client whose connections no other test closes.
//
// httptest.Server.Close closes the idle connections of http.DefaultTransport, which
// http.Get, http.DefaultClient and every http.Client without a Transport use. A
// request that has just picked one of those connections then fails with "http:
// CloseIdleConnections called", and Go does not retry it. With many tests in parallel,
// each closing its servers as it ends, that happens: it failed a gateway proxy test.
// Transport and Client are the test binary's own; httptest never closes them.
package testhttp

import "net/http"

// Transport is like http.DefaultTransport, for a test's own http.Client (one with a
// Timeout, or that does not follow redirects).
var Transport = http.DefaultTransport.(*http.Transport).Clone()

// Client is for tests that would use http.Get or http.DefaultClient.
var Client = &http.Client{Transport: Transport}
