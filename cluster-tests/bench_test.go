package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkFailover kills the leader of a 3-node cluster with SIGKILL b.N times
// and reports the mean time from the kill to the first write acknowledged
// through another node. Between kills the dead node is restarted and the cluster
// settles (3 voters, one leader), outside the measurement.
//
//	go test -run '^$' -bench Failover -benchtime 5x ./cluster-tests/
func BenchmarkFailover(b *testing.B) {
	c := newCluster(b, 3)
	var total, worst time.Duration
	for i := 0; i < b.N; i++ {
		leader := c.waitLeader(leaderTimeout)
		took := killLeaderAndWrite(b, leader, c.others(leader), fmt.Sprintf("failover-%d", i))
		total += took
		worst = max(worst, took)
		b.Logf("kill %d: %s led; a write was acknowledged %s after the kill", i+1, leader.name, took.Round(time.Millisecond))
		leader.restart()
		c.waitLeader(leaderTimeout)
		c.waitVoters(3, leaderTimeout)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "failover-s")
	b.ReportMetric(worst.Seconds(), "max-failover-s")
}

// BenchmarkIdleRSS starts one node that bootstraps alone, leaves it idle for
// 10 s and reports its resident memory (VmRSS). Linux only.
//
//	go test -run '^$' -bench IdleRSS ./cluster-tests/
func BenchmarkIdleRSS(b *testing.B) {
	var totalMB float64
	for i := 0; i < b.N; i++ {
		c := newCluster(b, 1)
		nd := c.all()[0]
		time.Sleep(10 * time.Second) // the measurement: idle time, not synchronisation
		mb, err := vmRSSMB(nd.pid())
		if err != nil {
			b.Fatal(err)
		}
		totalMB += mb
		nd.kill()
	}
	b.ReportMetric(totalMB/float64(b.N), "rss-MB")
}

// vmRSSMB reads VmRSS of pid from /proc, in MiB.
func vmRSSMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseFloat(f[0], 64)
				return kb / 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// BenchmarkTokenRevocation creates a token on a 3-node ACL cluster, deletes it
// through one node b.N times, and reports how long after the DELETE returned
// the last node refused it (mean and worst). Each node is polled in its own
// goroutine without pause, so the figure is the apply delay plus one request.
//
//	go test -run '^$' -bench TokenRevocation -benchtime 20x ./cluster-tests/
func BenchmarkTokenRevocation(b *testing.B) {
	c := newCluster(b, 3, withACL())
	nodes := c.all()
	nodes[0].write("PUT", "/v1/acl/policies/reader", map[string]any{"rules": `model "*" { policy = "read" }`}, 200)
	var total, worst time.Duration
	for i := 0; i < b.N; i++ {
		r := nodes[0].write("POST", "/v1/acl/tokens", map[string]any{"policies": []string{"reader"}}, 200)
		var tok struct {
			AccessorID string `json:"accessor_id"`
			SecretID   string `json:"secret_id"`
		}
		if err := json.Unmarshal(r.body, &tok); err != nil {
			b.Fatal(err)
		}
		for _, nd := range nodes { // every node knows the token before it goes
			expectStatus(b, nd, tok.SecretID, "GET", fmt.Sprintf("/v1/models?index=%d", r.index()), nil, http.StatusOK)
		}
		via := nodes[i%len(nodes)]
		via.write("DELETE", "/v1/acl/tokens/"+tok.AccessorID, nil, 200)
		deleted := time.Now()
		var wg sync.WaitGroup
		for _, nd := range nodes {
			wg.Go(func() {
				for {
					if r, err := nd.callAs(tok.SecretID, "GET", "/v1/models", nil); err == nil && r.status == http.StatusUnauthorized {
						return
					}
				}
			})
		}
		wg.Wait()
		took := time.Since(deleted)
		total += took
		worst = max(worst, took)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "revoke-ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-revoke-ms")
}
