// Package relay publishes a tenant's events to a message broker (NATS
// JetStream) for consumers outside PostgreSQL.
//
// A relay is a durable subscription of the tenant named "relay:<name>": one
// relay per tenant and name runs at a time (the others stand by and take
// over when its lease expires), and its lag shows in `esadmin subscription
// list` and `esadmin doctor`. Each batch is published asynchronously from
// the subscription's handler; the checkpoint moves only after the broker
// acknowledged every message of the batch. A relay that dies between the
// publish and the checkpoint sends the batch again on restart: every message
// carries the event id as its message id, so the broker's de-duplication
// drops the re-sends. While the broker is down or slow the batch rolls back
// and is retried with backoff; nothing is skipped.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/jackc/pgx/v5"
)

// ErrInvalidConfig: the relay's configuration is wrong; nothing was started
// or written.
var ErrInvalidConfig = errors.New("relay: invalid configuration")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// DefaultSubject is the subject template: one subject per tenant and event
// type.
const DefaultSubject = "pges.{tenant}.{type}"

// Config configures a relay. Name is required; every other field documents
// its default.
type Config struct {
	// Name names the relay; its subscription is "relay:<Name>".
	Name string
	// Filter selects the events to publish (default: all of the tenant's).
	Filter pges.SubscriptionFilter
	// Subject is the subject template: tokens separated by "." that are
	// either literal or one of {tenant}, {type} and {stream}. Values are
	// escaped into one token each (see EscapeToken). Default DefaultSubject.
	Subject string
	// Start applies when the relay is new: default the beginning of the log.
	Start pges.Start
	// BatchSize is the most events published per checkpoint. Default 1000.
	BatchSize int
	// LeaseTTL is the subscription's lease (see pges.SubscriptionConfig).
	// Default 10s.
	LeaseTTL time.Duration
	// AckTimeout bounds the wait for a batch's acknowledgements; it must be
	// below LeaseTTL. Default LeaseTTL/2.
	AckTimeout time.Duration
	// MaxRetryBackoff caps the wait between attempts while the broker
	// fails. Default LeaseTTL/4.
	MaxRetryBackoff time.Duration
	// Owner names this instance in the lease. Default host:pid:random.
	Owner string
	// Logger receives retries and warnings. Default: discarded.
	Logger *slog.Logger
}

// validName keeps "relay:<name>" a valid subscription name.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,93}$`)

// SubscriptionName is the durable subscription a relay of this name uses.
func SubscriptionName(name string) string { return "relay:" + name }

// Message is one event as a broker receives it.
type Message struct {
	Subject string
	// ID is the event id: the broker's de-duplication key.
	ID      string
	Headers []Header
	Body    []byte
	// Stream is the event's stream id, for the order check.
	Stream string
}

// Header is one message header. Values taken from user data are escaped
// (EscapeHeader).
type Header struct{ Key, Value string }

// Broker publishes a relay's batches. Publish sends without waiting; Confirm
// waits for the broker's acknowledgement of every message sent since the
// last Confirm or Reset.
type Broker interface {
	// Publish sends m. An error means the batch cannot go on (the relay
	// sends nothing more of it and retries it whole).
	Publish(m *Message) error
	// Confirm returns nil once every message sent since the last
	// Confirm/Reset was acknowledged, or an error after waiting at most
	// timeout (the batch is retried).
	Confirm(ctx context.Context, timeout time.Duration) (Stats, error)
	// Reset forgets the messages sent since the last Confirm.
	Reset()
}

// Stats counts one batch's acknowledgements.
type Stats struct {
	// Acked messages, of which Duplicates the broker already held (a
	// re-send it de-duplicated).
	Acked, Duplicates int
	// Reordered counts messages the broker stored after a message of the
	// same stream sent before them in the batch had failed: per-stream
	// order on the broker is broken for them (logged as an error).
	Reordered int
}

// Relay publishes a tenant's events through a Broker.
type Relay struct {
	ts      *pges.TenantStore
	broker  Broker
	cfg     Config
	subject *template
	log     *slog.Logger

	batchTx pgx.Tx // the transaction of the batch being sent
	broken  error  // the batch stopped sending
	stats   Stats  // totals, updated by the relay's goroutine
}

// New checks cfg and returns a relay of ts's events through b.
func New(ts *pges.TenantStore, b Broker, cfg Config) (*Relay, error) {
	if ts == nil || b == nil {
		return nil, invalid("a tenant store and a broker are required")
	}
	if !validName.MatchString(cfg.Name) {
		return nil, invalid("relay name %q: 1-94 characters A-Z, a-z, 0-9, \"_\", \".\", \":\" or \"-\", starting with a letter or digit", cfg.Name)
	}
	if cfg.BatchSize < 0 || cfg.LeaseTTL < 0 || cfg.AckTimeout < 0 || cfg.MaxRetryBackoff < 0 {
		return nil, invalid("sizes and durations must not be negative")
	}
	if cfg.Subject == "" {
		cfg.Subject = DefaultSubject
	}
	tpl, err := parseTemplate(cfg.Subject)
	if err != nil {
		return nil, err
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1000
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = cfg.LeaseTTL / 2
	}
	if cfg.AckTimeout >= cfg.LeaseTTL {
		return nil, invalid("the ack timeout (%s) must be below the lease TTL (%s): a batch must end before its lease", cfg.AckTimeout, cfg.LeaseTTL)
	}
	if cfg.MaxRetryBackoff == 0 {
		cfg.MaxRetryBackoff = cfg.LeaseTTL / 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{ts: ts, broker: b, cfg: cfg, subject: tpl, log: cfg.Logger}, nil
}

// Run publishes until ctx ends (it returns nil) or the relay fails for good
// (an error of the tenant or the configuration). Broker and database errors
// are retried with backoff.
func (r *Relay) Run(ctx context.Context) error {
	return r.ts.Subscribe(ctx, pges.SubscriptionConfig{
		Name:            SubscriptionName(r.cfg.Name),
		Filter:          r.cfg.Filter,
		Start:           r.cfg.Start,
		BatchSize:       r.cfg.BatchSize,
		LeaseTTL:        r.cfg.LeaseTTL,
		Owner:           r.cfg.Owner,
		RetryBackoff:    50 * time.Millisecond,
		MaxRetryBackoff: r.cfg.MaxRetryBackoff,
		Logger:          r.log,
		Handler:         r.handle,
		BeforeCommit:    r.confirm,
	})
}

// Stats returns the acknowledgements counted since Run started; call it
// after Run returned, or from the goroutine running it.
func (r *Relay) Stats() Stats { return r.stats }

// handle publishes one event of the batch of tx. It never fails: a broker
// error stops the batch's sending and confirm reports it, so a broker that
// is down is retried without limit instead of counting as a handler failure.
func (r *Relay) handle(_ context.Context, tx pgx.Tx, ev pges.RecordedEvent) error {
	if tx != r.batchTx { // a new batch (a failed one may have left messages)
		r.broker.Reset()
		r.batchTx, r.broken = tx, nil
	}
	if r.broken != nil {
		return nil
	}
	if err := r.broker.Publish(r.message(ev)); err != nil {
		r.broken = err
	}
	return nil
}

// confirm waits for the broker's acknowledgement of the whole batch before
// the checkpoint moves.
func (r *Relay) confirm(ctx context.Context, tx pgx.Tx) error {
	defer func() { r.batchTx, r.broken = nil, nil }()
	st, err := r.broker.Confirm(ctx, r.cfg.AckTimeout)
	if err == nil && r.broken == nil {
		// The checkpoint's commit need not wait for its WAL flush: if
		// PostgreSQL crashes before the flush, the relay sends the batch
		// again and the broker drops the duplicates.
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
	}
	r.stats.Acked += st.Acked
	r.stats.Duplicates += st.Duplicates
	if st.Reordered > 0 {
		r.stats.Reordered += st.Reordered
		r.log.Error("relay: the broker stored messages after an earlier message of their stream failed: per-stream order is broken for them",
			"relay", r.cfg.Name, "messages", st.Reordered)
	}
	if r.broken != nil {
		return fmt.Errorf("relay %q: publish: %w", r.cfg.Name, r.broken)
	}
	if err != nil {
		return fmt.Errorf("relay %q: %w", r.cfg.Name, err)
	}
	return nil
}

// message builds ev's broker message: the payload as body, the envelope as
// headers.
func (r *Relay) message(ev pges.RecordedEvent) *Message {
	id := ev.ID.String()
	h := make([]Header, 0, 10)
	h = append(h, Header{"Pges-Tenant", EscapeHeader(ev.TenantID)}, Header{"Pges-Position", strconv.FormatInt(ev.Position, 10)},
		Header{"Pges-Type", EscapeHeader(ev.Type)}, Header{"Pges-Schema-Version", strconv.Itoa(ev.SchemaVersion)},
		Header{"Pges-Recorded-At", ev.RecordedAt.UTC().Format(time.RFC3339Nano)})
	if ev.StreamID != "" {
		h = append(h, Header{"Pges-Stream", EscapeHeader(ev.StreamID)}, Header{"Pges-Stream-Version", strconv.FormatInt(ev.StreamVersion, 10)})
	}
	if v := ev.Metadata.CorrelationID; v != "" {
		h = append(h, Header{"Pges-Correlation-Id", EscapeHeader(v)})
	}
	if v := ev.Metadata.CausationID; v != "" {
		h = append(h, Header{"Pges-Causation-Id", EscapeHeader(v)})
	}
	h = append(h, Header{"Content-Type", "application/json"})
	return &Message{Subject: r.subject.render(ev), ID: id, Headers: h, Body: ev.Payload, Stream: ev.StreamID}
}

// template is a parsed subject template.
type template struct{ tokens []string }

var placeholders = map[string]bool{"{tenant}": true, "{type}": true, "{stream}": true}

func parseTemplate(s string) (*template, error) {
	tokens := strings.Split(s, ".")
	for _, tok := range tokens {
		if placeholders[tok] {
			continue
		}
		if tok == "" || strings.ContainsAny(tok, "{}*> \t\r\n") {
			return nil, invalid("subject template %q: every \".\"-separated token is a literal (no spaces, wildcards or braces) or one of {tenant}, {type}, {stream}", s)
		}
	}
	return &template{tokens: tokens}, nil
}

func (t *template) render(ev pges.RecordedEvent) string {
	var b strings.Builder
	for i, tok := range t.tokens {
		if i > 0 {
			b.WriteByte('.')
		}
		switch tok {
		case "{tenant}":
			b.WriteString(EscapeToken(ev.TenantID))
		case "{type}":
			b.WriteString(EscapeToken(ev.Type))
		case "{stream}":
			b.WriteString(EscapeToken(ev.StreamID))
		default:
			b.WriteString(tok)
		}
	}
	return b.String()
}

// Wildcard returns the subject filter matching every subject of the template
// (each placeholder a "*"), for a JetStream stream's subjects.
func Wildcard(subject string) (string, error) {
	if subject == "" {
		subject = DefaultSubject
	}
	t, err := parseTemplate(subject)
	if err != nil {
		return "", err
	}
	out := make([]string, len(t.tokens))
	for i, tok := range t.tokens {
		out[i] = tok
		if placeholders[tok] {
			out[i] = "*"
		}
	}
	return strings.Join(out, "."), nil
}

const hexDigits = "0123456789ABCDEF"

// EscapeToken makes s one subject token: bytes other than A-Z, a-z, 0-9,
// "-" and "_" become %XX (so "." and spaces cannot split or break the
// subject), and the empty string becomes a lone "%", which no escaped value
// can be. url.PathUnescape reverses it (except the lone "%").
func EscapeToken(s string) string {
	if s == "" {
		return "%"
	}
	return escape(s, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	})
}

// EscapeHeader makes s a safe header value: "%", control characters and
// spaces become %XX, so a value cannot end a header line or lose its
// leading or trailing spaces. url.PathUnescape reverses it.
func EscapeHeader(s string) string {
	return escape(s, func(c byte) bool { return c > ' ' && c != '%' && c != 0x7f })
}

func escape(s string, keep func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; keep(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return string(b)
}
