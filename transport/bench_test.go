package transport

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCall measures small parallel calls over one pooled loopback session.
func BenchmarkCall(b *testing.B) {
	for _, tc := range []struct {
		name     string
		tls      bool
		deadline bool // a cancellable ctx takes the send-goroutine path
	}{
		{name: "plain"},
		{name: "plain_deadline", deadline: true},
		{name: "tls_deadline", tls: true, deadline: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var opts []func(*Config)
			if tc.tls {
				opts = append(opts, withTLS(testTLSConfig(b)))
			}
			server := testTransport(b, opts...)
			registerTestMethods(server)
			client := testTransport(b, opts...)
			addr := server.Addr()
			if err := client.Call(context.Background(), addr, "echo", &echoArgs{}, nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(parallelism)
			b.RunParallel(func(pb *testing.PB) {
				args := &echoArgs{Text: "ping", N: 1}
				var reply echoReply
				ctx := context.Background()
				if tc.deadline {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Minute)
					defer cancel()
				}
				for pb.Next() {
					if err := client.Call(ctx, addr, "echo", args, &reply); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

// parallelism is goroutines per GOMAXPROCS in RunParallel: enough calls in
// flight to measure the session's throughput rather than one call's latency.
const parallelism = 16
