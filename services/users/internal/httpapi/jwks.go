package httpapi

import (
	"net/http"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
)

// jwksMaxAge lets verifiers and proxies cache the key set briefly; it matches how long
// pkg/auth's JWKS client keeps keys, and verifiers refetch early on an unknown kid.
const jwksMaxAge = "public, max-age=300"

// jwks answers GET /.well-known/jwks.json with the public signing keys.
func jwks(set auth.KeySet) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", jwksMaxAge)
		httpjson.Write(w, http.StatusOK, set)
	}
}
