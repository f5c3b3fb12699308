#!/bin/sh
# read-only-root.sh DIR CMD [ARG...]: runs CMD with the root filesystem read-only and DIR (the
# data volume) the one writable place, as a pod with readOnlyRootFilesystem (or a compose
# service with read_only) runs the image. Run it inside a mount namespace of its own, e.g.
#   unshare --mount --propagation private -- sh deploy/scripts/read-only-root.sh DIR CMD...
# (needs root; CMD may drop privileges itself, as run-as-image.sh does with setpriv). Mounts
# already outside `/` (/dev/shm, /proc, /sys) are left as they are. Files opened before
# (stdout, stderr) stay writable. No /tmp is mounted: stricter than the pod (whose /tmp is an
# emptyDir) and compose (a tmpfs), so a process that passes here needs neither.
set -eu
dir=$1
shift
# DIR becomes a mount of its own, which the read-only remount of `/` below does not reach.
mount --bind "$dir" "$dir"
mount -o remount,bind,ro /
exec "$@"
