#!/usr/bin/env bash
# docker/check.sh -- build the flowhawk image with podman and run it: `flowhawk demo` in one container, then a
# compose-equivalent pod (Prefect server + `flowhawk serve`, `podman play kube`) that processes a capture
# dropped into the mounted inbox. Too slow for every CI run (the build downloads MindSpore): run it by hand,
# as root, from anywhere:   bash docker/check.sh            (all steps)
#                           bash docker/check.sh demo       (one step: base | build | demo | stack)
#
# No image registry is reachable where this was written, so the base image is bootstrapped locally with
# mmdebstrap (Debian bookworm + python3 3.11) and passed to the Dockerfile as BASE_IMAGE; real users build on
# the default python:3.11-slim-bookworm. Settings that work on a host without systemd cgroups or crun:
# runtime runc, no default ulimits, cgroupfs. Only loopback is used: the build uses the host network (pip and
# apt reach their package indexes, with the host's CA bundle and pip.conf mounted read-only); the demo runs
# with --network none; the pod gets its own network namespace with loopback only (the two containers share it).
# Timings are appended to $WORK/timings.txt; nothing outside $WORK and podman's own storage is written.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-$ROOT/.container-check}
BASE=${BASE:-localhost/flowhawk-base:bookworm}
IMAGE=${IMAGE:-localhost/flowhawk:check}
POD=flowhawk-check
STACK_TIMEOUT=${STACK_TIMEOUT:-900}   # seconds to wait for the dropped capture's report
mkdir -p "$WORK"
TIMINGS=$WORK/timings.txt

export CONTAINERS_CONF=$WORK/containers.conf
cat > "$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = []
pids_limit = 0

[engine]
cgroup_manager = "cgroupfs"
EOF
PODMAN=(podman --runtime runc)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
timed() {  # timed LABEL CMD...: run CMD, append "LABEL seconds" to $TIMINGS
  local label=$1 t0 t1; shift
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  printf '%s %s %.1f s\n' "$(date -u +%FT%TZ)" "$label" "$(echo "$t1 - $t0" | bc)" | tee -a "$TIMINGS" >&2
}

step_base() {
  if "${PODMAN[@]}" image exists "$BASE"; then log "base $BASE exists"; return 0; fi
  rm -f "$WORK/base.part.tar"
  # passwd: useradd (minbase has only the Essential packages)
  timed "base: mmdebstrap bookworm" mmdebstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,passwd bookworm "$WORK/base.part.tar"  # the .tar suffix picks the format
  mv "$WORK/base.part.tar" "$WORK/base.tar"
  timed "base: podman import" "${PODMAN[@]}" import "$WORK/base.tar" "$BASE"
  rm -f "$WORK/base.tar"
}

step_build() {
  # --format docker keeps the HEALTHCHECK (the OCI image format has no such field)
  timed "build: podman build" "${PODMAN[@]}" build --format docker --network host \
    -v /etc/ssl/certs:/etc/ssl/certs:ro -v /etc/pip.conf:/etc/pip.conf:ro \
    --build-arg "BASE_IMAGE=$BASE" -f "$ROOT/docker/Dockerfile" \
    --ignorefile "$ROOT/docker/Dockerfile.dockerignore" -t "$IMAGE" "$ROOT"
  "${PODMAN[@]}" image inspect "$IMAGE" --format 'image {{.Id}}: {{.Size}} bytes, user {{.Config.User}}' >&2
  [[ $("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Config.User}}') == 1000:1000 ]] \
    || { log "FAIL: the image does not run as uid 1000"; exit 1; }
  [[ -n $("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Config.Healthcheck}}') ]] \
    || { log "FAIL: the image has no HEALTHCHECK"; exit 1; }
}

step_demo() {
  timed "demo: flowhawk demo in a container" "${PODMAN[@]}" run --rm --network none "$IMAGE" \
    flowhawk demo --workdir /tmp/demo 2>&1 | tee "$WORK/demo.log" >&2
  grep -q 'report.html' "$WORK/demo.log" || { log "FAIL: the demo printed no report path"; exit 1; }
}

pod_yaml() {  # the compose.yaml stack as a Kubernetes pod: both containers share the pod's loopback
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $POD
spec:
  restartPolicy: Never
  containers:
    - name: prefect-server
      image: $IMAGE
      command: ["prefect", "server", "start", "--host", "127.0.0.1", "--port", "4200"]
      env:
        - {name: PREFECT_HOME, value: /data/prefect}
        - {name: PREFECT_SERVER_ANALYTICS_ENABLED, value: "false"}
    - name: flowhawk
      image: $IMAGE
      command: ["sh", "-c", "until python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:4200/api/health', timeout=5)\" 2>/dev/null; do sleep 2; done; exec flowhawk serve"]
      env:
        - {name: PREFECT_API_URL, value: "http://127.0.0.1:4200/api"}
        - {name: FLOWHAWK_INBOX, value: /data/inbox}
        - {name: FLOWHAWK_LAKE, value: /data/lake}
        - {name: FLOWHAWK_MODELS, value: /data/models}
      volumeMounts:
        - {name: inbox, mountPath: /data/inbox}
        - {name: lake, mountPath: /data/lake}
        - {name: models, mountPath: /data/models}
  volumes:
    - {name: inbox, hostPath: {path: $WORK/data/inbox, type: Directory}}
    - {name: lake, hostPath: {path: $WORK/data/lake, type: Directory}}
    - {name: models, hostPath: {path: $WORK/data/models, type: Directory}}
EOF
}

stack_down() { "${PODMAN[@]}" pod rm -f "$POD" > /dev/null 2>&1 || true; }

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...: poll CMD every 2 s
  local limit=$1 what=$2 t; shift 2
  for ((t = 0; t < limit; t += 2)); do "$@" > /dev/null 2>&1 && return 0; sleep 2; done
  log "FAIL: timed out after ${limit}s waiting for $what"; return 1
}

api_up() { "${PODMAN[@]}" exec "$POD-flowhawk" python3 -c \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4200/api/health', timeout=5)"; }
served() { "${PODMAN[@]}" logs "$POD-flowhawk" 2>&1 | grep -q 'serving'; }
reported() { compgen -G "$WORK/data/lake/reports/batch=*/report.html" > /dev/null; }
filed() { compgen -G "$WORK/data/inbox/done/*/drop.pcap" > /dev/null; }  # moved after its report

step_stack() {
  stack_down
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"/{inbox,lake,models,staging}
  chown -R 1000:1000 "$WORK/data"
  pod_yaml > "$WORK/pod.yaml"
  trap 'stack_down' EXIT
  timed "stack: podman play kube" "${PODMAN[@]}" play kube --network none "$WORK/pod.yaml"
  timed "stack: Prefect API healthy" wait_for 180 "the Prefect API" api_up
  timed "stack: flowhawk serve registered its deployments" wait_for 180 "flowhawk serve" served
  # a labelled capture, synthesised by the image itself, moved into the inbox (labels first)
  "${PODMAN[@]}" run --rm --network none --user 1000:1000 -v "$WORK/data/staging:/out" "$IMAGE" \
    flowhawk synth /out/drop.pcap --labels /out/drop.labels.csv --packets 8000 --duration 120 --seed 11 >&2
  mv "$WORK/data/staging/drop.labels.csv" "$WORK/data/inbox/"
  mv "$WORK/data/staging/drop.pcap" "$WORK/data/inbox/"
  local t0; t0=$(date +%s.%N)
  # the schedule runs process-inbox every 5 minutes; start one run now instead of waiting for it
  "${PODMAN[@]}" exec "$POD-flowhawk" prefect deployment run process-inbox/scheduled >&2
  timed "stack: capture dropped -> report written (incl. first-model training)" \
    wait_for "$STACK_TIMEOUT" "the report of the dropped capture" reported
  wait_for 120 "the capture filed in inbox/done" filed
  ls "$WORK/data/lake/reports"/batch=*/ "$WORK/data/inbox/done"/*/ >&2
  "${PODMAN[@]}" logs "$POD-flowhawk" > "$WORK/serve.log" 2>&1
  # the image's HEALTHCHECK, run once in the serve container (containers of `play kube` do not inherit it, and
  # podman schedules health checks with systemd timers, which this host lacks)
  local check
  mapfile -t check < <("${PODMAN[@]}" image inspect "$IMAGE" --format '{{json .Config.Healthcheck.Test}}' \
    | python3 -c 'import json, sys; t = json.load(sys.stdin); print("\n".join(t[1:] if t[0] == "CMD" else ["sh", "-c", t[1]]))')
  "${PODMAN[@]}" exec "$POD-flowhawk" "${check[@]}" && log "the image's HEALTHCHECK in the serve container: healthy" \
    || { log "FAIL: the image's HEALTHCHECK failed in the serve container"; exit 1; }
  log "stack ok in $(echo "$(date +%s.%N) - $t0" | bc | cut -d. -f1) s after the drop"
}

case ${1:-all} in
  base) step_base ;;
  build) step_build ;;
  demo) step_demo ;;
  stack) step_stack ;;
  all) step_base; step_build; step_demo; step_stack ;;
  *) echo "usage: $0 [all|base|build|demo|stack]" >&2; exit 2 ;;
esac
