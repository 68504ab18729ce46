package main

import (
	"bytes"
	"strings"
	"testing"
)

// The flags are checked before anything starts: these cases need no servers.
func TestBadFlagsAreRefusedBeforeAnythingStarts(t *testing.T) {
	var errOut bytes.Buffer
	stderr = &errOut
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"chaos", "-rate", "0"}, "-rate must be above zero"},
		{[]string{"chaos", "extra"}, "unexpected arguments"},
		{[]string{"chaos", "-duration", "soon"}, "invalid value"},
	} {
		err := run(t.Context(), c.args, func(string) string { return "" }, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v; want an error saying %q", c.args, err, c.want)
		}
	}
	errOut.Reset()
	if err := run(t.Context(), []string{"chaos", "-h"}, func(string) string { return "" }, &bytes.Buffer{}); err != nil {
		t.Errorf("-h: %v", err)
	}
	if !strings.Contains(errOut.String(), "private Postgres") {
		t.Errorf("-h printed %q; want the usage, with \"private Postgres\" in it", errOut.String())
	}
	if !strings.Contains(errOut.String(), "-orders") {
		t.Errorf("-h printed %q; want the flags, -orders among them", errOut.String())
	}
}
