// Command users is Bazaar's users service: sign-up, login, refresh tokens and the
// signing keys behind every access token. See run.go for what it starts.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("users", run) }
