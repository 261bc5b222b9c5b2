package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/actors/data"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The Redis online store (feature_store { online = "redis" }): the latest
// row of each entity of each view is mirrored into Redis (or Redis
// Cluster), and online lookups of row features read it there. History,
// windowed aggregations and point-in-time reads stay in Kiln's store, which
// remains the record: Redis holds a copy that the leader rewrites from it
// (resync), so losing Redis loses nothing.
//
// Keys are "kiln:fv:<view>:<entity key>", hashes of
//
//	o  the row's order: its timestamp and sequence, zero-padded, so that
//	   Lua compares them as text (Lua numbers are doubles, too short for
//	   nanoseconds);
//	v  the row's values, msgpack.
//
// A row replaces the stored one only if its order is greater: rows arrive
// out of order (late records, a resync racing an ingest) and the latest by
// timestamp, then by write order, must win as in the store.

// redisLatestScript sets a row if it is newer than the stored one.
var redisLatestScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'o')
if cur and cur >= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 'v', ARGV[2])
return 1
`)

// redisOnline is the Redis mirror of the latest values.
type redisOnline struct {
	client redis.UniversalClient
}

func newRedisOnline(cfg FeatureStoreConfig, password string) *redisOnline {
	return &redisOnline{client: redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        cfg.RedisAddrs,
		Password:     password,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	})}
}

func redisKey(view string, e structs.EntityKey) string { return "kiln:fv:" + view + ":" + string(e) }

// redisOrder is a row's place in its entity's order, as text that sorts.
func redisOrder(ts int64, seq uint64) string {
	// Timestamps before 1970 are negative: shift them to sort as text.
	return fmt.Sprintf("%020d.%020d", uint64(ts)^1<<63, seq)
}

// write mirrors committed rows (seqs as the commit gave them; 0 for a row
// not stored) in one pipeline.
func (r *redisOnline) write(ctx context.Context, rows []structs.FeatureRow, seqs []uint64) error {
	pipe := r.client.Pipeline()
	n := 0
	for i := range rows {
		if i >= len(seqs) || seqs[i] == 0 {
			continue
		}
		vals, err := msgpack.Marshal(rows[i].Values)
		if err != nil {
			return err
		}
		redisLatestScript.Run(ctx, pipe, []string{redisKey(rows[i].View, rows[i].Entity)}, redisOrder(rows[i].TS, seqs[i]), vals)
		n++
	}
	if n == 0 {
		return nil
	}
	_, err := pipe.Exec(ctx)
	if err != nil && isNoScript(err) {
		// A new Redis (or a flushed one) lacks the script: load it, then
		// send again.
		if lerr := redisLatestScript.Load(ctx, r.client).Err(); lerr != nil {
			return lerr
		}
		return r.write(ctx, rows, seqs)
	}
	return err
}

func isNoScript(err error) bool {
	return err != nil && len(err.Error()) >= 8 && err.Error()[:8] == "NOSCRIPT"
}

// latest reads the latest rows of entities of a view: nil where Redis has
// none.
func (r *redisOnline) latest(ctx context.Context, view string, keys []structs.EntityKey) ([]*structs.FeatureRow, error) {
	pipe := r.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, redisKey(view, k), "o", "v")
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	out := make([]*structs.FeatureRow, len(keys))
	for i, c := range cmds {
		vals, err := c.Result()
		if err != nil || len(vals) != 2 || vals[0] == nil || vals[1] == nil {
			continue
		}
		order, _ := vals[0].(string)
		raw, _ := vals[1].(string)
		tsText, _, ok := cutOrder(order)
		if !ok {
			continue
		}
		u, err := strconv.ParseUint(tsText, 10, 64)
		if err != nil {
			continue
		}
		row := &structs.FeatureRow{View: view, Entity: keys[i], TS: int64(u ^ 1<<63)}
		dec := msgpack.NewDecoder(strings.NewReader(raw))
		dec.UseLooseInterfaceDecoding(true)
		if err := dec.Decode(&row.Values); err != nil {
			continue
		}
		raftfsm.NormalizeValues(row.Values)
		out[i] = row
	}
	return out, nil
}

func cutOrder(o string) (ts, seq string, ok bool) {
	if len(o) != 41 || o[20] != '.' {
		return "", "", false
	}
	return o[:20], o[21:], true
}

// resync writes every entity's latest row of every view from the store
// into Redis; rows Redis already holds newer are left alone. The leader
// runs it at start and every resync interval, so that rows whose mirror
// write was lost (the node that committed them died first, Redis was
// down) reach Redis.
func (r *redisOnline) resync(ctx context.Context, fsm *raftfsm.FSM) (int, error) {
	txn := fsm.ReadTxn()
	defer txn.Discard()
	views, _, err := txn.FeatureViews("", 0)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, v := range views {
		var rows []structs.FeatureRow
		var seqs []uint64
		flush := func() error {
			err := r.write(ctx, rows, seqs)
			total += len(rows)
			rows, seqs = rows[:0], seqs[:0]
			return err
		}
		err := txn.LatestRows(v.Name, func(row *structs.FeatureRow) error {
			rows = append(rows, *row)
			seqs = append(seqs, row.Seq)
			if len(rows) == 1000 {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// setupRedis connects the Redis online store when the config asks for
// one. The password is read now, from the file or variable the config
// names; Redis need not be up yet (writes and reads fail until it is, and
// the leader's resync fills it).
func (a *Agent) setupRedis() error {
	fs := a.cfg.FeatureStore
	if fs.Online != OnlineRedis {
		return nil
	}
	password, err := (data.Env{}).Resolve("feature_store.redis_password", structs.Secret{Env: fs.RedisPasswordEnv, File: fs.RedisPasswordFile})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	a.redis = newRedisOnline(fs, password)
	a.logger.Info("online features are served from Redis", "addrs", fs.RedisAddrs)
	return nil
}

// redisResyncLoop runs on the leader while Redis is the online store: a
// resync at once, then every redis_resync.
func (a *Agent) redisResyncLoop(ctx context.Context) {
	if a.redis == nil {
		return
	}
	for {
		start := time.Now()
		n, err := a.redis.resync(ctx, a.fsm)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			a.logger.Warn("resyncing Redis failed", "error", err)
		default:
			a.logger.Debug("Redis resynced", "rows", n, "took", time.Since(start))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.FeatureStore.RedisResync):
		}
	}
}
