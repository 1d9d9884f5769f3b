package pgtest

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
)

// keyDir is the run's directory of audit keys, set by Main.
var keyDir string

// AuditKeyFile returns the audit key file for the servers of the database
// at dbURL: every server a test starts on one database shares it, as the
// replicas of one deployment share theirs. The server creates it, in the
// run's directory that Main removes (else under the system's temporary
// directory).
func AuditKeyFile(dbURL string) string {
	name := "default"
	if u, err := url.Parse(dbURL); err == nil && path.Base(u.Path) != "" {
		name = path.Base(u.Path)
	}
	dir := keyDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "crmauthz-test-audit-keys")
	}
	return filepath.Join(dir, name+".json")
}
