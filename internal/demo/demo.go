// Package demo is the demo data every way of running Bazaar starts with: the logins
// and the seeding that `make run` (internal/devstack) and docker compose's seed job
// (`bazaarctl demo seed`) share, so that both stacks open with the same shop. The
// catalogue is the inventory service's own (SEED_CATALOGUE), and the admin the users
// service's (BOOTSTRAP_ADMIN_*); the shopper is registered here, through the public
// API, as any customer would be.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Login is a seeded account.
type Login struct {
	Email, Password, Name string
}

// Admin and Shopper are the demo logins (docs/contract.md), for local use only: a
// stack anyone else can reach gets its admin's password generated (compose) or set.
var (
	Admin   = Login{Email: "admin@bazaar.local", Password: "bazaar-admin", Name: "Bazaar Admin"}
	Shopper = Login{Email: "shopper@bazaar.local", Password: "bazaar-shopper", Name: "Demo Shopper"}
)

// Seed makes sure shopper exists by registering it through the gateway at gatewayURL
// (a 409 says it already does), and, when admin has a password, checks that the admin
// can log in with it: a warning, not an error, since an admin made earlier with
// another password still exists. It says what it did through printf. Running it again
// changes nothing.
func Seed(ctx context.Context, gatewayURL string, admin, shopper Login, printf func(format string, args ...any)) error {
	// Its own transport: an httptest server closing in the same process (a test's)
	// closes http.DefaultTransport's idle connections under requests (see
	// internal/testkit/testhttp).
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	status, body, err := postJSON(ctx, client, gatewayURL+"/api/v1/auth/register",
		map[string]string{"email": shopper.Email, "password": shopper.Password, "name": shopper.Name})
	switch {
	case err != nil:
		return fmt.Errorf("seeding the shopper: %w", err)
	case status == http.StatusCreated:
		printf("seeded the shopper %s", shopper.Email)
	case status == http.StatusConflict:
		printf("the shopper %s already exists", shopper.Email)
	default:
		return fmt.Errorf("seeding the shopper: POST /api/v1/auth/register answered %d: %s", status, body)
	}
	if admin.Password == "" {
		return nil
	}
	status, body, err = postJSON(ctx, client, gatewayURL+"/api/v1/auth/login",
		map[string]string{"email": admin.Email, "password": admin.Password})
	if err != nil || status != http.StatusOK {
		printf("warning: the admin %s cannot log in with the configured password (%d %s %v)", admin.Email, status, body, err)
	}
	return nil
}

func postJSON(ctx context.Context, client *http.Client, url string, v any) (int, string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(bytes.TrimSpace(body)), nil
}
