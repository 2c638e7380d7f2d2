#!/usr/bin/env bash
# Start, stop or query a local Docker engine confined to loopback.
#
#   scripts/docker-engine.sh start    # install docker.io if needed, start dockerd if none answers
#   scripts/docker-engine.sh stop     # stop dockerd, only if this script started it
#   scripts/docker-engine.sh status   # exit 0 if an engine answers, 1 otherwise
#
# The engine is always started as
#   dockerd --bridge=none --iptables=false --ip-forward=false
# so it creates no bridge and touches no firewall rules. Build with
# `docker build --network host`, run with `--network host` or `--network none`.
#
# Environment:
#   ALLOCSCOPE_DOCKERD_STATE   directory for pidfile and log (default /run/allocscope-dockerd)
#   ALLOCSCOPE_DOCKERD_TIMEOUT seconds to wait for the engine to answer (default 60)
set -euo pipefail

STATE_DIR="${ALLOCSCOPE_DOCKERD_STATE:-/run/allocscope-dockerd}"
PIDFILE="$STATE_DIR/dockerd.pid"
LOGFILE="$STATE_DIR/dockerd.log"
TIMEOUT="${ALLOCSCOPE_DOCKERD_TIMEOUT:-60}"
DOCKERD_FLAGS=(--bridge=none --iptables=false --ip-forward=false)

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (dockerd and apt-get need it)"
}

engine_answers() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# The pid in our pidfile, if that process is still a dockerd.
our_pid() {
    local pid
    [ -r "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm")" = "dockerd" ] || return 1
    printf '%s\n' "$pid"
}

install_engine() {
    command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available"
    log "installing docker.io with apt-get"
    # Keep the package's maintainer scripts from starting a default engine
    # (which would create a bridge): policy-rc.d exit 101 forbids service starts.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
    if [ "$rc" -eq 0 ]; then
        env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io || rc=$?
    fi
    if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc) installing docker.io"
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH"
}

cmd_start() {
    if engine_answers; then
        log "an engine already answers; nothing to do"
        return 0
    fi
    install_engine
    if engine_answers; then
        log "an engine already answers; nothing to do"
        return 0
    fi
    local pid
    if pid="$(our_pid)"; then
        log "dockerd (pid $pid) started earlier is not answering yet; waiting"
    else
        require_root
        mkdir -p "$STATE_DIR"
        rm -f "$PIDFILE"
        log "starting dockerd ${DOCKERD_FLAGS[*]} (log $LOGFILE)"
        # setsid: the engine outlives this shell and its process group.
        # dockerd writes its own pid to $PIDFILE and removes it on exit.
        setsid dockerd "${DOCKERD_FLAGS[@]}" --pidfile "$PIDFILE" \
            </dev/null >>"$LOGFILE" 2>&1 &
        pid=$!
        disown "$pid" 2>/dev/null || true
    fi
    local waited=0
    until engine_answers; do
        if ! kill -0 "$pid" 2>/dev/null && ! our_pid >/dev/null; then
            log "dockerd exited during start-up; last log lines:"
            tail -n 20 "$LOGFILE" >&2 || true
            die "dockerd did not start"
        fi
        if [ "$waited" -ge "$TIMEOUT" ]; then
            log "last log lines:"
            tail -n 20 "$LOGFILE" >&2 || true
            die "dockerd (pid $pid) did not answer 'docker info' within ${TIMEOUT}s (log: $LOGFILE)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    if pid="$(our_pid)"; then
        log "engine ready (pid $pid, ${waited}s)"
    else
        log "engine ready (${waited}s)"
    fi
}

cmd_stop() {
    local pid
    if ! pid="$(our_pid)"; then
        if [ -e "$PIDFILE" ]; then
            rm -f "$PIDFILE"
        fi
        log "no dockerd started by this script is running; nothing to stop"
        return 0
    fi
    require_root
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge 30 ]; then
            log "dockerd (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    rm -f "$PIDFILE"
    log "stopped"
}

cmd_status() {
    local pid owner="not started by this script"
    if pid="$(our_pid)"; then
        owner="started by this script, pid $pid"
    fi
    if engine_answers; then
        printf 'running (%s)\n' "$owner"
        return 0
    fi
    printf 'not running (%s)\n' "$owner"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        printf 'usage: %s start|stop|status\n' "$0" >&2
        exit 2
        ;;
esac
