package pges

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	"github.com/eventstore-go/pges/db"
	"github.com/jackc/pgx/v5/pgtype"
)

// QueryItem matches an event whose type is one of Types (if any) and that
// carries every tag in Tags (if any). The zero item matches every event.
type QueryItem struct {
	Types []string `json:"types,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

// Query is a DCB query: its items are OR-ed. A query needs at least one
// item; QueryAll matches every event.
type Query []QueryItem

// QueryAll matches every event of the tenant.
func QueryAll() Query { return Query{{}} }

// Tags returns a one-item query matching events that carry all tags, with
// one of types if any are given.
func Tags(tags ...string) Query { return Query{{Tags: tags}} }

func (q Query) encode() ([]byte, error) {
	if len(q) == 0 {
		return nil, invalid(-1, "empty query: give at least one item (QueryAll() matches every event)")
	}
	return json.Marshal([]QueryItem(q))
}

// AppendCondition makes an append fail, writing nothing, if an event
// matching FailIfEventsMatch has a position after After. After is usually
// the head of the read the decision was based on; 0 means "any matching
// event at all".
type AppendCondition struct {
	FailIfEventsMatch Query
	After             int64
}

// ConditionViolatedError reports a violated append condition; it matches
// ErrAppendConditionViolated.
type ConditionViolatedError struct {
	Condition AppendCondition
	// Position is an event that matched the condition's query.
	Position int64
}

// ErrAppendConditionViolated matches every ConditionViolatedError.
var ErrAppendConditionViolated = errors.New("append condition violated")

func (e *ConditionViolatedError) Error() string {
	q, _ := json.Marshal(e.Condition.FailIfEventsMatch)
	return fmt.Sprintf("append condition violated: event at position %d matches %s after position %d", e.Position, q, e.Condition.After)
}

func (e *ConditionViolatedError) Is(target error) bool { return target == ErrAppendConditionViolated }

// Append appends events that belong to no stream, atomically, in one round
// trip. With a condition it fails with a ConditionViolatedError and writes
// nothing if an event matching the condition's query was appended after
// cond.After, whether by Append or AppendToStream. It must not run inside a
// REPEATABLE READ or SERIALIZABLE transaction. Retrying with the same event
// ids returns the first positions.
func (t *TenantStore) Append(ctx context.Context, events []EventData, cond *AppendCondition) (AppendResult, error) {
	batch, err := encodeBatch(events)
	if err != nil {
		return AppendResult{}, err
	}
	arg := db.AppendEventsParams{TenantID: t.tenantID, Events: batch}
	if cond != nil {
		if cond.After < 0 {
			return AppendResult{}, invalid(-1, "condition: After must not be negative")
		}
		if arg.FailIf, err = cond.FailIfEventsMatch.encode(); err != nil {
			return AppendResult{}, err
		}
		arg.After = cond.After
	}
	positions, err := t.store.queries.AppendEvents(ctx, t.conn(), arg)
	if isUniqueViolation(err) {
		// The ids were appended before (a retry): return their positions,
		// or ErrEventIDConflict if they came with other content.
		if found, ferr := t.findAppended(ctx, "", batch); ferr != nil || found != nil {
			if ferr != nil {
				return AppendResult{}, ferr
			}
			return *found, nil
		}
	}
	if err != nil {
		err = translate(err, "")
		var cv *ConditionViolatedError
		if errors.As(err, &cv) && cond != nil {
			cv.Condition = *cond
		}
		return AppendResult{}, err
	}
	return AppendResult{Positions: positions}, nil
}

// QueryOptions selects part of a query's result.
type QueryOptions struct {
	// After returns only events with a greater position.
	After int64
	// Limit caps the number of events; 0 means no limit.
	Limit int
	// Backwards returns the newest events first.
	Backwards bool
}

// ReadResult is a query's result: a head to use as AppendCondition.After and
// the matching events up to it, fetched page by page as they are iterated.
type ReadResult struct {
	// Head is the tenant's last position when the read began. Every event
	// matching the query that commits later has a greater position, so a
	// decision based on Events is safe to append with
	// AppendCondition{FailIfEventsMatch: query, After: Head}. (Forwards with
	// a Limit that cut the result, use the last event's position instead;
	// backwards, Head is right.)
	Head int64
	// Events yields the matching events with positions in (After, Head].
	Events iter.Seq2[RecordedEvent, error]
}

// Read runs a DCB query. It first waits for in-flight appends of events
// matching q, so that Head is safe (docs/design.md, section 3), then returns; the
// events are read in pages of ReadPageSize while Events is iterated, so a
// result of any size is read in constant memory.
func (t *TenantStore) Read(ctx context.Context, q Query, opts QueryOptions) (ReadResult, error) {
	query, err := q.encode()
	if err != nil {
		return ReadResult{}, err
	}
	if opts.After < 0 || opts.Limit < 0 {
		return ReadResult{}, invalid(-1, "query options: After and Limit must not be negative")
	}
	head, err := t.store.queries.ReadHead(ctx, t.conn(), db.ReadHeadParams{TenantID: t.tenantID, Query: query})
	if err != nil {
		return ReadResult{}, translate(err, "")
	}
	return ReadResult{Head: head, Events: t.readPages(ctx, query, opts, head)}, nil
}

// ReadAll runs Read and collects the events.
func (t *TenantStore) ReadAll(ctx context.Context, q Query, opts QueryOptions) ([]RecordedEvent, int64, error) {
	res, err := t.Read(ctx, q, opts)
	if err != nil {
		return nil, 0, err
	}
	var out []RecordedEvent
	for e, err := range res.Events {
		if err != nil {
			return nil, 0, err
		}
		out = append(out, e)
	}
	return out, res.Head, nil
}

func (t *TenantStore) readPages(ctx context.Context, query []byte, opts QueryOptions, head int64) iter.Seq2[RecordedEvent, error] {
	return func(yield func(RecordedEvent, error) bool) {
		after, upto, left := opts.After, head, opts.Limit
		for {
			n := t.store.config.ReadPageSize
			if opts.Limit > 0 {
				n = min(n, left)
			}
			if n == 0 || after >= upto {
				return
			}
			rows, err := t.store.queries.ReadEvents(ctx, t.conn(), db.ReadEventsParams{
				TenantID: t.tenantID, Query: query, After: after, Upto: upto, MaxCount: int32(n), Backwards: opts.Backwards,
			})
			if err != nil {
				yield(RecordedEvent{}, translate(err, ""))
				return
			}
			for _, r := range rows {
				e, err := recordedFromRow(t.tenantID, db.ReadStreamRow(r))
				if !yield(e, err) || err != nil {
					return
				}
			}
			if len(rows) < n {
				return
			}
			left -= len(rows)
			if last := rows[len(rows)-1].Position; opts.Backwards {
				upto = last - 1
			} else {
				after = last
			}
		}
	}
}

// Count counts the events matching q with after < position <= upto (upto
// 0: no upper bound), e.g. to show progress while reading them.
func (t *TenantStore) Count(ctx context.Context, q Query, after, upto int64) (int64, error) {
	query, err := q.encode()
	if err != nil {
		return 0, err
	}
	if upto <= 0 {
		upto = 1<<63 - 1
	}
	n, err := t.store.queries.CountEvents(ctx, t.conn(), db.CountEventsParams{TenantID: t.tenantID, Query: query, After: after, Upto: upto})
	return n, translate(err, "")
}

// findAppended looks for an earlier append of the batch's ids (stream ""
// for DCB events): its result, nil if none of the ids exist, or
// ErrEventIDConflict if they exist elsewhere or with other content.
func (t *TenantStore) findAppended(ctx context.Context, streamID string, batch []byte) (*AppendResult, error) {
	arg := db.FindAppendedParams{TenantID: t.tenantID, Events: batch}
	if streamID != "" {
		arg.StreamID = pgtype.Text{String: streamID, Valid: true}
	}
	row, err := t.store.queries.FindAppended(ctx, t.conn(), arg)
	if err != nil {
		return nil, translate(err, streamID)
	}
	if row.Positions == nil {
		return nil, nil
	}
	return &AppendResult{StreamVersion: row.StreamVersion, Positions: row.Positions}, nil
}
