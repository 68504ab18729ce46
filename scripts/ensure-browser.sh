#!/bin/sh
# ensure-browser.sh: what the browser tests (e2e/browser) need: Debian's chromium and
# playwright-core and axe-core from npm, at the versions e2e/browser/package-lock.json pins.
# Playwright's own browser download cannot work here, so its bare driver drives the
# distribution's browser. `make test` runs this first; quiet and quick when both are
# there.
set -eu
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			SUDO="sudo -n"
		else
			echo "ensure-browser: no chromium, and installing it needs root: sudo apt-get install chromium" >&2
			exit 1
		fi
	fi
	echo "ensure-browser: installing chromium"
	${SUDO:-} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
		{ ${SUDO:-} apt-get update -qq && ${SUDO:-} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
fi
# npm ci when an installed package is not the locked version (or is missing).
stale=$(node -e '
const lock = require("./e2e/browser/package-lock.json");
let stale = "";
for (const [path, meta] of Object.entries(lock.packages)) {
	if (!path) continue;
	try { if (require("./e2e/browser/" + path + "/package.json").version !== meta.version) stale = path; }
	catch { stale = path; }
}
console.log(stale);')
if [ -n "$stale" ]; then
	echo "ensure-browser: installing the browser tests' packages ($stale is not the locked version)"
	(cd e2e/browser && npm ci --no-audit --no-fund --silent)
fi
