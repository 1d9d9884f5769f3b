package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a throwaway PostgreSQL cluster of one test's own, which the
// test may stop and start again: to see what the service does while its
// database is away. Tests that stop PostgreSQL use one, never the server
// the other tests share. It is removed when the test ends.
type Cluster struct {
	s *server // the cluster's postgres database; no template
}

// NewCluster starts a throwaway cluster (as the package doc describes the
// one pgtest falls back on: initdb and pg_ctl, a free port on 127.0.0.1,
// trust authentication, run as the postgres OS user under root), stopped
// and removed when t ends. t is skipped when initdb or pg_ctl is not
// installed.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, url, err := startCluster()
	if errors.Is(err, errNotInstalled) {
		t.Skipf("pgtest: a test with a PostgreSQL cluster of its own needs initdb and pg_ctl: %v", err)
	}
	if err != nil {
		t.Fatalf("pgtest: start a cluster: %v", err)
	}
	s := &server{url: url, kind: "a cluster of the test's own in " + c.dir, cluster: c, prefix: "crmauthz_test"}
	t.Cleanup(func() {
		if s.admin != nil {
			s.admin.Close()
		}
		if err := c.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if s.admin, err = connectAdmin(ctx, url); err != nil {
		t.Fatalf("pgtest: connect to %s: %v", s.kind, err)
	}
	return &Cluster{s: s}
}

// URL returns the URL of the cluster's postgres database.
func (c *Cluster) URL() string { return c.s.url }

// NewDatabase creates a fresh database in the cluster holding the current
// schema and no data, and returns its connection string. It goes with the
// cluster.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	name := c.s.nextName()
	if err := c.s.createMigrated(ctx, name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return withDatabase(c.s.url, name)
}

// Stop stops the cluster's server as an operator's fast shutdown does:
// sessions are disconnected, new connections refused; the data stays.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.s.cluster.halt(); err != nil {
		t.Fatalf("pgtest: stop the cluster: %v", err)
	}
}

// Start starts the cluster's server again, on the same port with the same
// data, and returns once it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.s.cluster.start(); err != nil {
		t.Fatalf("pgtest: start the cluster again: %v", err)
	}
	// The connections from before the stop are dead; a pool hands an idle
	// one out unchecked for a second.
	c.s.admin.Reset()
}

// cluster is a throwaway PostgreSQL cluster in a temporary directory.
type cluster struct {
	dir        string // holds data/, the server log and the Unix socket
	asPostgres bool   // run the binaries as the postgres OS user
	initdb     string
	pgCtl      string
	port       int  // the port on 127.0.0.1 it listens on, kept across restarts
	running    bool // started and not halted since
}

// startCluster creates a cluster with initdb and starts it with pg_ctl,
// listening on a free port on 127.0.0.1 only, with trust authentication.
// It returns the cluster and the URL of its postgres database. An error
// that matches errNotInstalled means initdb or pg_ctl is not installed.
func startCluster() (*cluster, string, error) {
	initdb, err := lookPG("initdb")
	if err != nil {
		return nil, "", err
	}
	pgCtl, err := lookPG("pg_ctl")
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "crmauthz-pg-")
	if err != nil {
		return nil, "", err
	}
	c := &cluster{dir: dir, initdb: initdb, pgCtl: pgCtl}
	// initdb refuses to run as root: hand the directory to the postgres
	// user and run the binaries as that user.
	if os.Geteuid() == 0 {
		if err := chownToPostgres(dir); err != nil {
			return nil, "", errors.Join(err, os.RemoveAll(dir))
		}
		c.asPostgres = true
	}
	if _, err := c.run(c.initdb, "-D", c.data(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return nil, "", errors.Join(err, os.RemoveAll(dir))
	}
	// A free port can be taken between the probe and the server's start;
	// try a few.
	var startErr error
	for range 3 {
		if c.port, err = freePort(); err != nil {
			return nil, "", errors.Join(err, os.RemoveAll(dir))
		}
		if startErr = c.start(); startErr == nil {
			return c, c.url(), nil
		}
	}
	return nil, "", errors.Join(startErr, os.RemoveAll(dir))
}

// start starts the cluster's server on its port and waits until it
// accepts connections.
func (c *cluster) start() error {
	// -F turns fsync off: the cluster's data dies with the tests.
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -F -c full_page_writes=off -c synchronous_commit=off -c max_connections=200", c.port, c.dir)
	if _, err := c.run(c.pgCtl, "start", "-D", c.data(), "-w", "-t", "60", "-l", c.logFile(), "-o", opts); err != nil {
		log, _ := os.ReadFile(c.logFile())
		return errors.Join(err, fmt.Errorf("server log:\n%s", log))
	}
	c.running = true
	return nil
}

// halt stops the cluster's server (fast shutdown: sessions are
// disconnected, the data is kept) and waits until it is down.
func (c *cluster) halt() error {
	if _, err := c.run(c.pgCtl, "stop", "-D", c.data(), "-m", "fast", "-w", "-t", "60"); err != nil {
		return err
	}
	c.running = false
	return nil
}

// stop stops the cluster, if it runs, and removes its directory. A nil
// cluster is nothing to stop.
func (c *cluster) stop() error {
	if c == nil {
		return nil
	}
	var err error
	if c.running {
		err = c.halt()
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// url is the URL of the cluster's postgres database.
func (c *cluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

func (c *cluster) data() string    { return filepath.Join(c.dir, "data") }
func (c *cluster) logFile() string { return filepath.Join(c.dir, "server.log") }

// run runs a PostgreSQL binary, as the postgres user when needed.
func (c *cluster) run(bin string, args ...string) ([]byte, error) {
	// The binaries are initdb and pg_ctl found by lookPG, with arguments
	// this package builds; nothing comes from test input.
	cmd := exec.Command(bin, args...) //nolint:gosec // see above
	if c.asPostgres {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...) //nolint:gosec // see above
	}
	cmd.Dir = c.dir
	// pg_ctl start leaves the server running; should it keep our output
	// pipe open, stop waiting for it after a while.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return out, nil
}

// debianBinaries is where Debian and Ubuntu install each PostgreSQL
// major version's server binaries, off PATH.
const debianBinaries = "/usr/lib/postgresql/*/bin"

// errNotInstalled is the error of a PostgreSQL server binary not found.
var errNotInstalled = errors.New("not installed")

// lookPG finds a PostgreSQL server binary: on PATH, else in the newest
// version's directory of the Debian layout.
func lookPG(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	dirs, _ := filepath.Glob(debianBinaries)
	slices.SortFunc(dirs, func(a, b string) int { return majorVersion(b) - majorVersion(a) })
	for _, dir := range dirs {
		if p, lerr := exec.LookPath(filepath.Join(dir, name)); lerr == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s %w: neither on PATH nor in %s", name, errNotInstalled, debianBinaries)
}

// majorVersion is the version in a path /usr/lib/postgresql/<version>/bin.
func majorVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// chownToPostgres gives dir to the postgres OS user.
func chownToPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs a postgres OS user: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return os.Chown(dir, uid, gid)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
