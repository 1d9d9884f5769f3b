package pgtest

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
)

// AuditKeyFile returns the audit key file for the servers of the database
// at dbURL: every server a test starts on one database shares it, as the
// replicas of one deployment share theirs. The server creates it.
func AuditKeyFile(dbURL string) string {
	name := "default"
	if u, err := url.Parse(dbURL); err == nil && path.Base(u.Path) != "" {
		name = path.Base(u.Path)
	}
	return filepath.Join(os.TempDir(), "crmauthz-test-audit-keys", name+".json")
}
