package platform

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// ProbeFlag is the argument that makes a program probe itself instead of running:
// `users -probe`. A container's healthcheck runs it, because the images hold nothing
// but the program (no shell, no curl) and a probe must use what the program knows: its
// own listen address, from the same environment.
const ProbeFlag = "-probe"

// ProbeTimeout bounds one probe: a healthcheck that hangs tells nothing.
const ProbeTimeout = 3 * time.Second

// Probing reports whether args (the program's name, then its arguments) ask for the
// probe rather than the program.
func Probing(args []string) bool {
	return len(args) == 2 && args[1] == ProbeFlag
}

// Probe asks the program listening on addr (a listen address such as ":9090", the
// listener serving /readyz) whether it is ready, and returns nil only when /readyz
// answers 200. A listener on every interface is asked on loopback, where the probe
// runs: inside the program's own container or pod.
func Probe(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("probe: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe: GET %s answered %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
