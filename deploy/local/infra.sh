#!/usr/bin/env bash
# Real Apache Kafka (KRaft, single node) and Apache Cassandra (single node) for local
# development and tests, run from Maven Central jars with Java 17 - no Docker.
#
#   deploy/local/infra.sh up     [ENGINE|all]   fetch jars once, start, wait until serving
#   deploy/local/infra.sh down   [ENGINE|all]   SIGTERM, wait, SIGKILL after a timeout
#   deploy/local/infra.sh status [ENGINE|all]   exit 0 only if every named engine serves
#   deploy/local/infra.sh reset  [ENGINE|all]   down + wipe data (and logs); jars are kept
#   deploy/local/infra.sh fetch  [ENGINE|all]   only fetch the jars
#   ENGINE: kafka, cassandra or cassandra-secure; all = the three.
#
# Endpoints: Kafka PLAINTEXT 127.0.0.1:9092 (controller 127.0.0.1:9093), and on the same
#              broker SASL_SSL 127.0.0.1:9094 and SASL_PLAINTEXT 127.0.0.1:9095 (PLAIN,
#              SCRAM-SHA-256 and SCRAM-SHA-512 on both);
#            Cassandra CQL 127.0.0.1:9042 (storage 127.0.0.1:7000, local JMX 127.0.0.1:7199);
#            cassandra-secure: a second, small Cassandra with TLS and PasswordAuthenticator,
#              CQL 127.0.0.1:9142 (storage 127.0.0.1:7100, local JMX 127.0.0.1:7299).
# Secured endpoints (tests/integration/test_secured_engines.py): user `csms`, password
#   `csms-local-secret` (Kafka SASL and Cassandra role); TLS with a throwaway CA made at the
#   first `up` with openssl: deploy/local/tls/ca.pem (CSMS_KAFKA_SSL_CAFILE and
#   CSMS_CASSANDRA_SSL_CAFILE of the clients); the certificate names localhost and
#   127.0.0.1. Loopback only: never reuse these elsewhere.
# State: deploy/local/<engine>/{lib,data,logs,<engine>.pid} and deploy/local/tls (all
# git-ignored; cassandra-secure runs on cassandra's jars). `down kafka` then `up kafka`
# keeps the topics and messages (that is how tests simulate a Kafka outage).
#
# Tunables (environment): KAFKA_HEAP (512m), CASSANDRA_HEAP (1g), CASSANDRA_SECURE_HEAP
# (512m), KAFKA_START_TIMEOUT (90), CASSANDRA_START_TIMEOUT (240), KAFKA_STOP_TIMEOUT (30),
# CASSANDRA_STOP_TIMEOUT (60), JAVA_HOME (java on PATH otherwise), PYTHON (python3; stdlib
# only, used for the wire probes).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KDIR="$HERE/kafka"
CDIR="$HERE/cassandra"
SDIR="$HERE/cassandra-secure"
TLS_DIR="$HERE/tls"
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi
PYTHON="${PYTHON:-python3}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
CASSANDRA_HEAP="${CASSANDRA_HEAP:-1g}"
CASSANDRA_SECURE_HEAP="${CASSANDRA_SECURE_HEAP:-512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
CASSANDRA_START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-240}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
CASSANDRA_STOP_TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-60}"
KAFKA_PORT=9092
KAFKA_SASL_SSL_PORT=9094
KAFKA_SASL_PLAINTEXT_PORT=9095
CASSANDRA_PORT=9042
CASSANDRA_SECURE_PORT=9142
# the secured endpoints' one user (Kafka SASL PLAIN/SCRAM, Cassandra role) and the
# password of the broker's and node's PKCS#12 key store: local test values only
SECURE_USER=csms
SECURE_PASSWORD=csms-local-secret
TLS_STORE_PASSWORD=csms-local-store

log() { printf '%s\n' "$*"; }
err() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

engine_dir() { case "$1" in kafka) echo "$KDIR" ;; cassandra) echo "$CDIR" ;; cassandra-secure) echo "$SDIR" ;; esac; }
engine_port() {
  case "$1" in kafka) echo "$KAFKA_PORT" ;; cassandra) echo "$CASSANDRA_PORT" ;; cassandra-secure) echo "$CASSANDRA_SECURE_PORT" ;; esac
}
engine_heap() { case "$1" in kafka) echo "$KAFKA_HEAP" ;; cassandra) echo "$CASSANDRA_HEAP" ;; cassandra-secure) echo "$CASSANDRA_SECURE_HEAP" ;; esac; }
# the engine whose jars it runs on
engine_jars() { case "$1" in cassandra-secure) echo cassandra ;; *) echo "$1" ;; esac; }
# the engine's name as part of a shell variable name
engine_var() { echo "${1//-/_}"; }
# every JVM we start carries this marker, so a pid is only ever taken for ours
engine_marker() { echo "-Dcsms.infra.home=$(engine_dir "$1")"; }
pidfile() { echo "$(engine_dir "$1")/$1.pid"; }

# ---------------------------------------------------------------- processes

is_ours() { # pid engine
  [ -r "/proc/$1/cmdline" ] && tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$(engine_marker "$2")"
}

# prints the pid of the running engine (from its pid file, or by its marker if the file was lost)
engine_pid() {
  local e="$1" pf pid p
  pf="$(pidfile "$e")"
  if [ -f "$pf" ]; then
    pid="$(cat "$pf" 2>/dev/null || true)"
    if [ -n "$pid" ] && is_ours "$pid" "$e"; then echo "$pid"; return 0; fi
    rm -f "$pf"
  fi
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    if is_ours "$p" "$e"; then echo "$p" >"$pf"; echo "$p"; return 0; fi
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

rss_mib() { awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ---------------------------------------------------------------- jars

fetch() {
  local e="$1" d sum
  d="$(engine_dir "$e")"
  sum="$(sha256sum "$d/pom.xml" | cut -d' ' -f1)"
  if [ -f "$d/lib/.fetched" ] && [ "$(cat "$d/lib/.fetched")" = "$sum" ]; then return 0; fi
  command -v mvn >/dev/null || { err "$e: mvn not found (needed once to fetch the jars)"; return 1; }
  log "$e: fetching jars from Maven Central into ${d#"$HERE"/}/lib ..."
  rm -rf "${d:?}/lib"
  local out
  if ! out="$(cd "$d" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies 2>&1)"; then
    rm -rf "${d:?}/lib"; err "$e: mvn dependency:copy-dependencies failed:"; err "$out"; return 1
  fi
  echo "$sum" >"$d/lib/.fetched"
}

# ---------------------------------------------------------------- TLS material

# A throwaway CA and one server certificate (localhost, 127.0.0.1) for the secured Kafka
# listener and cassandra-secure, made once: ca.pem for clients, server.p12 for the JVMs.
ensure_tls() {
  [ -s "$TLS_DIR/server.p12" ] && [ -s "$TLS_DIR/ca.pem" ] && return 0
  command -v openssl >/dev/null || { err "openssl not found (needed once to make deploy/local/tls)"; return 1; }
  local t out
  t="$(mktemp -d "$HERE/.tls.XXXXXX")"
  # (a chain of &&: `set -e` does not apply inside a tested command substitution)
  if ! out="$({
    cd "$t" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.pem \
      -subj "/CN=csms local test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" &&
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >server.ext &&
    openssl x509 -req -days 3650 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -extfile server.ext -out server.pem &&
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name server \
      -passout "pass:$TLS_STORE_PASSWORD" -out server.p12 &&
    rm -f server.csr server.ext ca.srl &&
    chmod 644 ca.pem
  } 2>&1)"; then
    rm -rf "$t"; err "tls: making the test CA and certificate failed:"; err "$out"; return 1
  fi
  rm -rf "$TLS_DIR"
  mv "$t" "$TLS_DIR"
  log "tls: made a test CA and a certificate for localhost/127.0.0.1 in ${TLS_DIR#"$HERE"/}"
}

# ---------------------------------------------------------------- wire probes (python3 stdlib)

# probe kafka|cassandra: exit 0 and one line of facts if the engine really serves
probe() {
  "$PYTHON" - "$@" <<'PY'
import socket, struct, sys

def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf

class R:
    def __init__(self, b): self.b, self.o = b, 0
    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o); self.o += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v
    def i8(self): return self.take(">b")
    def i16(self): return self.take(">h")
    def u16(self): return self.take(">H")
    def i32(self): return self.take(">i")
    def raw(self, n): v = self.b[self.o:self.o + n]; self.o += n; return v
    def s16(self):  # int16-length string, -1 = null
        n = self.i16(); return None if n < 0 else self.raw(n).decode()
    def bytes32(self):
        n = self.i32(); return None if n < 0 else self.raw(n)

def kstr(s):
    b = s.encode(); return struct.pack(">h", len(b)) + b

def kafka(host, port, topic):
    # Metadata v4 + CreateTopics v2: plain (non-flexible) versions served by Kafka 2.x .. 4.x
    s = socket.create_connection((host, port), timeout=5)
    corr = 0
    def call(key, ver, body):
        nonlocal corr
        corr += 1
        msg = struct.pack(">hhi", key, ver, corr) + kstr("csms-infra-probe") + body
        s.sendall(struct.pack(">i", len(msg)) + msg)
        r = R(recvn(s, struct.unpack(">i", recvn(s, 4))[0]))
        assert r.i32() == corr, "correlation id mismatch"
        return r
    def metadata(topics):
        body = struct.pack(">i", -1) if topics is None else \
            struct.pack(">i", len(topics)) + b"".join(kstr(t) for t in topics)
        r = call(3, 4, body + b"\x00")  # allow_auto_topic_creation=false
        r.i32()  # throttle
        brokers = []
        for _ in range(r.i32()):
            brokers.append((r.i32(), r.s16(), r.i32(), r.s16()))
        r.s16()  # cluster id
        controller = r.i32()
        out = {}
        for _ in range(r.i32()):
            terr, name, _internal = r.i16(), r.s16(), r.i8()
            parts = []
            for _ in range(r.i32()):
                perr, idx, leader = r.i16(), r.i32(), r.i32()
                for _ in range(2):  # replicas, isr
                    for _ in range(r.i32()):
                        r.i32()
                parts.append((perr, idx, leader))
            out[name] = (terr, parts)
        return brokers, controller, out
    brokers, controller, topics = metadata(None)
    if not brokers or controller < 0:
        raise RuntimeError("no broker/controller registered yet")
    if topic not in topics:
        body = struct.pack(">i", 1) + kstr(topic) + struct.pack(">ihii", 1, 1, 0, 0) \
            + struct.pack(">i", 5000) + b"\x00"
        r = call(19, 2, body)  # CreateTopics v2
        r.i32()
        for _ in range(r.i32()):
            name, code, msg = r.s16(), r.i16(), r.s16()
            if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
                raise RuntimeError("CreateTopics %s: error %d %s" % (name, code, msg or ""))
    _, _, t = metadata([topic])
    terr, parts = t.get(topic, (-1, []))
    if terr != 0 or not parts or any(p[0] != 0 or p[2] < 0 for p in parts):
        raise RuntimeError("probe topic %s has no leader yet (error %s)" % (topic, terr))
    print("brokers=%d controller=%d topics=%d" % (len(brokers), controller, len(topics)))

def cassandra(host, port, query, cafile=None, user=None, password=None, setup=()):
    # CQL native protocol v4: STARTUP (over TLS, and AUTH_RESPONSE with PasswordAuthenticator,
    # for cassandra-secure), then one QUERY at consistency ONE, then the `setup` statements
    s = socket.create_connection((host, port), timeout=5)
    if cafile:
        import ssl
        s = ssl.create_default_context(cafile=cafile).wrap_socket(s, server_hostname=host)
    def frame(op, body, stream):
        s.sendall(struct.pack(">BBhBi", 0x04, 0, stream, op, len(body)) + body)
        _ver, flags, _st, rop, n = struct.unpack(">BBhBi", recvn(s, 9))
        r = R(recvn(s, n))
        if flags & 0x02: r.raw(16)                     # tracing id
        if flags & 0x08: [r.s16() for _ in range(r.u16())]  # warnings
        if flags & 0x04:                               # custom payload
            for _ in range(r.u16()): r.s16(); r.bytes32()
        if rop == 0x00:
            code = r.i32(); raise RuntimeError("CQL error 0x%04x: %s" % (code, r.s16()))
        return rop, r
    opts = {"CQL_VERSION": "3.0.0"}
    body = struct.pack(">H", len(opts)) + b"".join(kstr(k) + kstr(v) for k, v in opts.items())
    op, _ = frame(0x01, body, 1)
    if op == 0x03 and user:  # AUTHENTICATE: SASL PLAIN token for PasswordAuthenticator
        token = b"\0" + user.encode() + b"\0" + password.encode()
        op, _ = frame(0x0F, struct.pack(">i", len(token)) + token, 1)
        if op != 0x10:
            raise RuntimeError("AUTH_RESPONSE answered opcode 0x%02x, not AUTH_SUCCESS" % op)
    elif op != 0x02:
        raise RuntimeError("STARTUP answered opcode 0x%02x, not READY" % op)
    for i, stmt in enumerate(setup):
        q = stmt.encode()
        op, _ = frame(0x07, struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0), 3 + i)
        if op != 0x08:
            raise RuntimeError("%s: answered opcode 0x%02x" % (stmt.split(" WITH")[0], op))
    q = query.encode()
    op, r = frame(0x07, struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0), 2)
    if op != 0x08 or r.i32() != 2:
        raise RuntimeError("QUERY did not return rows")
    flags, ncols = r.i32(), r.i32()
    if flags & 0x02: r.bytes32()
    if flags & 0x01: r.s16(); r.s16()
    for _ in range(ncols):
        if not flags & 0x01: r.s16(); r.s16()
        r.s16()
        if r.u16() == 0: r.s16()  # custom type name; the probe selects simple columns only
    rows = [[(v.decode() if v is not None else None) for v in (r.bytes32() for _ in range(ncols))]
            for _ in range(r.i32())]
    if not rows:
        raise RuntimeError("no rows")
    print("release_version=%s" % rows[0][0])

try:
    if sys.argv[1] == "kafka":
        kafka("127.0.0.1", int(sys.argv[2]), "_infra_probe")
    elif sys.argv[1] == "cassandra":
        cassandra("127.0.0.1", int(sys.argv[2]), "SELECT release_version FROM system.local")
    else:  # cassandra-secure PORT CAFILE USER PASSWORD [setup]: as the default superuser;
        # `setup` makes the test role USER (PasswordAuthenticator, AllowAllAuthorizer)
        _, _, port, cafile, user, password = sys.argv[:6]
        setup = () if sys.argv[6:] != ["setup"] else (
            "CREATE ROLE IF NOT EXISTS %s WITH PASSWORD = '%s' AND LOGIN = true" % (user, password),)
        cassandra("127.0.0.1", int(port), "SELECT release_version FROM system.local", cafile,
                  "cassandra", "cassandra", setup)
except Exception as e:  # not serving (yet)
    print("%s: %s" % (type(e).__name__, e))
    sys.exit(1)
PY
}

# ---------------------------------------------------------------- launch

# launch_<engine> are called indirectly ("launch_$e")
# shellcheck disable=SC2317
launch_kafka() {
  local d="$KDIR" cp="$KDIR/lib/*" opts cid l
  mkdir -p "$d/data" "$d/logs"
  ensure_tls
  {
    cat "$d/server.properties"; echo; echo "log.dirs=$d/data"
    # the SASL_SSL listener's key store (made by ensure_tls), and the PLAIN users of both
    # SASL listeners (SCRAM users live in the cluster metadata: see kafka_scram_users)
    echo "listener.name.sasl_ssl.ssl.keystore.type=PKCS12"
    echo "listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/server.p12"
    echo "listener.name.sasl_ssl.ssl.keystore.password=$TLS_STORE_PASSWORD"
    for l in sasl_ssl sasl_plaintext; do
      echo "listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SECURE_USER=\"$SECURE_PASSWORD\";"
    done
  } >"$d/logs/server.effective.properties"
  opts=(-Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:MaxDirectMemorySize=256m -XX:+UseG1GC
        -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -XX:MaxInlineLevel=15 -XX:+PerfDisableSharedMem -Djava.awt.headless=true
        "-Dkafka.logs.dir=$d/logs" "-Dlog4j.configuration=file:$d/log4j.properties")
  if [ ! -f "$d/data/meta.properties" ]; then
    cid="$("$JAVA" -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null)"
    "$JAVA" "${opts[@]}" -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
      -t "$cid" -c "$d/logs/server.effective.properties" \
      --add-scram "SCRAM-SHA-256=[name=$SECURE_USER,password=$SECURE_PASSWORD]" \
      --add-scram "SCRAM-SHA-512=[name=$SECURE_USER,password=$SECURE_PASSWORD]" >>"$d/logs/kafka.out" 2>&1 \
      || { err "kafka: storage format failed"; tail -n 30 "$d/logs/kafka.out" >&2; return 1; }
    echo "$SECURE_USER" >"$d/data/.scram-users"
  fi
  # setsid: own session, so a Ctrl-C in the calling terminal/test runner does not reach it
  setsid "$JAVA" "$(engine_marker kafka)" "${opts[@]}" -cp "$cp" \
    kafka.Kafka "$d/logs/server.effective.properties" >>"$d/logs/kafka.out" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile kafka)"
}

# A broker whose data was formatted before the SCRAM users existed gets them once through
# the PLAINTEXT listener (kafka-configs; one request per mechanism).
kafka_scram_users() {
  local d="$KDIR" m out
  [ "$(cat "$d/data/.scram-users" 2>/dev/null)" = "$SECURE_USER" ] && return 0
  for m in SCRAM-SHA-256 SCRAM-SHA-512; do
    if ! out="$("$JAVA" -Xmx128m -cp "$d/lib/*" "-Dlog4j.configuration=file:$d/log4j.properties" \
        "-Dkafka.logs.dir=$d/logs" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
        --alter --entity-type users --entity-name "$SECURE_USER" \
        --add-config "$m=[password=$SECURE_PASSWORD]" 2>&1)"; then
      err "kafka: adding the $m user $SECURE_USER failed:"; err "$out"; return 1
    fi
  done
  echo "$SECURE_USER" >"$d/data/.scram-users"
  log "kafka: SCRAM user $SECURE_USER added"
}

# shellcheck disable=SC2317
launch_cassandra() {
  run_cassandra cassandra "$CDIR/conf" 7199
}

# The secured instance: cassandra's configuration with its own cluster name, ports and
# data, PasswordAuthenticator, and TLS required on its CQL port (ensure_tls).
# shellcheck disable=SC2317
launch_cassandra-secure() {
  local d="$SDIR"
  ensure_tls
  mkdir -p "$d/conf"
  cp "$CDIR/conf/logback.xml" "$d/conf/logback.xml"
  sed -e "s/^cluster_name: .*/cluster_name: 'csms-local-secure'/" \
      -e "s/127\.0\.0\.1:7000/127.0.0.1:7100/" \
      -e "s/^storage_port: .*/storage_port: 7100/" \
      -e "s/^native_transport_port: .*/native_transport_port: $CASSANDRA_SECURE_PORT/" \
      -e "s/^authenticator: .*/authenticator: PasswordAuthenticator/" \
      "$CDIR/conf/cassandra.yaml" >"$d/conf/cassandra.yaml"
  cat >>"$d/conf/cassandra.yaml" <<EOF

# cassandra-secure (written by infra.sh): TLS required on the CQL port
client_encryption_options:
  enabled: true
  optional: false
  keystore: $TLS_DIR/server.p12
  keystore_password: $TLS_STORE_PASSWORD
  store_type: PKCS12
  require_client_auth: false
EOF
  # the default superuser (cassandra/cassandra) at once, not after 10 s; a smaller heap
  run_cassandra cassandra-secure "$d/conf" 7299 -Dcassandra.superuser_setup_delay_ms=0 \
    -XX:G1HeapRegionSize=4m -XX:MaxDirectMemorySize=256m
}

# run_cassandra ENGINE CONF_DIR JMX_PORT [JVM options ...]: on cassandra's jars, the
# ENGINE's data and logs; options given last win over the ones here
run_cassandra() {
  local e="$1" conf="$2" jmx="$3" d jamm heap
  shift 3
  d="$(engine_dir "$e")"
  heap="$(engine_heap "$e")"
  mkdir -p "$d/data" "$d/logs"
  jamm="$(find "$CDIR/lib" -name 'jamm-*.jar' | head -n 1)"
  [ -n "$jamm" ] || { err "$e: no jamm-*.jar in ${CDIR#"$HERE"/}/lib (needed as -javaagent)"; return 1; }
  local opts=(
    -Xms"$heap" -Xmx"$heap" -XX:MaxDirectMemorySize=512m -Xss256k
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
    -XX:+UseThreadPriorities -XX:+UseTLAB -XX:+ResizeTLAB -XX:+PerfDisableSharedMem
    -XX:+HeapDumpOnOutOfMemoryError "-XX:HeapDumpPath=$d/logs" -XX:+CrashOnOutOfMemoryError
    "-javaagent:$jamm"
    # JPMS list of conf/jvm17-server.options (Cassandra 5.0): mandatory on Java 17
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    -Djava.net.preferIPv4Stack=true
    -Djdk.nio.maxCachedBufferSize=1048576
    "-Dcassandra.config=file://$conf/cassandra.yaml"
    "-Dlogback.configurationFile=file://$conf/logback.xml"
    "-Dcassandra.storagedir=$d/data"
    "-Dcassandra.logdir=$d/logs"
    -Dcassandra-foreground=yes
    "-Dcassandra.jmx.local.port=$jmx"
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    "$@"
  )
  setsid "$JAVA" "$(engine_marker "$e")" "${opts[@]}" -cp "$conf:$CDIR/lib/*" \
    org.apache.cassandra.service.CassandraDaemon >>"$d/logs/$e.out" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$e")"
}

engine_logs() { local d; d="$(engine_dir "$1")/logs"; echo "$d/$1.out" "$d/server.log" "$d/system.log"; }

# sizes of the engine's log files at launch, so a failure shows only this start's lines
mark_logs() {
  local e="$1" f marks=""
  for f in $(engine_logs "$e"); do marks+="$(stat -c %s "$f" 2>/dev/null || echo 0) "; done
  printf -v "LOGMARK_$(engine_var "$e")" '%s' "$marks"
}

engine_log_tail() {
  local e="$1" var f from
  var="LOGMARK_$(engine_var "$e")"
  local marks=()
  read -r -a marks <<<"${!var:-}"
  local i=0
  for f in $(engine_logs "$e"); do
    from="${marks[$i]:-0}"; i=$((i + 1))
    [ -s "$f" ] || continue
    [ "$(stat -c %s "$f")" -gt "$from" ] || continue
    err "----- last lines of ${f#"$HERE"/} (this start)"
    tail -c +"$((from + 1))" "$f" | tail -n 40 >&2
  done
}

# start (if needed) without waiting; sets STARTED_<engine> to the launch time
start_engine() {
  local e="$1" pid port
  if pid="$(engine_pid "$e")"; then return 0; fi
  port="$(engine_port "$e")"
  if port_open "$port"; then
    err "$e: port 127.0.0.1:$port is taken by a process this script did not start; not starting"
    return 1
  fi
  fetch "$(engine_jars "$e")"
  mkdir -p "$(engine_dir "$e")/logs"
  echo "===== $(date -Is) start" >>"$(engine_dir "$e")/logs/$e.out"
  printf -v "STARTED_$(engine_var "$e")" '%s' "$(now)"
  mark_logs "$e"
  "launch_$e"
  log "$e: starting (pid $(cat "$(pidfile "$e")"), heap $(engine_heap "$e"))"
}

# probe_engine ENGINE [setup]: exit 0 and one line of facts if the engine serves on all of
# its endpoints; `setup` (cassandra-secure) also creates the test role
probe_engine() {
  local e="$1" out
  case "$e" in
    kafka)
      out="$(probe kafka "$KAFKA_PORT")" || { echo "$out"; return 1; }
      if ! port_open "$KAFKA_SASL_SSL_PORT" || ! port_open "$KAFKA_SASL_PLAINTEXT_PORT"; then
        echo "no SASL listeners on 127.0.0.1:$KAFKA_SASL_SSL_PORT and :$KAFKA_SASL_PLAINTEXT_PORT yet"; return 1
      fi
      echo "$out, SASL_SSL :$KAFKA_SASL_SSL_PORT, SASL_PLAINTEXT :$KAFKA_SASL_PLAINTEXT_PORT" ;;
    cassandra-secure)
      probe cassandra-secure "$CASSANDRA_SECURE_PORT" "$TLS_DIR/ca.pem" "$SECURE_USER" "$SECURE_PASSWORD" ${2:+"$2"} ;;
    *) probe "$e" "$(engine_port "$e")" ;;
  esac
}

# wait until the engine serves; report start-up time (or that it was already up)
wait_engine() {
  local e="$1" port limit t0 var pid out
  port="$(engine_port "$e")"
  var="STARTED_$(engine_var "$e")"; t0="${!var:-}"
  if [ "$e" = kafka ]; then limit="$KAFKA_START_TIMEOUT"; else limit="$CASSANDRA_START_TIMEOUT"; fi
  if [ -z "$t0" ]; then  # was already running (maybe still starting from another call)
    pid="$(engine_pid "$e")" || { err "$e: not running"; return 1; }
    if out="$(probe_engine "$e" setup)"; then
      log "$e: already up (pid $pid, rss $(rss_mib "$pid") MiB, $out)"
      if [ "$e" = kafka ]; then kafka_scram_users || return 1; fi
      return 0
    fi
    if [ "$e" = kafka ] && probe kafka "$KAFKA_PORT" >/dev/null; then
      err "kafka: running (pid $pid) without the SASL listeners of this infra.sh; restart it:" \
        "deploy/local/infra.sh down kafka && deploy/local/infra.sh up kafka"
      return 1
    fi
    t0="$(now)"
  fi
  while :; do
    if ! pid="$(engine_pid "$e")"; then
      err "$e: FAILED - the process exited during start-up"; engine_log_tail "$e"; return 1
    fi
    if out="$(probe_engine "$e" setup)"; then
      log "$e: UP in $(elapsed "$t0") s (pid $pid, rss $(rss_mib "$pid") MiB, 127.0.0.1:$port, $out)"
      if [ "$e" = kafka ]; then kafka_scram_users || return 1; fi
      return 0
    fi
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      err "$e: FAILED - not serving on 127.0.0.1:$port after ${limit} s (last probe: $out)"
      engine_log_tail "$e"
      stop_engine "$e" >&2 || true
      return 1
    fi
    sleep 1
  done
}

stop_engine() {
  local e="$1" pid limit i
  if [ "$e" = kafka ]; then limit="$KAFKA_STOP_TIMEOUT"; else limit="$CASSANDRA_STOP_TIMEOUT"; fi
  if ! pid="$(engine_pid "$e")"; then
    rm -f "$(pidfile "$e")"; log "$e: already stopped"; return 0
  fi
  local t0; t0="$(now)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < limit * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    err "$e: still running ${limit} s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$(pidfile "$e")"
  log "$e: stopped (pid $pid, $(elapsed "$t0") s)"
}

status_engine() {
  local e="$1" pid out port
  port="$(engine_port "$e")"
  if pid="$(engine_pid "$e")"; then
    if out="$(probe_engine "$e")"; then
      log "$e: UP (pid $pid, rss $(rss_mib "$pid") MiB, 127.0.0.1:$port, $out)"; return 0
    fi
    log "$e: RUNNING but not serving yet (pid $pid, rss $(rss_mib "$pid") MiB; $out)"; return 1
  fi
  if port_open "$port"; then log "$e: STOPPED here, but 127.0.0.1:$port is served by another process"
  else log "$e: STOPPED"; fi
  return 1
}

# ---------------------------------------------------------------- main

usage() { awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

cmd="${1:-}"; target="${2:-all}"
case "$target" in
  all) engines=(cassandra cassandra-secure kafka) ;;  # Cassandra first: it is the slow one
  kafka|cassandra|cassandra-secure) engines=("$target") ;;
  *) usage ;;
esac

# one infra.sh at a time per checkout (parallel test workers may all call `up`);
# the engines are started with fd 9 closed, or they would hold the lock forever
exec 9>"$HERE/.infra.lock"
flock -w 900 9 || { err "another infra.sh still holds $HERE/.infra.lock"; exit 1; }

rc=0
case "$cmd" in
  up)
    command -v "$JAVA" >/dev/null || { err "java not found (Java 17 needed)"; exit 1; }
    command -v "$PYTHON" >/dev/null || { err "$PYTHON not found (used for the readiness probes)"; exit 1; }
    for e in "${engines[@]}"; do start_engine "$e" || rc=1; done
    for e in "${engines[@]}"; do
      if [ "$rc" = 0 ] || engine_pid "$e" >/dev/null; then wait_engine "$e" || rc=1; fi
    done
    ;;
  down)
    for e in kafka cassandra-secure cassandra; do
      [[ " ${engines[*]} " == *" $e "* ]] && { stop_engine "$e" || rc=1; }
    done
    ;;
  status)
    for e in "${engines[@]}"; do status_engine "$e" || rc=1; done
    ;;
  reset)
    for e in "${engines[@]}"; do
      stop_engine "$e" || rc=1
      d="$(engine_dir "$e")"
      rm -rf "$d/data" "$d/logs"
      log "$e: data and logs wiped"
    done
    ;;
  fetch)
    for e in "${engines[@]}"; do fetch "$(engine_jars "$e")" || rc=1; done
    ;;
  *) usage ;;
esac
exit "$rc"
