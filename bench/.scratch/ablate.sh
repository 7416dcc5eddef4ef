#!/bin/bash
# usage: ablate.sh "features" ... ; prints rps for each
cd /work/main
for feats in "$@"; do
  PORT=$((20000 + RANDOM % 10000))
  FEATURES="$feats" PORT=$PORT /work/main/node_modules/node/bin/node bench/.scratch/ablate-server.ts > /tmp/ablate.log 2>&1 &
  PID=$!
  for i in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/livez >/dev/null && break; sleep 0.1; done
  /work/main/node_modules/node/bin/node node_modules/autocannon/autocannon.js -c 50 -d 2 http://127.0.0.1:$PORT/livez > /dev/null 2>&1
  R=$(/work/main/node_modules/node/bin/node node_modules/autocannon/autocannon.js -c 50 -d ${D:-6} -j http://127.0.0.1:$PORT/livez 2>/dev/null | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s);console.log(Math.round(r.requests.average), r.latency.p99, r.non2xx)})")
  echo "$(cat /proc/loadavg | cut -d' ' -f1) [$feats] $R"
  kill -TERM $PID; wait $PID 2>/dev/null
done
