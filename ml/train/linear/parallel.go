package linear

import (
	"context"
	"sync"
	"sync/atomic"
)

// Row blocks. A block's bounds depend on the row count and the model's size,
// never on the thread count, and block sums are added in block order, so a
// fit is the same bitwise whatever Threads is. At most maxBlocks blocks keep
// the per-block partial sums small; at least minBlockRows rows keep a block
// worth a goroutine's time.
const (
	minBlockRows = 256
	maxBlocks    = 256
)

// blocks returns how many row blocks n rows make, at most limit (and
// maxBlocks) of them, and the rows in each but the last.
func blocks(n, limit int) (count, size int) {
	limit = max(1, min(limit, maxBlocks))
	size = max(minBlockRows, (n+limit-1)/limit)
	return (n + size - 1) / size, size
}

// parallel calls fn(i) for each i in [0, n) on up to threads goroutines,
// which have all returned when it does. It stops handing out work once ctx
// is done and then returns ctx.Err().
func parallel(ctx context.Context, threads, n int, fn func(i int)) error {
	workers := min(max(threads, 1), n)
	if workers <= 1 {
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			fn(i)
		}
		return nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}
