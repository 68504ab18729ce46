#!/bin/sh
# ensure-nginx.sh: install Debian's nginx package when no nginx is there, for the
# gateway's benchmark (BenchmarkGatewayVsNginx), which starts nginx itself on a free
# port with a generated config. The package's own service is not started
# (RUNLEVEL=1 keeps invoke-rc.d from starting it where no policy does). When nginx
# cannot be installed (no apt-get, not root) it says so and exits 0: the benchmark then
# skips with the reason.
set -eu
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-nginx: no nginx and no apt-get; the gateway benchmark will skip" >&2
	exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO="sudo -n"
	else
		echo "ensure-nginx: no nginx, and installing it needs root; the gateway benchmark will skip" >&2
		exit 0
	fi
fi
echo "ensure-nginx: installing Debian's nginx package" >&2
if ! $SUDO env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >&2; then
	$SUDO apt-get update >&2 || true
	$SUDO env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >&2 ||
		echo "ensure-nginx: apt-get could not install nginx; the gateway benchmark will skip" >&2
fi
