package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cluster is a throwaway PostgreSQL cluster in a temporary directory.
type cluster struct {
	dir        string // holds data/, the server log and the Unix socket
	asPostgres bool   // run the binaries as the postgres OS user
	initdb     string
	pgCtl      string
}

// startCluster creates a cluster with initdb and starts it with pg_ctl,
// listening on a free port on 127.0.0.1 only, with trust authentication.
// It returns the cluster and the URL of its postgres database.
func startCluster() (*cluster, string, error) {
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return nil, "", err
	}
	pgCtl, err := exec.LookPath("pg_ctl")
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
		port, err := freePort()
		if err != nil {
			return nil, "", errors.Join(err, os.RemoveAll(dir))
		}
		// -F turns fsync off: the cluster's data dies with the tests.
		opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -F -c full_page_writes=off -c synchronous_commit=off -c max_connections=200", port, dir)
		_, startErr = c.run(c.pgCtl, "start", "-D", c.data(), "-w", "-t", "60", "-l", c.logFile(), "-o", opts)
		if startErr == nil {
			return c, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), nil
		}
	}
	log, _ := os.ReadFile(c.logFile())
	return nil, "", errors.Join(startErr, fmt.Errorf("server log:\n%s", log), os.RemoveAll(dir))
}

// stop stops the cluster and removes its directory. A nil cluster is
// nothing to stop.
func (c *cluster) stop() error {
	if c == nil {
		return nil
	}
	_, err := c.run(c.pgCtl, "stop", "-D", c.data(), "-m", "fast", "-w", "-t", "60")
	return errors.Join(err, os.RemoveAll(c.dir))
}

func (c *cluster) data() string    { return filepath.Join(c.dir, "data") }
func (c *cluster) logFile() string { return filepath.Join(c.dir, "server.log") }

// run runs a PostgreSQL binary, as the postgres user when needed.
func (c *cluster) run(bin string, args ...string) ([]byte, error) {
	// The binaries are initdb and pg_ctl found on PATH, with arguments
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
