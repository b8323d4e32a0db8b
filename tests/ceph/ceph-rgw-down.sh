#!/bin/bash
# Stop the daemons started by ceph-rgw-up.sh (by PID from their pid files) and delete the dir.
# Usage: [SIG=KILL] bash ceph-rgw-down.sh <D>     (default SIG=TERM; KILL is fine for throwaway data)
D=${1:?state dir}
alive() {  # running and not a zombie (PID 1 here reaps zombies only every ~1.5 s)
  local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
for n in client.rgw.a osd.0 mon.a; do
  f="$D/run/$n.pid"; [ -f "$f" ] || continue
  pid=$(cat "$f")
  # only signal it if it really is our daemon (guards against PID reuse)
  grep -qa -- "$D/ceph.conf" "/proc/$pid/cmdline" 2>/dev/null || continue
  kill -"${SIG:-TERM}" "$pid"
  for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && kill -KILL "$pid"
done
rm -rf -- "$D"
