package testutil

import (
	"net"
	"testing"
)

// A started redis-server answers PING, and is gone once its test ends.
func TestStartRedis_AnswersAndStops(t *testing.T) {
	var addr string
	t.Run("running", func(t *testing.T) {
		addr = StartRedis(t)
		if err := pingRedis(addr); err != nil {
			t.Fatalf("PING %s: %v", addr, err)
		}
	})
	if addr == "" {
		t.Skip("redis-server did not start")
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatalf("redis-server still listens on %s after its test ended", addr)
	}
}
