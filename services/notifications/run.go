package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/metrics"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/httpapi"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/intake"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/mail"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/postgres/migrations"
)

// settings is the notifications service's configuration: the platform's shared
// settings plus its own.
type settings struct {
	platform.Config
	SMTPAddr string          // SMTP_ADDR: the mail server (Mailpit locally)
	MailFrom netmail.Address // MAIL_FROM: the sender of every e-mail
	// EmailMaxRetry is how many times, at least, an e-mail that fails for a reason
	// that may pass (the mail server down, a 4xx reply) is retried before it may be
	// given up (EMAIL_MAX_RETRY).
	EmailMaxRetry int
	// EmailGiveUpAfter is how old, at least, such an e-mail must be before it is given
	// up and its notification marked failed (EMAIL_GIVE_UP_AFTER): the longest mail
	// server outage that loses no e-mail. Both it and EmailMaxRetry must be reached.
	EmailGiveUpAfter time.Duration
	// EmailRetryCap is the longest wait between two tries of an e-mail
	// (EMAIL_RETRY_CAP).
	EmailRetryCap time.Duration
	// ConsumerName names this replica in the consumer group (CONSUMER_NAME); empty
	// means "notifications@<host name>". It must be stable across restarts, so that
	// a restarted replica takes back its own unacknowledged entries at once, and
	// unique among replicas.
	ConsumerName string
	// InboxRetention is how long the ids of handled events are kept to recognise a
	// redelivery (INBOX_RETENTION).
	InboxRetention time.Duration
	// DLQMaxLen trims events.dlq to about this many entries (DLQ_MAXLEN).
	DLQMaxLen int
	// ReportEmail is where the daily sales report goes (REPORT_EMAIL): a bare address
	// that must be a registered user's, the admin's. "" (REPORT_EMAIL=off) means
	// reports are not mailed.
	ReportEmail string
}

// maxGiveUpAfter bounds EMAIL_GIVE_UP_AFTER: a notification still queued after a
// month is news nobody wants any more, and the task's retry budget grows with it.
const maxGiveUpAfter = 30 * 24 * time.Hour

// reportsOff is the REPORT_EMAIL value that turns report e-mails off. An empty
// variable cannot: getenv cannot tell it from an unset one, which means the default.
const reportsOff = "off"

// loadSettings reads the configuration; the error names every bad variable.
func loadSettings(getenv func(string) string) (settings, error) {
	env := config.New(getenv)
	s := settings{
		Config:           platform.LoadConfig(env, "notifications", ":8085", ":9085"),
		SMTPAddr:         env.Addr("SMTP_ADDR", "127.0.0.1:1025"),
		EmailMaxRetry:    env.Int("EMAIL_MAX_RETRY", notification.DefaultGiveUp.Retries, 0, 25),
		EmailGiveUpAfter: env.Duration("EMAIL_GIVE_UP_AFTER", notification.DefaultGiveUp.After),
		EmailRetryCap:    env.Duration("EMAIL_RETRY_CAP", jobs.DefaultEmailRetryCap),
		ConsumerName:     env.String("CONSUMER_NAME", ""),
		InboxRetention:   env.Duration("INBOX_RETENTION", tasks.DefaultInboxRetention),
		DLQMaxLen:        env.Int("DLQ_MAXLEN", events.DefaultDLQMaxLen, 100, 10_000_000),
	}
	var limitErrs []error
	if s.EmailGiveUpAfter > maxGiveUpAfter {
		limitErrs = append(limitErrs, fmt.Errorf("bad configuration: EMAIL_GIVE_UP_AFTER=%s: want at most %s", s.EmailGiveUpAfter, maxGiveUpAfter))
	}
	if s.InboxRetention < time.Hour {
		// Redeliveries come minutes apart (retries, XAUTOCLAIM after 30 s): an inbox
		// that forgets within the hour would let them through as new events.
		limitErrs = append(limitErrs, fmt.Errorf("bad configuration: INBOX_RETENTION=%s: want at least 1h", s.InboxRetention))
	}
	if s.EmailRetryCap < time.Second || s.EmailRetryCap > time.Hour {
		limitErrs = append(limitErrs, fmt.Errorf("bad configuration: EMAIL_RETRY_CAP=%s: want from 1s to 1h", s.EmailRetryCap))
	}
	from := env.String("MAIL_FROM", "Bazaar <no-reply@bazaar.local>")
	var fromErr error
	if addr, err := netmail.ParseAddress(from); err != nil {
		fromErr = fmt.Errorf("bad configuration: MAIL_FROM=%q: want an address such as \"Bazaar <no-reply@bazaar.local>\"", from)
	} else {
		s.MailFrom = *addr
	}
	var reportErr error
	switch report := env.String("REPORT_EMAIL", "admin@bazaar.local"); {
	case strings.EqualFold(report, reportsOff): // s.ReportEmail stays "": not mailed
	case !bareAddress(report):
		reportErr = fmt.Errorf("bad configuration: REPORT_EMAIL=%q: want a bare address such as admin@bazaar.local, or %q", report, reportsOff)
	default:
		s.ReportEmail = report
	}
	if err := errors.Join(append([]error{env.Err(), fromErr, reportErr}, limitErrs...)...); err != nil {
		return settings{}, err
	}
	return s, nil
}

// bareAddress reports whether s is one e-mail address with nothing around it.
func bareAddress(s string) bool {
	addr, err := netmail.ParseAddress(s)
	return err == nil && addr.Address == s && addr.Name == ""
}

// run starts the notifications service: it consumes user, order and payment events,
// and the daily sales report (for the admin), into notification rows, sends each as
// an e-mail through the email:send task, and lists a user's notifications.
//
//	events.users/orders/payments ──consumer──▶ notifications row (queued) ──NOTIFY──▶ dispatcher
//	  (inbox + row in one transaction)                                                 │ enqueue email:send
//	                                             row sent/failed ◀── worker ◀── task queue (asynq)
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	if platform.Probing(args) {
		return platform.Probe(ctx, cfg.InternalAddr)
	}
	p, err := platform.Start(ctx, cfg.Config, migrations.FS, stdout)
	if err != nil {
		return err
	}
	defer p.Close()
	reportEmail := cfg.ReportEmail
	if reportEmail == "" {
		reportEmail = reportsOff
	}
	p.Log.Info("notifications settings", "smtp_addr", cfg.SMTPAddr, "mail_from", cfg.MailFrom.String(),
		"email_max_retry", cfg.EmailMaxRetry, "email_give_up_after", cfg.EmailGiveUpAfter.String(),
		"email_retry_cap", cfg.EmailRetryCap.String(), "consumer_name", cfg.ConsumerName, "report_email", reportEmail,
		"inbox_retention", cfg.InboxRetention.String(), "dlq_maxlen", cfg.DLQMaxLen)

	store := postgres.NewStore(p.Pool)
	mailer := mail.New(cfg.SMTPAddr, cfg.MailFrom, 10*time.Second)
	// Without SMTP the service still takes events in; e-mails wait and retry.
	p.Health.Optional("smtp", mailer.Ping)

	// email:send: the worker sends, the dispatcher enqueues from the rows.
	queue, err := p.Tasks()
	if err != nil {
		return err
	}
	giveUp := notification.GiveUp{Retries: cfg.EmailMaxRetry, After: cfg.EmailGiveUpAfter}
	task := jobs.EmailTask(giveUp, cfg.EmailRetryCap)
	jobs.RegisterEmail(queue.Worker, task, notification.NewSender(store, mailer, time.Now, giveUp), p.Log)
	inspector, err := tasks.NewInspector(cfg.RedisURL, cfg.Name)
	if err != nil {
		return err
	}
	defer inspector.Close()
	listener := postgres.NewListener(p.Pool, p.Log)
	dispatcher := notification.NewDispatcher(store, jobs.NewEmailEnqueuer(task, queue.Client, inspector), p.Log,
		notification.DispatcherOptions{})
	p.Background("notify listener", listener.Run)
	p.Background("email dispatcher", func(ctx context.Context) error { return dispatcher.Run(ctx, listener.C()) })

	consumer := events.NewConsumer(p.Pool, p.Redis, p.Log,
		intake.Handler(func(tx pgx.Tx) intake.Store { return store.InTx(tx) }, time.Now, intake.Options{ReportEmail: cfg.ReportEmail}),
		events.ConsumerOptions{Group: "notifications", Name: cfg.ConsumerName, Streams: intake.Streams,
			DLQMaxLen: int64(cfg.DLQMaxLen), Registerer: p.Metrics, Tracer: p.Tracing.Provider})
	p.Background("event consumer", consumer.Run)
	// The inbox would otherwise keep every event id for ever. Past the retention a
	// redelivered event still writes no second notification: event_id is unique there.
	if err := p.CleanInbox(cfg.InboxRetention); err != nil {
		return err
	}

	p.Metrics.MustRegister(metrics.QueriedGauge(prometheus.GaugeOpts{
		Name: "notifications_queued", Help: "Notifications not yet sent or failed: the e-mail backlog; -1 when the database did not answer the scrape.",
	}, store.CountQueued))

	public := p.Router()
	httpapi.Mount(public, httpapi.Deps{
		Log:           p.Log,
		Verifier:      p.TokenVerifier(),
		Notifications: notification.NewService(store, mailer.MessageID),
	})
	return p.Serve(ctx, public, p.InternalRouter())
}
