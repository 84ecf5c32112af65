# shellcheck shell=bash
# Background processes of the local control planes (scripts/envtest.sh, scripts/cluster.sh), tracked by pid files.
# Expects log.

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid NAME PIDFILE: TERM to the process's session, KILL after 20 s.
stop_pid() {
  pid_alive "$2" || return 0
  local pid
  pid=$(cat "$2")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  log "$1 did not stop in 20 s; killing it"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
