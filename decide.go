package pges

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retry says how Decide and DecideStream retry a decision that lost a race
// to a concurrent writer. The zero value is the documented default.
// Inside a caller's transaction (a *TenantTx) nothing is retried.
type Retry struct {
	// Attempts is how many times a decision is made at most, the first
	// included. Default 3.
	Attempts int
	// Backoff is the wait before the second attempt; each further wait
	// doubles, up to MaxBackoff. Every wait is drawn at random between
	// half of it and all of it, so that writers who lost together do not
	// collide again. Defaults 5ms and 100ms.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Optimistic (Decide only) makes every attempt optimistic. By default
	// the last attempt runs in a transaction of its own that holds the
	// query's locks from the read to the append, so it cannot lose the
	// race: under contention a call ends with a decision (events, or the
	// domain's refusal), not with a conflict. Decide then runs while other
	// writers of matching events wait, so it must be quick. With
	// Optimistic, when the attempts run out the last conflict is returned.
	Optimistic bool
}

func (r Retry) withDefaults() (Retry, error) {
	if r.Attempts < 0 || r.Backoff < 0 || r.MaxBackoff < 0 {
		return r, invalid(-1, "retry: Attempts, Backoff and MaxBackoff must not be negative")
	}
	setDefault(&r.Attempts, 3)
	setDefault(&r.Backoff, 5*time.Millisecond)
	setDefault(&r.MaxBackoff, 100*time.Millisecond)
	return r, nil
}

// wait sleeps before attempt n (2, 3, ...): jittered exponential backoff.
func (r Retry) wait(ctx context.Context, n int) error {
	d := r.Backoff
	for i := 2; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	_, err := sleep(ctx, d, nil)
	return err
}

// RetriesExhaustedError ends a decision that lost the race on every
// attempt. It wraps the last conflict: errors.Is(err,
// ErrAppendConditionViolated) or ErrWrongExpectedVersion still match.
type RetriesExhaustedError struct {
	Attempts int
	Err      error
}

func (e *RetriesExhaustedError) Error() string {
	return fmt.Sprintf("decision lost the race %d times: %v", e.Attempts, e.Err)
}

func (e *RetriesExhaustedError) Unwrap() error { return e.Err }

// Decision is a DCB command: the events matching Query are folded, from
// Init(), into the state Decide decides on. Decide returns the events to
// append (none: nothing to do) or a domain error, which Decide returns
// unchanged. Init, Fold and Decide may run once per attempt: keep them
// free of side effects.
type Decision[S, E any] struct {
	// Query selects the decision model's events. It is also the append
	// condition: the events are appended only if no event matching it was
	// appended since the read.
	Query  Query
	Init   func() S
	Fold   func(S, Event[E]) S
	Decide func(S) ([]E, error)
	// Metadata is set on every appended event (see Metadata.CausedBy).
	Metadata Metadata
	Retry    Retry
}

// DecisionResult is what a decision did.
type DecisionResult[S any] struct {
	// State is the state the decision was made on.
	State S
	// Head is the read's head, the condition's After.
	Head int64
	// Positions of the appended events; empty when Decide returned none.
	Positions []int64
	// Attempts made: 1 unless the decision lost a race.
	Attempts int
}

// Decide runs a DCB command: read the events matching d.Query, fold them,
// decide, and append the decided events with the condition that no event
// matching d.Query was appended after the read's head. When another
// writer got in between (ErrAppendConditionViolated) it reads and decides
// again, as d.Retry says; the last attempt holds the query's locks unless
// d.Retry.Optimistic. Events are encoded with codec.
//
// On a *TenantTx it makes one attempt in the caller's transaction (READ
// COMMITTED): the read holds the query's locks until that transaction
// ends, so the append cannot be outrun.
func Decide[S, E any](ctx context.Context, h TenantHandle, codec *Codec[E], d Decision[S, E]) (DecisionResult[S], error) {
	var zero DecisionResult[S]
	if codec == nil || d.Init == nil || d.Fold == nil || d.Decide == nil {
		return zero, invalid(-1, "decision: codec, Init, Fold and Decide are required")
	}
	if _, err := d.Query.encode(); err != nil {
		return zero, err
	}
	retry, err := d.Retry.withDefaults()
	if err != nil {
		return zero, err
	}
	t := h.tenantStore()
	if t.tx != nil {
		res, err := decideOnce(ctx, t, codec, d)
		res.Attempts = 1
		return res, err
	}
	for n := 1; ; n++ {
		var res DecisionResult[S]
		if n == retry.Attempts && !retry.Optimistic {
			res, err = decideLocked(ctx, t, codec, d)
		} else {
			res, err = decideOnce(ctx, t, codec, d)
		}
		res.Attempts = n
		if !lostRace(err) {
			return res, err
		}
		if n >= retry.Attempts {
			return res, &RetriesExhaustedError{Attempts: n, Err: err}
		}
		if err := retry.wait(ctx, n+1); err != nil {
			return res, err
		}
	}
}

// decideLocked makes one attempt in a transaction of its own: its read
// takes the query's locks, held until the commit, so no matching event can
// be appended between the read and the append.
func decideLocked[S, E any](ctx context.Context, t *TenantStore, codec *Codec[E], d Decision[S, E]) (DecisionResult[S], error) {
	tx, err := t.store.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return DecisionResult[S]{State: d.Init()}, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	res, err := decideOnce(ctx, t.Tx(tx).t, codec, d)
	if err != nil {
		return res, err
	}
	return res, translate(tx.Commit(ctx), "")
}

// lostRace reports the errors a new attempt can fix.
func lostRace(err error) bool {
	return errors.Is(err, ErrAppendConditionViolated) || errors.Is(err, ErrWrongExpectedVersion) || errors.Is(err, ErrDeadlock)
}

func decideOnce[S, E any](ctx context.Context, t *TenantStore, codec *Codec[E], d Decision[S, E]) (DecisionResult[S], error) {
	out := DecisionResult[S]{State: d.Init()}
	read, err := t.Read(ctx, d.Query, QueryOptions{})
	if err != nil {
		return out, err
	}
	out.Head = read.Head
	for e, err := range codec.Events(read.Events) {
		if err != nil {
			return out, err
		}
		out.State = d.Fold(out.State, e)
	}
	events, err := encodeDecided(codec, d.Decide, out.State, d.Metadata)
	if err != nil || len(events) == 0 {
		return out, err
	}
	res, err := t.Append(ctx, events, &AppendCondition{FailIfEventsMatch: d.Query, After: read.Head})
	out.Positions = res.Positions
	return out, err
}

// encodeDecided runs decide and encodes its events; a domain error is
// returned as it is.
func encodeDecided[S, E any](codec *Codec[E], decide func(S) ([]E, error), state S, md Metadata) ([]EventData, error) {
	decided, err := decide(state)
	if err != nil || len(decided) == 0 {
		return nil, err
	}
	events, err := codec.EncodeAll(decided...)
	if err != nil {
		return nil, err
	}
	for i := range events {
		events[i].Metadata = md
	}
	return events, nil
}

// StreamDecision is a command on an aggregate stream: the stream's state
// is loaded with Aggregate (snapshot plus the events after it), Decide
// returns the events to append (none: nothing to do) or a domain error,
// returned unchanged. Init, Apply and Decide may run once per attempt:
// keep them free of side effects.
type StreamDecision[S, E any] struct {
	StreamID  string
	Aggregate Aggregate[S]
	// Decide gets the state and the stream version it reflects (0: the
	// stream does not exist yet).
	Decide func(state S, version int64) ([]E, error)
	// Metadata is set on every appended event (see Metadata.CausedBy).
	Metadata Metadata
	// SnapshotEvery saves a snapshot of the new state when an append
	// takes the stream past a multiple of it; 0 never does. A failed save
	// does not fail the decision (a snapshot is a cache):
	// StreamDecisionResult.SnapshotErr reports it.
	SnapshotEvery int64
	// Retry applies to ErrWrongExpectedVersion (another writer appended
	// between the load and the append); every attempt is optimistic.
	Retry Retry
}

// StreamDecisionResult is what a stream decision did.
type StreamDecisionResult[S any] struct {
	// State and Version: what the decision was made on.
	State   S
	Version int64
	// Appended is the append's result (zero when Decide returned no
	// events): the stream's new version and the events' positions.
	Appended AppendResult
	Attempts int
	// Snapshot is the version a snapshot was saved at (0: none), or
	// SnapshotErr why saving it failed.
	Snapshot    int64
	SnapshotErr error
}

// DecideStream runs a command on an aggregate stream: load, decide, append
// with the loaded version as the expected version, and on
// ErrWrongExpectedVersion load and decide again as d.Retry says. A stream
// that does not exist loads as Init() at version 0 and is created by the
// append. On a *TenantTx it makes one attempt in the caller's transaction.
func DecideStream[S, E any](ctx context.Context, h TenantHandle, codec *Codec[E], d StreamDecision[S, E]) (StreamDecisionResult[S], error) {
	var zero StreamDecisionResult[S]
	if codec == nil || d.Aggregate.Init == nil || d.Aggregate.Apply == nil || d.Decide == nil {
		return zero, invalid(-1, "stream decision: codec, Aggregate.Init, Aggregate.Apply and Decide are required")
	}
	if d.SnapshotEvery < 0 {
		return zero, invalid(-1, "stream decision: SnapshotEvery must not be negative")
	}
	retry, err := d.Retry.withDefaults()
	if err != nil {
		return zero, err
	}
	t := h.tenantStore()
	for n := 1; ; n++ {
		res, err := decideStreamOnce(ctx, t, codec, d)
		res.Attempts = n
		if t.tx != nil || !lostRace(err) {
			return res, err
		}
		if n >= retry.Attempts {
			return res, &RetriesExhaustedError{Attempts: n, Err: err}
		}
		if err := retry.wait(ctx, n+1); err != nil {
			return res, err
		}
	}
}

func decideStreamOnce[S, E any](ctx context.Context, t *TenantStore, codec *Codec[E], d StreamDecision[S, E]) (StreamDecisionResult[S], error) {
	out := StreamDecisionResult[S]{State: d.Aggregate.Init()}
	state, version, err := LoadAggregate(ctx, t, d.StreamID, d.Aggregate)
	switch {
	case errors.Is(err, ErrStreamNotFound): // a new stream
	case err != nil:
		return out, err
	default:
		out.State, out.Version = state, version
	}
	events, err := encodeDecided(codec, func(s S) ([]E, error) { return d.Decide(s, out.Version) }, out.State, d.Metadata)
	if err != nil || len(events) == 0 {
		return out, err
	}
	if out.Appended, err = t.AppendToStream(ctx, d.StreamID, Exactly(out.Version), events...); err != nil {
		return out, err
	}
	if every := d.SnapshotEvery; every > 0 && out.Appended.StreamVersion/every > out.Version/every {
		out.Snapshot, out.SnapshotErr = saveDecidedSnapshot(ctx, t, d, out.State, out.Version, out.Appended.StreamVersion)
	}
	return out, nil
}

// saveDecidedSnapshot folds the events just appended (read back: their
// recorded form is what a load applies) into state and saves it at to.
func saveDecidedSnapshot[S, E any](ctx context.Context, t *TenantStore, d StreamDecision[S, E], state S, from, to int64) (int64, error) {
	events, err := t.ReadStream(ctx, d.StreamID, ReadOptions{From: from + 1, Limit: int(to - from)})
	if err != nil {
		return 0, err
	}
	for _, e := range events {
		if state, err = d.Aggregate.Apply(state, e); err != nil {
			return 0, err
		}
	}
	if err := SaveAggregateSnapshot(ctx, t, d.StreamID, d.Aggregate, to, state); err != nil {
		return 0, err
	}
	return to, nil
}
