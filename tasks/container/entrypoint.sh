#!/bin/sh
# Entry point of the dockerfuse image, run under `tini -g`: runs `dockerfuse "$@"`. For
# `mount … MOUNTPOINT` it creates MOUNTPOINT first. On SIGINT/SIGTERM dockerfuse unmounts and
# exits; afterwards any dockerfuse mount still listed (a crashed or killed client) is unmounted
# lazily, so `docker stop` leaves no stale mount on the host through rshared propagation.
set -u
MAIN=/opt/dockerfuse/src/cli/main.ts

if [ "${1:-}" = "mount" ] && [ "$#" -ge 3 ]; then
  for mountpoint in "$@"; do :; done
  mkdir -p -- "$mountpoint"
fi

# --max-semi-space-size: see CLIENT_V8_FLAGS in src/cli/launch.ts.
deno run -A --v8-flags=--max-semi-space-size=4 "$MAIN" "$@" &
child=$!
# After a stop signal dockerfuse unmounts; if a consumer still holds the mount (busy, lazily
# unmounted) the kernel keeps the FUSE connection and dockerfuse may wait on it: after
# GRACE seconds it is killed, which closes /dev/fuse and ends the connection.
GRACE=${DOCKERFUSE_STOP_GRACE:-5}
forward() {
  kill -TERM "$child" 2>/dev/null
  (sleep "$GRACE"; kill -KILL "$child" 2>/dev/null) &
}
trap forward INT TERM

# A trapped signal interrupts `wait`; wait again until the child is really gone.
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done

awk '$3 == "fuse.dockerfuse" { print $2 }' /proc/mounts | while read -r left; do
  path=$(printf '%b' "$left")
  echo "dockerfuse-entrypoint: lazily unmounting '$path' left behind" >&2
  umount -l -- "$path" || true
done
exit "$status"
