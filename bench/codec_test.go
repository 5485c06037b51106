package bench

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/eventstore-go/pges"
)

// go test -run - -bench Decode ./bench: the codec's cost per event without
// the database, for a payload stored at the registered version and one
// two upcasters behind (the read-typed and read-upcast2 scenarios measure
// the same with the read).
func BenchmarkDecode(b *testing.B) {
	codec, err := paymentCodec()
	if err != nil {
		b.Fatal(err)
	}
	var p paymentV3
	if err := json.Unmarshal(payload, &p); err != nil {
		b.Fatal(err)
	}
	v1, _ := json.Marshal(paymentV1{Course: p.CourseID, Student: p.StudentID, Amount: strconv.Itoa(p.Amount), Currency: p.Currency, Note: p.Note})
	for _, c := range []struct {
		name    string
		version int
		payload json.RawMessage
	}{{"raw-unmarshal", 0, payload}, {"current", 3, payload}, {"upcast2", 1, v1}} {
		ev := pges.RecordedEvent{Type: "PaymentRecorded", SchemaVersion: c.version, Payload: c.payload}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.version == 0 {
					var out paymentV3
					if err := json.Unmarshal(ev.Payload, &out); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if _, err := codec.Decode(ev); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
