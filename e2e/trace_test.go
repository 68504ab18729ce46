package e2e

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/programs"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collectedSpan is one span as a program exported it.
type collectedSpan struct {
	service, name, trace, id, parent string
}

// spanCollector stands for an OpenTelemetry Collector (the world outside): an
// OTLP/HTTP receiver on /v1/traces that keeps every span it is sent, in memory.
type spanCollector struct {
	mu    sync.Mutex
	spans []collectedSpan
	url   string
}

func newSpanCollector(t *testing.T) *spanCollector {
	c := &spanCollector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || err != nil || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "want an OTLP/HTTP protobuf export on /v1/traces", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					c.spans = append(c.spans, collectedSpan{service: service, name: s.Name,
						trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId), parent: hex.EncodeToString(s.ParentSpanId)})
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// trace is every span collected so far of the trace that has a span named name.
func (c *spanCollector) trace(name string) []collectedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.spans, func(s collectedSpan) bool { return s.name == name })
	if i < 0 {
		return nil
	}
	var out []collectedSpan
	for _, s := range c.spans {
		if s.trace == c.spans[i].trace {
			out = append(out, s)
		}
	}
	return out
}

// One order is one trace: the request through the gateway, the saga in orders, its
// calls to inventory and payments and their SQL, the events they publish, the
// notifications consumer handling order.confirmed, and the e-mail task that sends the
// confirmation, all under the gateway's span, every program exporting to a collector
// given by the standard base URL (OTEL_EXPORTER_OTLP_ENDPOINT).
func TestOneOrderIsOneTraceAcrossEveryProgramEventAndTask(t *testing.T) {
	t.Parallel()
	collector := newSpanCollector(t)
	env := map[string]map[string]string{}
	for _, p := range programs.All {
		env[p.Name] = map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
	}
	s := startStack(t, faultConfig{programEnv: env})
	sh := s.shop()
	p := sh.createProduct(t, 10, 1500)
	c := sh.newCustomer(t)
	o, _ := sh.placeOrder(t, c, visa, item{p.ID, 1})
	if o.Status != "confirmed" {
		t.Fatalf("order %s is %s; want confirmed", o.ID, o.Status)
	}
	sh.mailWithSubject(t, c.Email, "order "+shortID(o.ID)+" is confirmed")

	// Each must be in the order's trace: by program, a span name (or its start).
	want := []struct{ service, name string }{
		{"gateway", "POST /api/v1/orders"},
		{"orders", "POST /api/v1/orders"},
		{"orders", "INSERT "}, // the order's own SQL
		{"inventory", "POST /internal/"},
		{"payments", "POST /internal/"},
		{"orders", "publish events.orders"},
		{"notifications", "process events.orders"},
		{"notifications", "enqueue email:send"},
		{"notifications", "run email:send"},
	}
	var spans []collectedSpan
	var missing []string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		spans = collector.trace("POST /api/v1/orders")
		missing = missing[:0]
		for _, w := range want {
			if !slices.ContainsFunc(spans, func(s collectedSpan) bool { return s.service == w.service && strings.HasPrefix(s.name, w.name) }) {
				missing = append(missing, w.service+": "+w.name)
			}
		}
		if len(missing) == 0 {
			break
		}
	}
	if len(missing) > 0 {
		var got []string
		for _, s := range spans {
			got = append(got, s.service+": "+s.name)
		}
		t.Fatalf("the order's trace lacks %q; it has %q", missing, got)
	}

	// One trace, one root: the gateway's span; every other span's parent is in it.
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.id] = true
	}
	var roots []string
	for _, s := range spans {
		if s.parent == "" || s.parent == "0000000000000000" || !ids[s.parent] {
			roots = append(roots, s.service+": "+s.name)
		}
	}
	if len(roots) != 1 || roots[0] != "gateway: POST /api/v1/orders" {
		t.Errorf("the trace's roots are %q; want the gateway's request alone", roots)
	}
	// Named by route, never by a raw path: no span carries the order's id.
	for _, s := range spans {
		if strings.Contains(s.name, o.ID) || strings.Contains(s.name, p.ID) {
			t.Errorf("span %q of %s is named with an id", s.name, s.service)
		}
	}
}
