package main

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

// Sagas are finished with Redis down: recovery must not depend on the broker whose
// outage it may be recovering from.
func TestSagasAreRecoveredWithRedisDown(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()
	s := startOrders(t, map[string]string{"REDIS_URL": u.String()})
	apple := s.inv.AddProduct(100, 10)
	ann, _ := s.token(t, auth.RoleCustomer)

	proxy.Cut()
	s.inv.SetFailing("reserve", true)
	r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 2))
	var o orderBody
	r.JSON(t, &o)
	if r.Status != http.StatusAccepted {
		t.Fatalf("create with inventory failing and Redis down: status %d, want 202; body %s", r.Status, r.Body)
	}
	if o.Status != "pending" {
		t.Fatalf("create with inventory failing and Redis down: order status %q, want pending", o.Status)
	}
	s.inv.SetFailing("reserve", false)
	s.waitFor(t, ann, o.ID, func(o orderBody) bool { return o.Status == "confirmed" })
}

// An order create whose commit failed (its outcome unknown to the service) keeps its
// Idempotency-Key: a retry with another body is 422, never the first order or a new
// one; a retry with the same body goes ahead.
func TestAnUnknownCreateOutcomeKeepsTheIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := startOrders(t, nil)
	apple := s.inv.AddProduct(100, 10)
	pear := s.inv.AddProduct(120, 10)
	ann, _ := s.token(t, auth.RoleCustomer)
	ctx := context.Background()
	// A trigger that fails the COMMIT of every new order: to the service, a commit
	// that failed and one whose answer was lost look the same.
	for _, q := range []string{
		`CREATE FUNCTION lose_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'commit lost'; END $$`,
		`CREATE CONSTRAINT TRIGGER lose_commit AFTER INSERT ON orders DEFERRABLE INITIALLY DEFERRED
		 FOR EACH ROW EXECUTE FUNCTION lose_commit()`,
	} {
		if _, err := s.db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	key := []string{"Idempotency-Key", "k-unknown-commit"}
	if r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 1), key...); r.Status < 500 {
		t.Fatalf("create with a failing commit: %d %s", r.Status, r.Body)
	}
	if _, err := s.db.Exec(ctx, `DROP TRIGGER lose_commit ON orders`); err != nil {
		t.Fatal(err)
	}
	d := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", pear, 1), key...).Problem(t, http.StatusUnprocessableEntity)
	if len(d.Errors) != 1 {
		t.Errorf("another body with the key: %d field errors %+v, want one", len(d.Errors), d.Errors)
	} else if d.Errors[0].Field != "Idempotency-Key" {
		t.Errorf("another body with the key: field %q named, want Idempotency-Key", d.Errors[0].Field)
	}
	r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 1), key...)
	var o orderBody
	r.JSON(t, &o)
	if r.Status != http.StatusCreated {
		t.Errorf("the same body again: status %d, want 201; body %s", r.Status, r.Body)
	}
	if o.Status != "confirmed" {
		t.Errorf("the same body again: order status %q, want confirmed", o.Status)
	}
	if len(o.Items) == 0 {
		t.Errorf("the same body again: no items, want the apple %s", apple)
	} else if o.Items[0].ProductID != apple.String() {
		t.Errorf("the same body again: product %s, want the apple %s", o.Items[0].ProductID, apple)
	}
}

// Only a confirmed order can be cancelled: a second cancel is 409, like any order
// that is not confirmed.
func TestCancellingTwiceIsAConflict(t *testing.T) {
	t.Parallel()
	s := startOrders(t, nil)
	apple := s.inv.AddProduct(100, 10)
	ann, _ := s.token(t, auth.RoleCustomer)
	var o orderBody
	call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 1)).JSON(t, &o)
	if r := call(t, http.MethodPost, s.url+"/api/v1/orders/"+o.ID+"/cancel", ann, ""); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	d := call(t, http.MethodPost, s.url+"/api/v1/orders/"+o.ID+"/cancel", ann, "").Problem(t, http.StatusConflict)
	if d.Type != problem.TypePrefix+"not_cancellable" {
		t.Errorf("second cancel: %+v", d)
	}
}

// An Idempotency-Key names its order for good: once the key's row is gone (after its
// retention, or released after an unknown commit) a different request with the key is
// still refused, not answered with the order another request made.
func TestAForgottenKeyStillCannotFetchAnotherRequestsOrder(t *testing.T) {
	t.Parallel()
	s := startOrders(t, nil)
	apple := s.inv.AddProduct(100, 10)
	pear := s.inv.AddProduct(120, 10)
	ann, _ := s.token(t, auth.RoleCustomer)
	key := []string{"Idempotency-Key", "k-forgotten"}
	var first orderBody
	if r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 1), key...); r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	} else {
		r.JSON(t, &first)
	}
	if _, err := s.db.Exec(context.Background(), `DELETE FROM idempotency_keys`); err != nil {
		t.Fatal(err)
	}
	d := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", pear, 1), key...).Problem(t, http.StatusUnprocessableEntity)
	if len(d.Errors) != 1 {
		t.Errorf("another body with a forgotten key: %d field errors %+v, want one", len(d.Errors), d.Errors)
	} else if d.Errors[0].Field != "Idempotency-Key" {
		t.Errorf("another body with a forgotten key: field %q named, want Idempotency-Key", d.Errors[0].Field)
	}
	var again orderBody
	r := call(t, http.MethodPost, s.url+"/api/v1/orders", ann, orderJSON("pm_card_visa", apple, 1), key...)
	r.JSON(t, &again)
	if r.Status != http.StatusCreated {
		t.Errorf("the same body with a forgotten key: status %d, want 201; body %s", r.Status, r.Body)
	}
	if again.ID != first.ID {
		t.Errorf("the same body with a forgotten key: order %s, want the first %s", again.ID, first.ID)
	}
}
