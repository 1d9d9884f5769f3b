package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/memory"
	"github.com/crmauthz/crmauthz/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := memory.New(nil)
		t.Cleanup(s.Close)
		return s
	})
}
