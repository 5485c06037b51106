package pges

import (
	"context"
	"encoding/json"
	"errors"
	"iter"

	"github.com/eventstore-go/pges/db"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TenantTx is a TenantStore bound to a transaction of the caller's: its
// appends, deletes and snapshots commit or roll back with the caller's own
// writes (an outbox, a projection, a subscription's checkpoint). It has the
// same checks, errors and tenant isolation as the TenantStore.
//
// Rules that follow from running in someone else's transaction:
//
//   - Every call scopes the rest of the transaction to the handle's tenant
//     (es.tenant_id, transaction-local, as the store's own statements do):
//     row-level security then shows the transaction that tenant's rows.
//   - Each statement runs in a savepoint, sent in the same round trip: a
//     call that fails (a wrong expected version, a violated condition, bad
//     input, a missing stream) leaves the transaction as it was before
//     the call, and a stream append with Any or StreamExists that loses
//     the next version to a concurrent exact-version append is retried
//     from its savepoint. A savepoint that wrote is a subtransaction:
//     PostgreSQL tracks 64 of them per transaction cheaply, beyond that
//     every session's visibility checks slow down while it runs, so
//     append many events in one call rather than in many. Reads take no
//     subtransaction.
//   - Conditional appends and Read need READ COMMITTED (other levels fail
//     with ErrInvalidEvent). Read takes the locks a matching append needs
//     and holds them, as every lock, until the transaction ends: nobody
//     appends a matching event in between, so a condition built from a
//     read in the same transaction cannot be violated, and other writers
//     of matching events wait for the commit. Keep such transactions short.
//   - Nothing is retried for you across transactions: ErrStreamOrder
//     (this transaction wrote before the append, and one that began
//     writing later has appended to the stream or tenant meanwhile),
//     ErrDeadlock and ErrSerializationFailure mean roll back and run the
//     transaction again. Appending before writing other tables avoids
//     ErrStreamOrder.
//
// A TenantTx is as safe for concurrent use as its pgx.Tx, that is not.
type TenantTx struct {
	t *TenantStore // bound to tx
}

// Tx returns a handle that runs every call in tx, a transaction the caller
// began (pool.Begin, or the pgx.Tx a subscription handler receives) and
// commits or rolls back.
func (t *TenantStore) Tx(tx pgx.Tx) *TenantTx {
	bound := *t
	bound.tx = tx
	return &TenantTx{t: &bound}
}

// TenantID returns the tenant the handle is scoped to.
func (x *TenantTx) TenantID() string { return x.t.tenantID }

// Tx returns the transaction the handle runs in.
func (x *TenantTx) Tx() pgx.Tx { return x.t.tx }

// AppendToStream is TenantStore.AppendToStream in the transaction.
func (x *TenantTx) AppendToStream(ctx context.Context, streamID string, expected ExpectedVersion, events ...EventData) (AppendResult, error) {
	return x.t.AppendToStream(ctx, streamID, expected, events...)
}

// Append is TenantStore.Append in the transaction. With a condition the
// transaction must be READ COMMITTED.
func (x *TenantTx) Append(ctx context.Context, events []EventData, cond *AppendCondition) (AppendResult, error) {
	return x.t.Append(ctx, events, cond)
}

// DeleteStream is TenantStore.DeleteStream in the transaction.
func (x *TenantTx) DeleteStream(ctx context.Context, streamID string, expected ExpectedVersion) (int64, error) {
	return x.t.DeleteStream(ctx, streamID, expected)
}

// SaveSnapshot is TenantStore.SaveSnapshot in the transaction.
func (x *TenantTx) SaveSnapshot(ctx context.Context, streamID string, version int64, schemaVersion int, state json.RawMessage) error {
	return x.t.SaveSnapshot(ctx, streamID, version, schemaVersion, state)
}

// StreamVersion is TenantStore.StreamVersion in the transaction.
func (x *TenantTx) StreamVersion(ctx context.Context, streamID string) (version int64, deleted bool, err error) {
	return x.t.StreamVersion(ctx, streamID)
}

// ReadStream is TenantStore.ReadStream in the transaction: it sees the
// transaction's own appends.
func (x *TenantTx) ReadStream(ctx context.Context, streamID string, opts ReadOptions) ([]RecordedEvent, error) {
	return x.t.ReadStream(ctx, streamID, opts)
}

// IterateStream is TenantStore.IterateStream in the transaction; iterate
// before the transaction ends.
func (x *TenantTx) IterateStream(ctx context.Context, streamID string, from int64) iter.Seq2[RecordedEvent, error] {
	return x.t.IterateStream(ctx, streamID, from)
}

// Read is TenantStore.Read in the transaction (READ COMMITTED only); its
// locks last until the transaction ends. Iterate the events before then.
func (x *TenantTx) Read(ctx context.Context, q Query, opts QueryOptions) (ReadResult, error) {
	return x.t.Read(ctx, q, opts)
}

// ReadAll is TenantStore.ReadAll in the transaction.
func (x *TenantTx) ReadAll(ctx context.Context, q Query, opts QueryOptions) ([]RecordedEvent, int64, error) {
	return x.t.ReadAll(ctx, q, opts)
}

// Count is TenantStore.Count in the transaction.
func (x *TenantTx) Count(ctx context.Context, q Query, after, upto int64) (int64, error) {
	return x.t.Count(ctx, q, after, upto)
}

// LoadSnapshot is TenantStore.LoadSnapshot in the transaction.
func (x *TenantTx) LoadSnapshot(ctx context.Context, streamID string) (Snapshot, bool, error) {
	return x.t.LoadSnapshot(ctx, streamID)
}

// LoadSnapshotAt is TenantStore.LoadSnapshotAt in the transaction.
func (x *TenantTx) LoadSnapshotAt(ctx context.Context, streamID string, maxVersion int64) (Snapshot, bool, error) {
	return x.t.LoadSnapshotAt(ctx, streamID, maxVersion)
}

// TenantHandle is what the generic helpers (LoadAggregate, Project,
// Decide, DecideStream, ...) run on: a *TenantStore (each call in its own
// transaction) or a *TenantTx (in the caller's).
type TenantHandle interface {
	tenantStore() *TenantStore
}

func (t *TenantStore) tenantStore() *TenantStore { return t }
func (x *TenantTx) tenantStore() *TenantStore    { return x.t }

// conn is where a call's statements go: the pool, or the caller's
// transaction, where each statement runs in a savepoint of its own.
func (t *TenantStore) conn() db.DBTX {
	if t.tx != nil {
		return &savepoint{tx: t.tx}
	}
	return t.store.pool
}

// savepoint is a db.DBTX that runs each statement between SAVEPOINT and
// RELEASE, pipelined in the statement's round trip. When PostgreSQL fails
// the statement it rolls back to the savepoint, so the caller's
// transaction is as it was before the call. A savepoint that only reads
// takes no transaction id and costs no subtransaction.
type savepoint struct{ tx pgx.Tx }

const (
	savepointSQL = "SAVEPOINT pges_call"
	releaseSQL   = "RELEASE SAVEPOINT pges_call"
)

func (s *savepoint) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.Queue(savepointSQL)
	b.Queue(sql, args...)
	b.Queue(releaseSQL)
	br := s.tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		// No savepoint (the transaction was aborted before the call):
		// nothing ran, nothing to undo.
		_ = br.Close()
		return nil, err
	}
	return br, nil
}

// finish reads the RELEASE's result and ends the batch. A savepoint that
// was not released (the statement failed in PostgreSQL, which skipped the
// rest of the batch) is rolled back to; one that was (the error, if any,
// was the client's: no rows, a scan) is gone and must not be.
func (s *savepoint) finish(ctx context.Context, br pgx.BatchResults, stmtErr error) error {
	_, relErr := br.Exec()
	closeErr := br.Close()
	if relErr != nil {
		// If even this fails the transaction stays aborted, and the
		// caller's rollback is all that is left.
		_, _ = s.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT pges_call; RELEASE SAVEPOINT pges_call")
	}
	if stmtErr != nil {
		return stmtErr
	}
	if relErr != nil {
		return relErr
	}
	return closeErr
}

func (s *savepoint) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := s.send(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	return tag, s.finish(ctx, br, err)
}

func (s *savepoint) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	br, err := s.send(ctx, sql, args)
	return &savepointRow{s: s, ctx: ctx, br: br, err: err}
}

type savepointRow struct {
	s   *savepoint
	ctx context.Context
	br  pgx.BatchResults
	err error
}

func (r *savepointRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.s.finish(r.ctx, r.br, r.br.QueryRow().Scan(dest...))
}

func (s *savepoint) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	br, err := s.send(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		if rows != nil {
			rows.Close()
		}
		return nil, s.finish(ctx, br, err)
	}
	return &savepointRows{Rows: rows, s: s, ctx: ctx, br: br}, nil
}

// savepointRows finishes the savepoint when the rows are done: read to
// the end (Next returns false) or closed.
type savepointRows struct {
	pgx.Rows
	s    *savepoint
	ctx  context.Context
	br   pgx.BatchResults
	done bool
	err  error
}

func (r *savepointRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *savepointRows) Close() {
	if r.done {
		return
	}
	r.done = true
	r.Rows.Close()
	r.err = r.s.finish(r.ctx, r.br, r.Rows.Err())
}

func (r *savepointRows) Err() error {
	if r.done {
		return r.err
	}
	return r.Rows.Err()
}

// Errors that end a transaction's chances: roll it back and run it again.
// They wrap PostgreSQL's error (errors.As reaches the *pgconn.PgError).
var (
	// ErrDeadlock: PostgreSQL broke a deadlock by failing this statement
	// (SQLSTATE 40P01). Two transactions took the same locks in opposite
	// orders, e.g. each appended to streams A and B in another order.
	ErrDeadlock = errors.New("deadlock detected: roll back and retry the transaction")
	// ErrSerializationFailure: a REPEATABLE READ or SERIALIZABLE
	// transaction lost to a concurrent one (SQLSTATE 40001).
	ErrSerializationFailure = errors.New("serialization failure: roll back and retry the transaction")
)

// retryTxError is a PostgreSQL error that one of the sentinels above names.
type retryTxError struct {
	sentinel error
	pg       *pgconn.PgError
}

func (e *retryTxError) Error() string   { return e.sentinel.Error() + ": " + e.pg.Message }
func (e *retryTxError) Unwrap() []error { return []error{e.sentinel, e.pg} }

// retryTx maps the SQLSTATEs of a transaction that must run again.
func retryTx(pgErr *pgconn.PgError) error {
	switch pgErr.Code {
	case "40P01":
		return &retryTxError{ErrDeadlock, pgErr}
	case "40001":
		return &retryTxError{ErrSerializationFailure, pgErr}
	}
	return nil
}
