package storefront

import (
	"context"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/gateway/internal/inproc"
	"github.com/bazaar-shop/bazaar/gateway/internal/orderstory"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Stories tells an order's whole story (an *orderstory.Builder in the gateway).
type Stories interface {
	Build(ctx context.Context, orderID uuid.UUID, bearerToken string) (orderstory.Story, error)
}

// storyData is the order story page's data.
type storyData struct {
	Story    orderstory.Story
	TraceURL string // the trace in a viewer, "" when none runs
	Mailpit  string // the e-mails in Mailpit, "" when there is none
}

// adminOrder answers GET /admin/orders/{id}: one order's whole story, as
// GET /api/v1/admin/orders/{id}/story tells it, on one page.
func (s *Shop) adminOrder(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.adminOnly(w, r)
	if !ok {
		return
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		s.failed(w, r, "Order story", apperr.E(apperr.NotFound, "no such order"))
		return
	}
	story, err := s.stories.Build(inproc.WithCaller(r.Context(), r), id, sess.Tokens.Access)
	if err != nil {
		s.failed(w, r, "Order story", err)
		return
	}
	d := storyData{Story: story}
	if story.TraceID != "" && s.links.Trace != "" {
		d.TraceURL = strings.ReplaceAll(s.links.Trace, "{trace_id}", story.TraceID)
	}
	if s.links.Mailpit != "" && story.Order != nil {
		d.Mailpit = s.links.Mailpit
	}
	v := s.view(w, r, "Order "+orderRef(id.String())+": the whole story")
	v.Session, v.Nav, v.Data = sess, "admin", d
	s.render(w, r, http.StatusOK, "admin_order", v)
}
