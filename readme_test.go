package pges_test

import (
	"context"
	"os"
	"regexp"
	"testing"
)

// The README's psql example must work as written.
func TestReadmeSQLExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no sql example")
	}
	pool := testdbPool(t)
	for _, b := range blocks {
		if _, err := pool.Exec(context.Background(), string(b[1])); err != nil {
			t.Fatalf("README sql example fails: %v\n%s", err, b[1])
		}
	}
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM es.events WHERE tenant_id = 'acme'").Scan(&n); err != nil || n != 3 {
		t.Fatalf("the example should leave 3 events for acme (2 stream events with the tombstone, 1 DCB): %d, %v", n, err)
	}
}
