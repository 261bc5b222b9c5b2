package node

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestAgent_FeaturesOnlineFromRedis runs the online store on a real
// redis-server: pushed rows reach Redis, a late (older) row does not
// replace a newer one, online lookups answer from Redis (a value changed
// there is what they return), windowed features still come from Kiln, and
// the leader's resync restores what Redis lost.
func TestAgent_FeaturesOnlineFromRedis(t *testing.T) {
	addr := testutil.StartRedis(t)
	a := testNode(t, func(c *Config) {
		c.FeatureStore.Online, c.FeatureStore.RedisAddrs, c.FeatureStore.RedisResync = OnlineRedis, []string{addr}, 200*time.Millisecond
	})
	waitLeader(t, a)
	featureSetup(t, a)
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	push := `{"user_id": 5, "ts": "` + ts(-time.Minute) + `", "amount": 1.5, "country": "fr"}` + "\n" +
		`{"user_id": 5, "ts": "` + ts(-2*time.Minute) + `", "amount": 9.0, "country": "de"}` + "\n" + // late and older
		`{"user_id": 6, "ts": "` + ts(-time.Minute) + `", "amount": 4.0, "country": "it"}`
	if res := call(t, a, "POST", "/v1/sources/txns/records", push); res.status != http.StatusOK {
		t.Fatalf("push = %d %s", res.status, res.raw)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	if n, err := rdb.Exists(ctx, "kiln:fv:txn_stats:5", "kiln:fv:txn_stats:6").Result(); err != nil || n != 2 {
		t.Fatalf("Redis holds %d of the 2 entities (%v)", n, err)
	}
	online := func() map[string]any {
		res := call(t, a, "POST", "/v1/features/online", `{"features": ["txn_stats:amount", "txn_stats:country", "txn_stats:txn_count_1d"], "entities": {"user_id": [5, 6, 7]}}`)
		if res.status != http.StatusOK || res.body["missing"] != 1.0 {
			t.Fatalf("online = %d %s; want user 7 missing", res.status, res.raw)
		}
		return res.body["rows"].([]any)[0].(map[string]any)["values"].(map[string]any)
	}
	if v := online(); v["txn_stats:amount"] != 1.5 || v["txn_stats:country"] != "fr" || v["txn_stats:txn_count_1d"] != 2.0 {
		t.Fatalf("user 5 = %v; want the newer row (1.5, fr) and both rows counted", v)
	}
	// The lookup reads Redis: a newer row written there directly is what
	// it answers.
	row, err := rdb.HGet(ctx, "kiln:fv:txn_stats:6", "v").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, "kiln:fv:txn_stats:5", "v", row).Err(); err != nil {
		t.Fatal(err)
	}
	if v := online(); v["txn_stats:country"] != "it" {
		t.Fatalf("user 5 = %v; want the value written into Redis", v)
	}
	// Redis loses everything; the resync brings it back from the store.
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.Until(t, 10*time.Second, "the resync to refill Redis", func() bool {
		n, _ := rdb.Exists(ctx, "kiln:fv:txn_stats:5", "kiln:fv:txn_stats:6").Result()
		return n == 2
	})
	if v := online(); v["txn_stats:country"] != "fr" {
		t.Fatalf("user 5 after the resync = %v; want fr again", v)
	}
}
