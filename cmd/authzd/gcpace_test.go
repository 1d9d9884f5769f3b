package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCollectorPacedOnceServing: a serving authzd with its few demo
// tenants leaves the collector the room of --gc-headroom-mb, which its
// Prometheus metrics show as a GOGC above 100; with 0 it keeps Go's 100.
func TestCollectorPacedOnceServing(t *testing.T) {
	for _, c := range []struct {
		headroom string
		paced    bool
	}{{"64", true}, {"0", false}} {
		t.Run("headroom "+c.headroom, func(t *testing.T) {
			addr, ops := freeAddr(t), freeAddr(t)
			cmd := exec.Command(os.Args[0], "serve", "--listen-addr", addr, "--metrics-addr", ops, "--log-level", "error",
				"--gc-headroom-mb", c.headroom)
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOGC=") {
					env = append(env, kv)
				}
			}
			launch(t, cmd, env)
			startWait(t, addr, "")
			deadline := time.Now().Add(10 * time.Second)
			for {
				gogc := gaugeValue(t, "http://"+ops+"/metrics", "go_gc_gogc_percent")
				if c.paced && gogc > 100 || !c.paced && gogc == 100 {
					t.Logf("GOGC %v", gogc)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GOGC stayed %v", gogc)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// gaugeValue reads one unlabelled metric from a Prometheus text page.
func gaugeValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // the test's own server on loopback
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s not in %s", name, url)
	return 0
}
