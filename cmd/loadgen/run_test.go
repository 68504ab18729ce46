package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
)

func noEnv(string) string { return "" }

// The tests share the package's stderr; none runs in parallel.

func TestRunRejectsBadFlags(t *testing.T) {
	var errOut bytes.Buffer
	stderr = &errOut
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-rate", "2", "-c", "3"}, "not both"},
		{[]string{"-payments", "amex=1"}, "unknown payment method"},
		{[]string{"-cancel", "2"}, "cancel fraction"},
		{[]string{"-url", "localhost:8080"}, "base URL"},
		{[]string{"-nope"}, "flag provided but not defined"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		err := run(context.Background(), append([]string{"loadgen"}, c.args...), noEnv, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v; want one saying %q", c.args, err, c.want)
		}
	}
}

func TestRunHelpIsNotAnError(t *testing.T) {
	var errOut bytes.Buffer
	stderr = &errOut
	if err := run(context.Background(), []string{"loadgen", "-h"}, noEnv, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"usage: loadgen", "-rate", "-accounts", "-token-cache", "LOADGEN_URL"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestRunSaysWhenTheGatewayIsDown(t *testing.T) {
	stderr = &bytes.Buffer{}
	url := closedport.URL(t)
	env := map[string]string{"LOADGEN_URL": url, "LOADGEN_TOKEN_CACHE": t.TempDir() + "/tokens.json"}
	var out bytes.Buffer
	err := run(context.Background(), []string{"loadgen", "-orders", "1"}, func(k string) string { return env[k] }, &out)
	if err == nil || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "is the stack running?") {
		t.Fatalf("err = %v; want one naming %s", err, url)
	}
	if out.Len() != 0 {
		t.Errorf("printed a summary of nothing:\n%s", out.String())
	}
}
