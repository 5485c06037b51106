package pges

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/eventstore-go/pges/db"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Handler handles one delivered event inside tx, the transaction that also
// moves the subscription's checkpoint. Write a projection kept in
// PostgreSQL through tx, or append follow-up events through
// TenantStore.Tx(tx), and its effects commit exactly once with the
// checkpoint. Effects outside tx (a call to another service) are
// at-least-once: a batch whose commit fails, times out or loses its lease
// is delivered again. tx is scoped to the subscription's tenant. Returning
// an error rolls the batch back and retries it (see MaxAttempts).
type Handler func(ctx context.Context, tx pgx.Tx, ev RecordedEvent) error

// SubscriptionFilter selects the events a subscription receives. The zero
// filter matches every event of the tenant; set fields are AND-ed.
type SubscriptionFilter struct {
	// Types: the event's type is one of these.
	Types []string `json:"types,omitempty"`
	// Tags: the event carries every one of these.
	Tags []string `json:"tags,omitempty"`
	// StreamID: the event belongs to this stream.
	StreamID string `json:"stream,omitempty"`
	// StreamPrefix: the event's stream id starts with this.
	StreamPrefix string `json:"stream_prefix,omitempty"`
	// Group makes this consumer one member of a consumer group.
	Group *ConsumerGroup `json:"group,omitempty"`
}

// ConsumerGroup splits a subscription across Members consumers: member i
// receives the events whose key hashes to i modulo Members, so every
// stream (or tag value) goes to one member, in order. Each member keeps its
// own checkpoint and lease under the name "<name>[i/N]"; changing Members
// starts new checkpoints, so reset or delete the old members' rows.
type ConsumerGroup struct {
	Members int `json:"members"`
	Member  int `json:"member"`
	// Key is "stream" (the default: the stream id; events without a stream
	// all go to one member) or "tag:<prefix>" (the first tag starting with
	// prefix, e.g. "tag:student:").
	Key string `json:"key,omitempty"`
}

// Start is where a new subscription begins. The zero Start is the
// beginning of the log.
type Start struct {
	end      bool
	position int64
}

// StartAtBeginning delivers the whole log.
func StartAtBeginning() Start { return Start{} }

// StartAtEnd delivers events committed from now on (and possibly a few
// committed just before, whose transactions overlapped the start).
func StartAtEnd() Start { return Start{end: true} }

// StartAtPosition delivers the event at position p and everything after
// it (and possibly a few events just before p).
func StartAtPosition(p int64) Start { return Start{position: p} }

func (s Start) sql() string {
	switch {
	case s.end:
		return "end"
	case s.position > 0:
		return strconv.FormatInt(s.position, 10)
	}
	return "beginning"
}

// FailurePolicy says what happens to an event whose handler failed
// MaxAttempts times.
type FailurePolicy int

const (
	// StopOnFailure ends Subscribe with a *HandlerError; the checkpoint
	// stays before the event.
	StopOnFailure FailurePolicy = iota
	// ParkOnFailure records the event in the subscription's dead letters
	// (TenantStore.DeadLetters) and goes on.
	ParkOnFailure
)

// SubscriptionConfig configures Subscribe. Handler is required; every other
// field documents its default.
type SubscriptionConfig struct {
	// Name identifies a durable subscription: its checkpoint and lease are
	// stored per (tenant, name); 1-100 characters A-Z, a-z, 0-9, "_", ".",
	// ":" or "-". Empty: an ephemeral subscription (a tail) that stores
	// nothing and always begins at Start.
	Name    string
	Filter  SubscriptionFilter
	Handler Handler
	// Start applies when the subscription is new; afterwards it resumes
	// from its checkpoint (TenantStore.ResetSubscription moves it).
	Start Start
	// BatchSize is the most events handled in one transaction. Default 500.
	BatchSize int
	// PollInterval bounds the wait for new events when no notification
	// arrives (lost connection, missed wake-up). Default 1s.
	PollInterval time.Duration
	// LeaseTTL is how long a consumer's lease lasts without renewal; it is
	// renewed every LeaseTTL/3. A consumer that dies is replaced within
	// LeaseTTL + LeaseTTL/3. A batch must finish within LeaseTTL. Default 5s.
	LeaseTTL time.Duration
	// Owner names this consumer in the lease. Default host:pid:random.
	Owner string
	// MaxAttempts is how often an event's handler may fail before
	// OnFailure applies. Default 5.
	MaxAttempts int
	// RetryBackoff is the first wait after a failure, doubled on every
	// further failure up to MaxRetryBackoff. Defaults 100ms and 10s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	OnFailure       FailurePolicy
	// BeforeCommit, if set, runs once per batch after Handler accepted
	// every event of it, in tx before the checkpoint moves. An error rolls
	// the batch back and it is delivered again after RetryBackoff (doubled
	// up to MaxRetryBackoff), without limit and without counting against
	// MaxAttempts. It lets a handler send effects outside tx asynchronously
	// and wait here until they are confirmed (a broker's acknowledgements),
	// so the checkpoint never passes an event whose effect is not durable.
	BeforeCommit func(ctx context.Context, tx pgx.Tx) error
	// Logger receives retried errors. Default: discarded.
	Logger *slog.Logger
}

// HandlerError ends a subscription whose handler failed an event
// MaxAttempts times under StopOnFailure.
type HandlerError struct {
	TenantID, Subscription string
	Position               int64
	EventType              string
	Attempts               int
	Err                    error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("subscription %q of tenant %q: handler failed %d times on event %d (%s): %v",
		e.Subscription, e.TenantID, e.Attempts, e.Position, e.EventType, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

// ErrSubscriptionNotFound: no subscription of this name in the tenant.
var ErrSubscriptionNotFound = errors.New("subscription not found")

// errReload sends a consumer back to take its lease and stored checkpoint
// again.
var errReload = errors.New("subscription checkpoint must be reloaded")

// ErrLeaseLost: another consumer took over a subscription's lease, or it
// was reset, before this consumer could store its checkpoint. Subscribe
// handles it (the batch rolls back and the consumer stands by); SQL
// clients get it from es.commit_checkpoint.
var ErrLeaseLost = errors.New("subscription lease lost")

// logKey is the delivery order: (transaction id, position).
type logKey struct{ tx, pos int64 }

func (k logKey) less(o logKey) bool { return k.tx < o.tx || (k.tx == o.tx && k.pos < o.pos) }

// Subscribe delivers the tenant's events matching cfg.Filter to
// cfg.Handler, in one order per tenant that a late commit cannot slip
// behind: first the log from the checkpoint (catch-up), then new events as
// they commit, woken by the store's one LISTEN connection, with no seam
// between the two. It blocks until ctx ends (then it returns nil) or the
// subscription fails for good: a *HandlerError, or an error of the tenant
// or the configuration. Database errors are retried with backoff.
//
// A durable subscription (cfg.Name set) runs in one consumer at a time:
// others with the same name wait as standbys and take over when the lease
// of the active one expires or is released.
func (t *TenantStore) Subscribe(ctx context.Context, cfg SubscriptionConfig) error {
	s, err := t.newSubscriber(cfg)
	if err != nil {
		return err
	}
	w := t.store.listener.add(t.tenantID)
	defer t.store.listener.remove(w)
	return s.run(ctx, w)
}

type subscriber struct {
	t      *TenantStore
	cfg    SubscriptionConfig
	name   string // the stored name: Name, or Name[i/N] for a group member
	filter []byte
	log    *slog.Logger
}

func (t *TenantStore) newSubscriber(cfg SubscriptionConfig) (*subscriber, error) {
	if cfg.Handler == nil {
		return nil, invalid(-1, "subscription: Handler is required")
	}
	if cfg.BatchSize < 0 || cfg.PollInterval < 0 || cfg.LeaseTTL < 0 || cfg.MaxAttempts < 0 || cfg.RetryBackoff < 0 || cfg.MaxRetryBackoff < 0 || cfg.Start.position < 0 {
		return nil, invalid(-1, "subscription: sizes, durations and the start position must not be negative")
	}
	setDefault(&cfg.BatchSize, 500)
	setDefault(&cfg.PollInterval, time.Second)
	setDefault(&cfg.LeaseTTL, 5*time.Second)
	setDefault(&cfg.MaxAttempts, 5)
	setDefault(&cfg.RetryBackoff, 100*time.Millisecond)
	setDefault(&cfg.MaxRetryBackoff, 10*time.Second)
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), uuid.NewString()[:8])
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" && cfg.OnFailure == ParkOnFailure {
		return nil, invalid(-1, "subscription: ParkOnFailure needs a named subscription")
	}
	name := cfg.Name
	if g := cfg.Filter.Group; g != nil {
		if g.Members < 1 || g.Member < 0 || g.Member >= g.Members {
			return nil, invalid(-1, "subscription: a consumer group needs Members >= 1 and 0 <= Member < Members")
		}
		if name != "" && g.Members > 1 {
			name = fmt.Sprintf("%s[%d/%d]", name, g.Member, g.Members)
		}
	}
	filter, err := json.Marshal(cfg.Filter)
	if err != nil {
		return nil, err
	}
	return &subscriber{t: t, cfg: cfg, name: name, filter: filter, log: cfg.Logger}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (s *subscriber) durable() bool { return s.name != "" }

func (s *subscriber) run(ctx context.Context, w *waiter) error {
	q, pool, tenant := s.t.store.queries, s.t.store.pool, s.t.tenantID
	var start logKey
	err := s.retry(ctx, func() error {
		var err error
		if s.durable() {
			_, err = q.Subscribe(ctx, pool, db.SubscribeParams{TenantID: tenant, Name: s.name, Filter: s.filter, Start: s.cfg.Start.sql()})
		} else {
			start, err = s.ephemeralStart(ctx)
		}
		return err
	})
	if err != nil {
		return s.stopped(ctx, err)
	}
	if !s.durable() {
		return s.stopped(ctx, s.deliverLoop(ctx, w, &start))
	}
	for {
		cp, err := s.acquire(ctx)
		if err != nil {
			return s.stopped(ctx, err)
		}
		err = s.deliverLoop(ctx, w, &cp)
		switch {
		case errors.Is(err, ErrLeaseLost):
			s.log.Info("subscription lease lost, standing by", "subscription", s.name, "owner", s.cfg.Owner)
			continue
		case errors.Is(err, errReload):
			s.log.Warn("subscription: commit outcome unknown, reloading the checkpoint", "subscription", s.name, "err", err)
			continue
		}
		// Whatever ended it, hand the lease over at once (cp has been
		// moved by deliverLoop).
		s.release(cp)
		return s.stopped(ctx, err)
	}
}

// stopped maps the end of ctx to a clean stop.
func (s *subscriber) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *subscriber) ephemeralStart(ctx context.Context) (logKey, error) {
	// es.log_key_at checks the tenant; without a position or time it
	// returns the current horizon (the end).
	arg := db.LogKeyAtParams{TenantID: s.t.tenantID}
	if p := s.cfg.Start.position; p > 0 {
		arg.Position = pgtype.Int8{Int64: p, Valid: true}
	}
	tx, err := s.t.store.queries.LogKeyAt(ctx, s.t.store.pool, arg)
	if err != nil || (!s.cfg.Start.end && s.cfg.Start.position == 0) {
		return logKey{}, translate(err, "")
	}
	return logKey{tx, 0}, nil
}

// acquire waits until this consumer holds the lease and returns the stored
// checkpoint.
func (s *subscriber) acquire(ctx context.Context) (logKey, error) {
	for {
		var row db.AcquireSubscriptionRow
		err := s.retry(ctx, func() error {
			var err error
			row, err = s.t.store.queries.AcquireSubscription(ctx, s.t.store.pool, db.AcquireSubscriptionParams{
				TenantID: s.t.tenantID, Name: s.name, Owner: s.cfg.Owner, TtlSeconds: s.cfg.LeaseTTL.Seconds()})
			return err
		})
		if err != nil {
			return logKey{}, err
		}
		if row.Acquired {
			return logKey{row.CheckpointTx, row.CheckpointPosition}, nil
		}
		if _, err := sleep(ctx, s.cfg.LeaseTTL/3, nil); err != nil {
			return logKey{}, err
		}
	}
}

// release stores the checkpoint and gives the lease up, so a standby takes
// over at once; best effort, after ctx ended.
func (s *subscriber) release(cp logKey) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q, pool := s.t.store.queries, s.t.store.pool
	_ = q.CommitCheckpoint(ctx, pool, s.checkpointParams(cp, 0))
	_ = q.ReleaseSubscription(ctx, pool, db.ReleaseSubscriptionParams{TenantID: s.t.tenantID, Name: s.name, Owner: s.cfg.Owner})
}

func (s *subscriber) checkpointParams(cp logKey, lastPosition int64) db.CommitCheckpointParams {
	return db.CommitCheckpointParams{TenantID: s.t.tenantID, Name: s.name, Owner: s.cfg.Owner, TtlSeconds: s.cfg.LeaseTTL.Seconds(),
		CheckpointTx: cp.tx, CheckpointPosition: cp.pos, LastPosition: lastPosition}
}

// deliverLoop reads and delivers batches from *cp, moving it, while this consumer holds
// the lease.
//
// Wake-ups: only one appending transaction per tenant at a time notifies
// (migration 00007); the others had written when it committed, so their ids
// are below the next transaction id seen by the first read after the
// wake-up, and they hold the tenant's writer lock until they end. After a
// wake-up the loop keeps polling, backing off from minPoll, until its
// horizon passes that id, or until a read finds none of them in flight
// (es.log_horizon's oldest_writer) and one more read, whose snapshot is
// taken after they all ended, has delivered them. (The horizon alone can
// stay below that id while a stranger's transaction holds a later id open:
// the horizon is at most the snapshot's xmax.)
func (s *subscriber) deliverLoop(ctx context.Context, w *waiter, cpp *logKey) error {
	q := s.t.store.queries
	var (
		woke        = true // read once at start as if woken
		pendingXid  int64  // keep polling until the horizon reaches it
		settled     bool   // a read found no writer below pendingXid in flight
		retryDue    = true // look for dead letters marked for a retry
		lastRetry   time.Time
		pendingSafe int64 // a safe bound taken before the next read
		lastSafe    time.Time
		safeEvery   = min(max(s.cfg.PollInterval, 100*time.Millisecond), time.Second)
		pollBackoff = minPoll
		maxPoll     = min(s.cfg.PollInterval, 100*time.Millisecond)
		lastRenew   = time.Now()
		renewEvery  = s.cfg.LeaseTTL / 3
		failures    = map[int64]int{}    // position -> handler failures
		parked      = map[int64]string{} // position -> last error, to park
		limit       = s.cfg.BatchSize
		errBackoff  = s.cfg.RetryBackoff
	)
	reader := &logReader{s: s}
	defer reader.close()
	transient := func(err error) error {
		if permanent(err) || ctx.Err() != nil {
			return err
		}
		s.log.Warn("subscription: retrying after error", "subscription", s.name, "err", err)
		_, e := sleep(ctx, errBackoff, nil)
		errBackoff = min(2*errBackoff, s.cfg.MaxRetryBackoff)
		return e
	}
	for {
		cp := *cpp
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.durable() && time.Since(lastRenew) >= renewEvery {
			conn, err := reader.connection(ctx)
			if err == nil {
				if err = q.CommitCheckpoint(ctx, conn, s.checkpointParams(cp, 0)); err != nil {
					reader.close()
				}
			}
			if err != nil {
				if err = translate(err, ""); errors.Is(err, ErrLeaseLost) {
					return err
				}
				if err := transient(err); err != nil {
					return err
				}
				continue
			}
			lastRenew = time.Now()
		}
		rows, err := reader.read(ctx, cp, limit)
		if err != nil {
			if err := transient(translate(err, "")); err != nil {
				return err
			}
			continue
		}
		h := rows[0] // the statement always returns a row: horizon and next xid
		if rows[0].Position == 0 {
			rows = nil // no events
		}
		if woke {
			pendingXid, woke, settled = max(pendingXid, h.NextXid), false, false
		}
		if len(rows) > 0 {
			next, failed, err := s.deliver(ctx, reader, rows, parked)
			switch {
			case failed != nil:
				if failed.index > 0 {
					// Commit the events before the failing one first.
					limit = failed.index
					continue
				}
				n := failures[failed.position] + 1
				failures[failed.position] = n
				// An event that does not decode will not decode on a retry.
				var decodeErr *DecodeError
				undecodable := errors.As(failed.err, &decodeErr) && decodeErr.Position == failed.position
				if n >= s.cfg.MaxAttempts || undecodable {
					if s.cfg.OnFailure == StopOnFailure {
						return &HandlerError{TenantID: s.t.tenantID, Subscription: s.name, Position: failed.position,
							EventType: failed.eventType, Attempts: n, Err: failed.err}
					}
					parked[failed.position] = fmt.Sprintf("%d attempts, last: %v", n, failed.err)
					continue
				}
				s.log.Warn("subscription: handler failed, retrying", "subscription", s.name, "position", failed.position, "attempt", n, "err", failed.err)
				if _, err := sleep(ctx, min(s.cfg.RetryBackoff<<(n-1), s.cfg.MaxRetryBackoff), nil); err != nil {
					return err
				}
				continue
			case err != nil:
				if errors.Is(err, ErrLeaseLost) || errors.Is(err, errReload) {
					return err
				}
				if err := transient(err); err != nil {
					return err
				}
				continue
			}
			for _, r := range rows {
				delete(failures, r.Position)
				delete(parked, r.Position)
			}
			full := len(rows) == limit
			*cpp, limit, errBackoff = next, s.cfg.BatchSize, s.cfg.RetryBackoff
			if s.durable() {
				lastRenew = time.Now()
			}
			if full {
				continue
			}
		}
		// Nothing matching is left below the horizon; the checkpoint may
		// move only to a safe bound taken before this read (a transaction
		// below the horizon that has not appended yet could still append
		// below it). Asking for one reads pg_stat_get_activity: only after
		// an empty read, and at most every safeEvery.
		if sk := (logKey{pendingSafe, 0}); pendingSafe > 0 && cpp.less(sk) {
			*cpp = sk
		}
		pendingSafe = 0
		if len(rows) == 0 && cpp.less(logKey{h.Horizon, 0}) && time.Since(lastSafe) >= safeEvery {
			lastSafe = time.Now()
			conn, err := reader.connection(ctx)
			if err == nil {
				if pendingSafe, err = q.LogSafe(ctx, conn, s.t.tenantID); err != nil {
					pendingSafe = 0
					reader.close()
				}
			}
		}
		if h.Horizon < pendingXid && !settled {
			// Once no writer of the wake-up is in flight, read once more
			// (its snapshot sees them all) and stop.
			settled = h.OldestWriter >= pendingXid
			d := pollBackoff
			if settled {
				d = 0
			}
			woken, err := sleep(ctx, d, w)
			if err != nil {
				return err
			}
			woke = woke || woken
			pollBackoff = min(pollBackoff*5/4, maxPoll)
			continue
		}
		pendingXid, pollBackoff, settled = 0, minPoll, false
		// Dead letters marked for a retry: after the new events, and at
		// most every 100 ms (wake-ups are mostly appends).
		if retryDue && s.durable() && time.Since(lastRetry) >= retryEvery {
			retryDue, lastRetry = false, time.Now()
			if err := s.redeliver(ctx, reader, *cpp); err != nil {
				if errors.Is(err, ErrLeaseLost) {
					return err
				}
				retryDue = true
				if err := transient(err); err != nil {
					return err
				}
				continue
			}
		}
		wait := s.cfg.PollInterval
		if s.durable() {
			wait = min(wait, max(0, renewEvery-time.Since(lastRenew)))
			if retryDue { // a retry asked for within 100 ms of the last look
				wait = min(wait, max(0, retryEvery-time.Since(lastRetry)))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.ch:
			woke, retryDue = true, true
		case <-time.After(wait):
			retryDue = true
		}
	}
}

// logReader reads the log for a subscriber on a connection of its own,
// whose session is scoped to the tenant (see the ReadLog query).
type logReader struct {
	s          *subscriber
	conn       *pgxpool.Conn
	planMode   string // plan_cache_mode to restore
	bitmapScan string // enable_bitmapscan to restore, and to give handler batches
	params     db.ReadLogParams
}

// connection returns the reader's connection, scoped to the tenant,
// acquiring it on first use. A running subscription holds this one pool
// connection for its reads, its batches and its lease renewals.
func (r *logReader) connection(ctx context.Context) (*pgxpool.Conn, error) {
	if r.conn != nil {
		return r.conn, nil
	}
	q := r.s.t.store.queries
	conn, err := r.s.t.store.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	prev, err := q.ScopeSession(ctx, conn, db.ScopeSessionParams{TenantID: r.s.t.tenantID, KeepBitmapscan: len(r.s.cfg.Filter.Tags) > 0})
	if err != nil {
		_ = conn.Conn().Close(context.WithoutCancel(ctx)) // never pool a connection in doubt
		conn.Release()
		return nil, err
	}
	r.conn, r.planMode, r.bitmapScan = conn, prev.Previous, prev.Bitmapscan
	f := r.s.cfg.Filter
	r.params = db.ReadLogParams{TenantID: r.s.t.tenantID, Types: f.Types, Tags: f.Tags, Members: 1,
		StreamID: pgtype.Text{String: f.StreamID, Valid: f.StreamID != ""}, StreamPrefix: pgtype.Text{String: f.StreamPrefix, Valid: f.StreamPrefix != ""}}
	if g := f.Group; g != nil {
		r.params.Members, r.params.Member = int32(g.Members), int32(g.Member)
		if prefix, ok := strings.CutPrefix(g.Key, "tag:"); ok {
			r.params.TagPrefix = pgtype.Text{String: prefix, Valid: true}
		}
	}
	return conn, nil
}

func (r *logReader) read(ctx context.Context, after logKey, limit int) ([]db.ReadLogRow, error) {
	conn, err := r.connection(ctx)
	if err != nil {
		return nil, err
	}
	p := r.params
	p.AfterTx, p.AfterPosition, p.MaxCount = after.tx, after.pos, int32(limit)
	rows, err := r.s.t.store.queries.ReadLog(ctx, conn, p)
	if err != nil {
		r.close()
	}
	return rows, err
}

// close returns the connection to the pool unscoped, or closes it when
// that fails: a pooled connection must not keep a tenant's scope.
func (r *logReader) close() {
	if r.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.s.t.store.queries.UnscopeSession(ctx, r.conn, db.UnscopeSessionParams{PlanCacheMode: r.planMode, Bitmapscan: r.bitmapScan}); err != nil {
		_ = r.conn.Conn().Close(ctx) // the pool drops closed connections
	}
	r.conn.Release()
	r.conn = nil
}

// deliveryFailure is a handler's failure on rows[index].
type deliveryFailure struct {
	index     int
	position  int64
	eventType string
	err       error
}

// deliver handles rows in one transaction and moves the checkpoint to the
// last of them. Events in parked are recorded as dead letters instead.
//
// A durable subscription's commit whose outcome is unknown (the connection
// failed at COMMIT) returns errReload: the caller takes the lease again and
// reloads the stored checkpoint, so a batch that did commit is not handled
// twice (es.commit_checkpoint also refuses a batch at or before the stored
// checkpoint).
func (s *subscriber) deliver(ctx context.Context, reader *logReader, rows []db.ReadLogRow, parked map[int64]string) (logKey, *deliveryFailure, error) {
	q, tenant := s.t.store.queries, s.t.tenantID
	conn, err := reader.connection(ctx)
	if err != nil {
		return logKey{}, nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		reader.close()
		return logKey{}, nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := q.ScopeBatch(ctx, tx, db.ScopeBatchParams{TenantID: tenant, Bitmapscan: reader.bitmapScan}); err != nil {
		return logKey{}, nil, err
	}
	var last logKey
	for i, r := range rows {
		last = logKey{r.TxID, r.Position}
		if msg, ok := parked[r.Position]; ok {
			if err := q.ParkEvent(ctx, tx, db.ParkEventParams{TenantID: tenant, Name: s.name, Position: r.Position,
				Error: msg, Attempts: int32(s.cfg.MaxAttempts)}); err != nil {
				return logKey{}, nil, translate(err, "")
			}
			continue
		}
		ev, err := recordedFromRow(tenant, db.ReadStreamRow{Position: r.Position, EventID: r.EventID, EventType: r.EventType,
			StreamID: r.StreamID, StreamVersion: r.StreamVersion, Payload: r.Payload, Metadata: r.Metadata, Tags: r.Tags, RecordedAt: r.RecordedAt})
		if err == nil {
			err = s.cfg.Handler(ctx, tx, ev)
		}
		if err != nil {
			if ctx.Err() != nil {
				return logKey{}, nil, ctx.Err()
			}
			return logKey{}, &deliveryFailure{index: i, position: r.Position, eventType: r.EventType, err: err}, nil
		}
	}
	if s.cfg.BeforeCommit != nil {
		if err := s.cfg.BeforeCommit(ctx, tx); err != nil {
			if ctx.Err() != nil {
				return logKey{}, nil, ctx.Err()
			}
			// %v: whatever it wraps, it is retried (see permanent).
			return logKey{}, nil, fmt.Errorf("subscription %q: before commit: %v", s.name, err)
		}
	}
	if s.durable() {
		if err := q.CommitCheckpoint(ctx, tx, s.checkpointParams(last, last.pos)); err != nil {
			return logKey{}, nil, translate(err, "")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		reader.close()
		if s.durable() && ctx.Err() == nil {
			return logKey{}, nil, fmt.Errorf("%w: %v", errReload, err)
		}
		return logKey{}, nil, err
	}
	return last, nil, nil
}

// redeliver hands the parked events marked for a retry
// (TenantStore.RetryDeadLetters) to the handler once more, each in a
// transaction that also removes its dead letter and renews the lease; an
// event whose handler fails again stays parked with the new error.
func (s *subscriber) redeliver(ctx context.Context, reader *logReader, cp logKey) error {
	q, tenant := s.t.store.queries, s.t.tenantID
	conn, err := reader.connection(ctx)
	if err != nil {
		return err
	}
	rows, err := q.DeadLettersToRetry(ctx, conn, db.DeadLettersToRetryParams{TenantID: tenant, Name: s.name, MaxCount: int32(s.cfg.BatchSize)})
	if err != nil {
		reader.close()
		return translate(err, "")
	}
	for _, r := range rows {
		herr, err := s.redeliverOne(ctx, conn, reader.bitmapScan, cp, r)
		if err != nil {
			reader.close()
			return err
		}
		if herr != nil {
			s.log.Warn("subscription: a retried dead letter failed again", "subscription", s.name, "position", r.Position, "err", herr)
			if err := q.DeadLetterRetried(ctx, conn, db.DeadLetterRetriedParams{TenantID: tenant, Name: s.name, Position: r.Position,
				Error: pgtype.Text{String: herr.Error(), Valid: true}}); err != nil {
				reader.close()
				return translate(err, "")
			}
		}
	}
	return nil
}

func (s *subscriber) redeliverOne(ctx context.Context, conn *pgxpool.Conn, bitmapScan string, cp logKey, r db.DeadLettersToRetryRow) (handlerErr, err error) {
	q, tenant := s.t.store.queries, s.t.tenantID
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := q.ScopeBatch(ctx, tx, db.ScopeBatchParams{TenantID: tenant, Bitmapscan: bitmapScan}); err != nil {
		return nil, err
	}
	ev, herr := recordedFromRow(tenant, db.ReadStreamRow{Position: r.Position, EventID: r.EventID, EventType: r.EventType,
		StreamID: r.StreamID, StreamVersion: r.StreamVersion, Payload: r.Payload, Metadata: r.Metadata, Tags: r.Tags, RecordedAt: r.RecordedAt})
	if herr == nil {
		herr = s.cfg.Handler(ctx, tx, ev)
	}
	if herr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return herr, nil
	}
	if err := q.DeadLetterRetried(ctx, tx, db.DeadLetterRetriedParams{TenantID: tenant, Name: s.name, Position: r.Position}); err != nil {
		return nil, translate(err, "")
	}
	if err := q.CommitCheckpoint(ctx, tx, s.checkpointParams(cp, 0)); err != nil {
		return nil, translate(err, "")
	}
	return nil, tx.Commit(ctx)
}

// retryEvery bounds how often a consumer looks for dead letters marked for
// a retry (it looks after wake-ups, which are mostly appends).
const retryEvery = 100 * time.Millisecond

// minPoll is the first wait of the polls after a wake-up; each further one
// waits 1.25 times longer, up to 100 ms.
const minPoll = 500 * time.Microsecond

// sleep waits d, or until ctx ends or w (if not nil) is woken.
func sleep(ctx context.Context, d time.Duration, w *waiter) (woken bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake chan struct{}
	if w != nil {
		wake = w.ch
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
		return false, nil
	case <-wake:
		return true, nil
	}
}

// retry runs f until it succeeds, fails for good, or ctx ends.
func (s *subscriber) retry(ctx context.Context, f func() error) error {
	backoff := s.cfg.RetryBackoff
	for {
		err := translate(f(), "")
		if err == nil || permanent(err) || ctx.Err() != nil {
			return err
		}
		s.log.Warn("subscription: retrying after error", "subscription", s.name, "err", err)
		if _, err := sleep(ctx, backoff, nil); err != nil {
			return err
		}
		backoff = min(2*backoff, s.cfg.MaxRetryBackoff)
	}
}

// permanent reports errors that retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, ErrTenantNotFound) || errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrTenantNotSet) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// SubscriptionStatus is a durable subscription's progress.
type SubscriptionStatus struct {
	Name   string          `json:"name"`
	Filter json.RawMessage `json:"filter"`
	// LastPosition is the position of the last event delivered.
	LastPosition int64 `json:"last_position"`
	// Head is the tenant's last position.
	Head int64 `json:"head"`
	// LagEvents counts the events after the checkpoint that match the
	// filter, among at most the 10,000 events after it: LagCapped says
	// there are more, and LagEvents is then a lower bound. LagSeconds is
	// the age of the oldest of them.
	LagEvents  int64   `json:"lag_events"`
	LagCapped  bool    `json:"lag_capped,omitempty"`
	LagSeconds float64 `json:"lag_seconds"`
	// HeldBy is the transaction that holds the tenant's delivery back right
	// now (a writer of the tenant in flight), or nil.
	HeldBy *HoldingTransaction `json:"held_by,omitempty"`
	// Owner holds the lease until LeaseExpiresAt; empty when nobody does.
	Owner          string     `json:"owner,omitempty"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	DeadLetters    int64      `json:"dead_letters"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// HoldingTransaction is a transaction that holds a tenant's delivery back:
// one writing the tenant's events that has not ended. PID, Database, Age
// and State are zero when PostgreSQL does not show them (the backend ended
// meanwhile, or the store's schema owner may not see other roles'
// sessions); State is "prepared" for a prepared transaction.
type HoldingTransaction struct {
	Xid        int64   `json:"xid"`
	PID        int     `json:"pid,omitempty"`
	Database   string  `json:"database,omitempty"`
	AgeSeconds float64 `json:"age_seconds,omitempty"`
	State      string  `json:"state,omitempty"`
}

// Subscriptions lists the tenant's durable subscriptions with their lag.
func (t *TenantStore) Subscriptions(ctx context.Context) ([]SubscriptionStatus, error) {
	rows, err := t.store.queries.SubscriptionStatus(ctx, t.store.pool, t.tenantID)
	if err != nil {
		return nil, translate(err, "")
	}
	out := make([]SubscriptionStatus, 0, len(rows))
	for _, r := range rows {
		st := SubscriptionStatus{Name: r.Name, Filter: r.Filter, LastPosition: r.LastPosition, Head: r.Head, LagEvents: r.LagEvents,
			LagCapped: r.LagCapped, LagSeconds: r.LagSeconds, Owner: r.Owner, DeadLetters: r.DeadLetters, UpdatedAt: r.UpdatedAt.Time}
		if r.HeldByXid != 0 {
			st.HeldBy = &HoldingTransaction{Xid: r.HeldByXid, PID: int(r.HeldByPid), Database: r.HeldByDatabase,
				AgeSeconds: r.HeldBySeconds, State: r.HeldByState}
		}
		if r.LeaseExpiresAt.Valid {
			st.LeaseExpiresAt = &r.LeaseExpiresAt.Time
		}
		out = append(out, st)
	}
	return out, nil
}

// ResetPoint is where ResetSubscription moves a checkpoint: every event at
// or after Position, or recorded at or after Time, is delivered again (and
// possibly a few just before). The zero ResetPoint is the beginning.
type ResetPoint struct {
	Position int64
	Time     time.Time
}

// ResetSubscription moves a subscription's checkpoint, back to rebuild a
// projection or forward to skip. It ends the current lease: the active
// consumer's next checkpoint fails, and it resumes from the new one.
func (t *TenantStore) ResetSubscription(ctx context.Context, name string, to ResetPoint) error {
	if to.Position < 0 {
		return invalid(-1, "reset: a position is 0 or more")
	}
	arg := db.ResetSubscriptionParams{TenantID: t.tenantID, Name: name}
	if to.Position > 0 {
		arg.Position = pgtype.Int8{Int64: to.Position, Valid: true}
	} else if !to.Time.IsZero() {
		arg.AtTime = pgtype.Timestamptz{Time: to.Time, Valid: true}
	}
	found, err := t.store.queries.ResetSubscription(ctx, t.store.pool, arg)
	if err != nil {
		return translate(err, "")
	}
	if !found {
		return fmt.Errorf("%w: %q in tenant %q", ErrSubscriptionNotFound, name, t.tenantID)
	}
	return nil
}

// DeleteSubscription removes a subscription with its checkpoint and dead
// letters.
func (t *TenantStore) DeleteSubscription(ctx context.Context, name string) error {
	found, err := t.store.queries.DeleteSubscription(ctx, t.store.pool, db.DeleteSubscriptionParams{TenantID: t.tenantID, Name: name})
	if err != nil {
		return translate(err, "")
	}
	if !found {
		return fmt.Errorf("%w: %q in tenant %q", ErrSubscriptionNotFound, name, t.tenantID)
	}
	return nil
}

// DeadLetter is an event a subscription parked after its handler kept
// failing.
type DeadLetter struct {
	Position  int64     `json:"position"`
	EventID   uuid.UUID `json:"event_id"`
	EventType string    `json:"event_type"`
	Error     string    `json:"error"`
	Attempts  int       `json:"attempts"`
	ParkedAt  time.Time `json:"parked_at"`
}

// DeadLetters lists the events a subscription parked, in position order.
func (t *TenantStore) DeadLetters(ctx context.Context, name string) ([]DeadLetter, error) {
	rows, err := t.store.queries.ListDeadLetters(ctx, t.store.pool, db.ListDeadLettersParams{TenantID: t.tenantID, Name: name})
	if err != nil {
		return nil, translate(err, "")
	}
	out := make([]DeadLetter, 0, len(rows))
	for _, r := range rows {
		out = append(out, DeadLetter{Position: r.Position, EventID: r.EventID, EventType: r.EventType, Error: r.Error,
			Attempts: int(r.Attempts), ParkedAt: r.ParkedAt.Time})
	}
	return out, nil
}

// RetryDeadLetters asks the subscription's consumer to deliver its parked
// events again (those at positions, or all): the running consumer hands
// each to its handler once more and drops the dead letter when the handler
// succeeds; one that fails again stays parked with its new error. Returns
// how many were marked.
func (t *TenantStore) RetryDeadLetters(ctx context.Context, name string, positions ...int64) (int64, error) {
	n, err := t.store.queries.RetryDeadLetters(ctx, t.store.pool, db.RetryDeadLettersParams{TenantID: t.tenantID, Name: name, Positions: positions})
	return n, translate(err, "")
}

// DiscardDeadLetters deletes a subscription's dead letters (those at
// positions, or all): their events are not delivered. Returns how many
// went.
func (t *TenantStore) DiscardDeadLetters(ctx context.Context, name string, positions ...int64) (int64, error) {
	n, err := t.store.queries.DiscardDeadLetters(ctx, t.store.pool, db.DiscardDeadLettersParams{TenantID: t.tenantID, Name: name, Positions: positions})
	return n, translate(err, "")
}
