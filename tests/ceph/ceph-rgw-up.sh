#!/bin/bash
# Start a throwaway single-node Ceph cluster (1 mon, 1 OSD, radosgw/beast) on 127.0.0.1.
# Needs: apt-get install -y --no-install-recommends ceph-mon ceph-osd ceph-common radosgw
# Env:   D (state dir, default: mktemp -d), MON_PORT, RGW_PORT, OSD_PORT_MIN (OSD uses 4 ports
#        from here on), OBJECTSTORE (memstore|bluestore), MEMSTORE_BYTES, S3_AK, S3_SK.
# Prints: D=<dir> and endpoint; writes $D/run/*.pid and $D/env (sourceable).
set -euo pipefail
D=${D:-$(mktemp -d -t ceph-rgw.XXXXXX)}
MON_PORT=${MON_PORT:-13300}
RGW_PORT=${RGW_PORT:-17480}
OSD_PORT_MIN=${OSD_PORT_MIN:-16800}
OBJECTSTORE=${OBJECTSTORE:-memstore}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-1073741824}
S3_AK=${S3_AK:-TESTACCESSKEY}
S3_SK=${S3_SK:-TESTSECRETKEY}
T0=$(date +%s%N)
mkdir -p "$D"/{mon.a,osd.0,run,log,rgw}
FSID=$(uuidgen)
cat > "$D/ceph.conf" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
ms bind port min = $OSD_PORT_MIN
ms bind port max = $((OSD_PORT_MIN + 20))
auth cluster required = none
auth service required = none
auth client required = none
# radosgw defaults ms_mon_client_mode to "secure", which auth=none cannot do (EACCES/-13 loop)
ms mon client mode = crc secure
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon max pg per osd = 1000
# the mon refuses to run when its disk is <5% free (default); don't let CI disks trip it
mon data avail warn = 2
mon data avail crit = 1
# keep the cluster/audit log out of /var/log/ceph
mon cluster log to file = false
[mon]
mon data = $D/\$name
paxos propose interval = 0.1
paxos min wait = 0.01
[osd]
osd data = $D/\$name
osd objectstore = $OBJECTSTORE
memstore device bytes = $MEMSTORE_BYTES
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mkfs = false
osd memory target = 1073741824
[client.rgw.a]
# tcp_nodelay: without it small responses wait for the client's delayed ACK (a 4 KiB ranged GET took
# 52 ms instead of 5 ms here, every request 2-3x slower)
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $D/rgw
EOF
C="-c $D/ceph.conf"
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null
ceph-mon $C --mkfs -i a --monmap "$D/monmap"
ceph-mon $C -i a                                   # daemonizes; pid in $D/run/mon.a.pid
OSD_UUID=$(uuidgen)
OSD_ID=$(timeout 60 ceph $C osd new "$OSD_UUID")   # -> 0
ceph-osd $C -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" 2>/dev/null
ceph-osd $C -i "$OSD_ID" 2>/dev/null               # daemonizes
radosgw $C -n client.rgw.a                         # daemonizes; creates its pools on first start
# wait for the S3 endpoint (anonymous ListBuckets answers 200)
for i in $(seq 1 600); do
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$RGW_PORT/" || true)
  [ "$code" = 200 ] && break; sleep 0.1
done
[ "$code" = 200 ] || { echo "radosgw not answering; see $D/log" >&2; exit 1; }
timeout 60 radosgw-admin $C user create --uid=tester --display-name=tester \
  --access-key="$S3_AK" --secret-key="$S3_SK" >/dev/null
cat > "$D/env" <<EOF
CEPH_DIR=$D
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
AWS_ACCESS_KEY_ID=$S3_AK
AWS_SECRET_ACCESS_KEY=$S3_SK
EOF
echo "D=$D endpoint=http://127.0.0.1:$RGW_PORT ready in $(( ($(date +%s%N) - T0) / 1000000 )) ms"
