#!/usr/bin/env bash
# Predict throughput on one dev node with ACLs on (a token on every request)
# and off, alternated: bash cluster-tests/acl-bench.sh   (needs a free 127.0.0.1:7070)
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/kiln ./cmd/kiln
K=$PWD/bin/kiln; M=$PWD/ml/testdata/linear/iris.json
run() { # $1 = on|off
  dir=$(mktemp -d); cfg=$dir/acl.hcl
  if [ "$1" = on ]; then printf 'acl {\n  enabled = true\n}\n' > $cfg; else : > $cfg; fi
  $K agent -dev -config $cfg -data-dir $dir/data > $dir/log 2>&1 & pid=$!
  for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:7070/v1/status && break || sleep 0.2; done
  tok=""
  if [ "$1" = on ]; then
    for i in $(seq 50); do tok=$($K acl bootstrap -format json 2>/dev/null | python3 -c 'import json,sys;print(json.load(sys.stdin)["secret_id"])') && break || sleep 0.2; done
  fi
  export KILN_TOKEN=$tok
  $K models create iris >/dev/null && $K models push iris $M >/dev/null && $K deploy -wait 30s -version 1 iris >/dev/null
  $K bench predict -address 127.0.0.1:7070 -c 64 -d 10s -data '[[5.1,3.5,1.4,0.2]]' -format json iris | python3 -c "import json,sys;r=json.load(sys.stdin);print('$1', round(r.get('ops_per_sec', r.get('kiln',{}).get('ops_per_sec',0))), r)" 
  unset KILN_TOKEN
  kill $pid; wait $pid 2>/dev/null || true; rm -rf $dir
}
# ABBA order, so that a drift in the machine's speed over the runs does not favour
# either side.
for r in 1 2 3; do run off; run on; run on; run off; done
