#!/bin/sh
# ensure-promtool.sh: install Debian's prometheus package, for its promtool, when no
# promtool is there. deploy/observability_test.go runs `promtool check rules` and
# `promtool test rules` on the alerts, and fails without it; `make test` runs this
# first. Quiet and quick when promtool is already there.
#
# The package also holds the Prometheus server and would start it as a service: a
# policy-rc.d that refuses every start is put in place for the install when there is
# none (and removed after), and RUNLEVEL=1 keeps invoke-rc.d from starting it where
# a policy allows, so that no server is left running, or failing to run where there
# is no init system. Recommends (node-exporter, another daemon) are not installed.
set -eu
if command -v promtool >/dev/null 2>&1; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-promtool: no promtool and no apt-get; install Prometheus's promtool by hand" >&2
	exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO="sudo -n"
	else
		echo "ensure-promtool: no promtool, and installing it needs root: sudo apt-get install prometheus" >&2
		exit 1
	fi
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# ensure-promtool.sh: no service starts while prometheus installs\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	trap '$SUDO rm -f "$policy"' EXIT
fi
install() {
	$SUDO env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2
}
echo "ensure-promtool: installing Debian's prometheus package for promtool" >&2
if ! install; then
	$SUDO apt-get update >&2 || true
	install
fi
command -v promtool >/dev/null 2>&1 || {
	echo "ensure-promtool: the prometheus package installed no promtool" >&2
	exit 1
}
