package backup_test

import (
	"testing"

	"github.com/crmauthz/crmauthz/internal/backup"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
)

// BenchmarkLarge encodes and reads back the document of the largest
// generated tenant.
func BenchmarkLarge(b *testing.B) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	st, err := datagen.Tenant("large", bun, datagen.Large(), 1, now)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []backup.Format{backup.YAML, backup.JSON} {
		b.Run(string(f)+"/export", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := backup.FromState(st).Encode(f); err != nil {
					b.Fatal(err)
				}
			}
		})
		data, err := backup.FromState(st).Encode(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(f)+"/import", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := backup.Decode(data)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.State(bun.Catalog, "copy"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
