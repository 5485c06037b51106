package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/eventstore-go/pges"
)

// The cost of typed reads (issue #8): a 10,000-event stream read and
// decoded by a Codec, once stored at the registered schema version and
// once at version 1, two upcasters away. The baseline is read-stream's:
// the plain SELECT of the same rows.
func init() {
	all = append(all,
		scenario{name: "read-typed-10000", clients: []int{1}, prepare: prepareTypedRead(3)},
		scenario{name: "read-upcast2-10000", clients: []int{1}, prepare: prepareTypedRead(1)},
	)
}

// paymentV3 is the current shape of the bench payload; v1 and v2 are its
// past: v1 names course and student without "_id" and has the amount as a
// string, v2 renamed the fields, v3 made the amount a number.
type paymentV3 struct {
	CourseID  string `json:"course_id"`
	StudentID string `json:"student_id"`
	Amount    int    `json:"amount"`
	Currency  string `json:"currency"`
	Note      string `json:"note"`
}

type paymentV2 struct {
	CourseID  string `json:"course_id"`
	StudentID string `json:"student_id"`
	Amount    string `json:"amount"`
	Currency  string `json:"currency"`
	Note      string `json:"note"`
}

type paymentV1 struct {
	Course   string `json:"course"`
	Student  string `json:"student"`
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
	Note     string `json:"note"`
}

func paymentCodec() (*pges.Codec[any], error) {
	c := pges.NewCodec[any](nil)
	if err := pges.Register[paymentV3](c, "PaymentRecorded", 3); err != nil {
		return nil, err
	}
	if err := c.Upcast("PaymentRecorded", 1, pges.UpcastFunc(func(v paymentV1) (paymentV2, error) {
		return paymentV2{CourseID: v.Course, StudentID: v.Student, Amount: v.Amount, Currency: v.Currency, Note: v.Note}, nil
	})); err != nil {
		return nil, err
	}
	return c, c.Upcast("PaymentRecorded", 2, pges.UpcastFunc(func(v paymentV2) (paymentV3, error) {
		n, err := strconv.Atoi(v.Amount)
		return paymentV3{CourseID: v.CourseID, StudentID: v.StudentID, Amount: n, Currency: v.Currency, Note: v.Note}, err
	}))
}

func prepareTypedRead(storedVersion int) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		codec, err := paymentCodec()
		if err != nil {
			return nil, nil, err
		}
		var p paymentV3
		if err := json.Unmarshal(payload, &p); err != nil {
			return nil, nil, err
		}
		var body any = p
		if storedVersion == 1 {
			body = paymentV1{Course: p.CourseID, Student: p.StudentID, Amount: strconv.Itoa(p.Amount), Currency: p.Currency, Note: p.Note}
		}
		stored, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		const n = 10_000
		stream := fmt.Sprintf("%s-typed-v%d", r.runID, storedVersion)
		for written := 0; written < n; written += 1000 {
			batch := make([]pges.EventData, 1000)
			for i := range batch {
				batch[i] = pges.EventData{Type: "PaymentRecorded", Payload: stored, SchemaVersion: storedVersion}
			}
			if _, err := r.store.AppendToStream(ctx, stream, pges.Any, batch...); err != nil {
				return nil, nil, err
			}
		}
		storeOp := func(ctx context.Context, c int, call int64) (int, error) {
			count := 0
			for e, err := range codec.Events(r.store.IterateStream(ctx, stream, 0)) {
				if err != nil {
					return count, err
				}
				if e.Data.(paymentV3).Amount != p.Amount {
					return count, fmt.Errorf("position %d decoded to %+v", e.Position, e.Data)
				}
				count++
			}
			if count != n {
				return count, fmt.Errorf("read %d events, want %d", count, n)
			}
			return count, nil
		}
		return storeOp, scanStream(r, stream), nil
	}
}
