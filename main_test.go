package pges_test

import (
	"testing"

	"github.com/eventstore-go/pges/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m, "pges") }
