package actors

import (
	"context"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

var (
	msgpackMarshal   = msgpack.Marshal
	msgpackUnmarshal = msgpack.Unmarshal
)

// BenchmarkAsk measures parallel Asks to one actor, in process and across two
// transports on loopback.
func BenchmarkAsk(b *testing.B) {
	n1, n2 := testPair(b)
	ref, _ := spawnTest(b, n2, "bench", 1, SpawnOptions{Mailbox: 1024})
	for _, tc := range []struct {
		name string
		from *System
	}{
		{name: "local", from: n2},
		{name: "remote", from: n1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(parallelism)
			b.RunParallel(func(pb *testing.PB) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				for pb.Next() {
					if _, err := tc.from.Ask(ctx, ref, get{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "asks/s")
		})
	}
}

// parallelism is goroutines per GOMAXPROCS in RunParallel: enough Asks in
// flight to keep the mailbox and the RPC session busy.
const parallelism = 16
