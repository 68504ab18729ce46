// Package docs holds Bazaar's documentation. Its one piece of code gives programs the
// OpenAPI document, so that the gateway serves (GET /openapi.yaml) and renders (GET
// /docs) exactly the document its tests check it against.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml as it was when the program was built.
//
//go:embed openapi.yaml
var OpenAPI []byte
