#!/usr/bin/env bash
# Make this CI VM's Docker engine able to run kind nodes. Test environment only: `make kind-up`
# on a normal machine never calls it (the CI path, `make kind-up KIND_CONFIG=kind-config.ci.yaml`
# via .ci/run, does).
#
# Root on this VM lacks CAP_SYS_RESOURCE in its bounding set, so `docker run --privileged` fails
# ("unable to apply caps"). hack/kind/runc-drop-caps, copied into the cache, is registered as the
# engine's default runtime through /etc/docker/daemon.json and a reload (SIGHUP: running
# containers and builds are untouched). Idempotent; does nothing where privileged runs work.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
docker=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker)}
probe_image=${1:-modeldeploy/base:bookworm}

privileged_ok() { timeout 60 "$docker" run --rm --privileged "$probe_image" true >/dev/null 2>&1; }

privileged_ok && exit 0
grep -q '^CapBnd:' /proc/self/status
wrapper="$cache_root/kind/runc-drop-caps"
mkdir -p "$(dirname "$wrapper")"
install -m 0755 "$here/runc-drop-caps" "$wrapper"
conf=/etc/docker/daemon.json
mkdir -p /etc/docker
python3 - "$conf" "$wrapper" <<'PY'
import json, os, sys
path, wrapper = sys.argv[1], sys.argv[2]
conf = json.load(open(path)) if os.path.exists(path) else {}
conf.setdefault("runtimes", {})["runc-drop-caps"] = {"path": wrapper}
conf["default-runtime"] = "runc-drop-caps"
json.dump(conf, open(path, "w"), indent=2)
PY
pid=$(pgrep -o -x dockerd) || { echo "host-setup: no dockerd running" >&2; exit 1; }
kill -HUP "$pid"
for _ in $(seq 20); do
  privileged_ok && { echo ">> docker: default runtime runc-drop-caps (this VM's workaround)" >&2; exit 0; }
  sleep 1
done
echo "host-setup: docker run --privileged still fails:" >&2
"$docker" run --rm --privileged "$probe_image" true
