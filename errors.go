package pges

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors; match them with errors.Is. Errors carrying more detail
// (WrongExpectedVersionError, InvalidEventError) also match their sentinel.
var (
	ErrWrongExpectedVersion = errors.New("wrong expected version")
	ErrStreamNotFound       = errors.New("stream not found")
	ErrStreamDeleted        = errors.New("stream deleted")
	ErrInvalidEvent         = errors.New("invalid event or argument")
	ErrTenantNotFound       = errors.New("tenant not found")
	ErrTenantSuspended      = errors.New("tenant suspended")
	// ErrEventIDConflict: an event id was appended before with other content.
	ErrEventIDConflict = errors.New("event id reused with other content")
	// ErrTenantExists: a tenant with this id exists with other settings.
	ErrTenantExists = errors.New("tenant exists with other settings")
	// ErrTenantNotSet: a SQL API call named a tenant other than the one its
	// transaction is scoped to (es.tenant_id). The Go API always sets it.
	ErrTenantNotSet = errors.New("tenant is not the transaction's tenant")
	// ErrTenantDedicating: a dedication of the tenant to partitions of its
	// own (tenant.Manager.Dedicate) started and did not finish, and its
	// rows cannot be written until it does: run Dedicate again.
	ErrTenantDedicating = errors.New("tenant is being dedicated")
	// ErrStreamOrder: the append would be delivered out of order, because
	// its transaction's id is smaller than that of a transaction that
	// appended since (to the stream, or, if this transaction wrote
	// something else before its first append, to the tenant). Subscribers
	// deliver in transaction-id order. A new transaction fixes it: the
	// store's own appends retry it; in a caller's transaction, retry the
	// transaction, and append before other writes.
	ErrStreamOrder = errors.New("append would break delivery order: retry in a new transaction")
)

// WrongExpectedVersionError reports a failed optimistic concurrency check.
// Actual is -1 when a concurrent append won the race and the new version is
// not known without reading the stream again.
type WrongExpectedVersionError struct {
	StreamID string
	Expected ExpectedVersion
	Actual   int64
}

func (e *WrongExpectedVersionError) Error() string {
	return fmt.Sprintf("wrong expected version for stream %q: expected %s, actual %d", e.StreamID, e.Expected, e.Actual)
}

func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// InvalidEventError reports bad input. Index is the event's position in the
// batch, or -1 when the problem is not one event's.
type InvalidEventError struct {
	Index  int
	Reason string
}

func (e *InvalidEventError) Error() string { return e.Reason }

func (e *InvalidEventError) Is(target error) bool { return target == ErrInvalidEvent }

func invalid(index int, format string, args ...any) error {
	return &InvalidEventError{Index: index, Reason: fmt.Sprintf(format, args...)}
}

// storeError wraps a store error raised by the SQL API with its message.
type storeError struct {
	sentinel error
	msg      string
}

func (e *storeError) Error() string { return e.msg }
func (e *storeError) Unwrap() error { return e.sentinel }

// sqlState codes raised by the SQL API (migrations/00001_event_log.sql).
const (
	codeWrongExpectedVersion = "ES001"
	codeStreamNotFound       = "ES002"
	codeStreamDeleted        = "ES003"
	codeInvalid              = "ES004"
	codeTenantNotFound       = "ES005"
	codeTenantSuspended      = "ES006"
	codeEventIDConflict      = "ES007"
	codeConditionViolated    = "ES008"
	codeTenantExists         = "ES009"
	codeTenantNotSet         = "ES010"
	codeLeaseLost            = "ES011"
	codeStreamOrder          = "ES012"
	codeUniqueViolation      = "23505"
)

// Constraint violations and conversion errors that bad input can reach when
// it slips past the SQL API's own checks (the constraints are the last guard).
var invalidInputCodes = map[string]bool{
	"23514": true, // check_violation
	"23502": true, // not_null_violation
	"22P02": true, // invalid_text_representation
	"22023": true, // invalid_parameter_value
	"22001": true, // string_data_right_truncation
	"22003": true, // numeric_value_out_of_range
	"22P05": true, // untranslatable_character (\u0000 in JSON or a tag)
	"22021": true, // character_not_in_repertoire (invalid UTF-8, NUL in text)
	"54000": true, // program_limit_exceeded (e.g. an index row too large)
}

// translate turns PostgreSQL errors into the package's errors; it is the one
// place that knows the SQL API's error codes.
func translate(err error, streamID string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if e := retryTx(pgErr); e != nil {
		return e
	}
	switch pgErr.Code {
	case codeWrongExpectedVersion:
		var d struct{ Expected, Actual int64 }
		_ = json.Unmarshal([]byte(pgErr.Detail), &d)
		return &WrongExpectedVersionError{StreamID: streamID, Expected: ExpectedVersion(d.Expected), Actual: d.Actual}
	case codeInvalid:
		var d struct{ Index *int }
		_ = json.Unmarshal([]byte(pgErr.Detail), &d)
		index := -1
		if d.Index != nil {
			index = *d.Index
		}
		return &InvalidEventError{Index: index, Reason: pgErr.Message}
	case codeStreamNotFound:
		return &storeError{ErrStreamNotFound, pgErr.Message}
	case codeStreamDeleted:
		return &storeError{ErrStreamDeleted, pgErr.Message}
	case codeTenantNotFound:
		return &storeError{ErrTenantNotFound, pgErr.Message}
	case codeTenantSuspended:
		return &storeError{ErrTenantSuspended, pgErr.Message}
	case codeEventIDConflict:
		return &storeError{ErrEventIDConflict, pgErr.Message}
	case codeTenantExists:
		return &storeError{ErrTenantExists, pgErr.Message}
	case codeTenantNotSet:
		return &storeError{ErrTenantNotSet, pgErr.Message}
	case codeLeaseLost:
		return &storeError{ErrLeaseLost, pgErr.Message}
	case codeStreamOrder:
		return &storeError{ErrStreamOrder, pgErr.Message}
	case codeConditionViolated:
		var d struct{ Position int64 }
		_ = json.Unmarshal([]byte(pgErr.Detail), &d)
		return &ConditionViolatedError{Position: d.Position}
	}
	if pgErr.Code == "23514" && strings.HasPrefix(pgErr.ConstraintName, "dedicated$") {
		// The constraint of an unfinished es.dedicate_tenant_concurrently.
		return &storeError{ErrTenantDedicating, "an unfinished dedication of the tenant blocks its writes: run tenant dedicate again"}
	}
	if invalidInputCodes[pgErr.Code] {
		reason := pgErr.Message
		if pgErr.ConstraintName != "" {
			reason = "constraint " + pgErr.ConstraintName + " violated"
		}
		return &InvalidEventError{Index: -1, Reason: reason}
	}
	return err
}

func isStreamOrder(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeStreamOrder
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation
}

// TranslateError maps an error from the SQL API to the package's errors. The
// store's own methods already do; companion packages (tenant, esadmin) and
// callers of the SQL functions through their own queries use it too.
func TranslateError(err error) error { return translate(err, "") }
