#!/bin/bash
# Creates, in a namespace, what the overlays refer to but do not hold:
#   bazaar-trust (ConfigMap)         every service's public key, <service>.pub
#   bazaar-<service>-key (Secret)    each service's private key, service.key
#   bazaar-users (Secret)            users' signing-kek and admin-password
# and with -dev, for the dev overlay's Postgres (in prod CloudNativePG makes them):
#   bazaar-postgres (Secret)         the superuser's password
#   bazaar-<service>-db-app (Secret) each service's role: username, password, uri
#
# DIR is what `bazaarctl secrets init -dir DIR` made. Keep it out of the repository,
# or in deploy/k8s/secrets/, which git ignores. The keys are applied again from DIR on
# every run (so a key rotated there is taken); the database passwords are made once,
# since a Postgres initialised with them keeps them.
#
#   go run ./cmd/bazaarctl secrets init -dir deploy/k8s/secrets/dev
#   deploy/k8s/create-secrets.sh -n bazaar-dev -dir deploy/k8s/secrets/dev -dev
set -euo pipefail

usage() {
	echo "usage: $0 -n NAMESPACE -dir DIR [-dev]" >&2
	exit 2
}
ns= dir= dev=
while [ $# -gt 0 ]; do
	case "$1" in
	-n) ns=${2:-}; shift 2 || usage ;;
	-dir) dir=${2:-}; shift 2 || usage ;;
	-dev) dev=1; shift ;;
	*) usage ;;
	esac
done
[ -n "$ns" ] && [ -n "$dir" ] || usage

services=(users inventory payments orders notifications)
required=(users/signing-kek users/admin-password)
for s in "${services[@]}"; do
	required+=("keys/$s/service.key" "keys/public/$s.pub")
done
for f in "${required[@]}"; do
	if [ ! -s "$dir/$f" ]; then
		echo "$dir/$f is missing: run bazaarctl secrets init -dir $dir first" >&2
		exit 1
	fi
done

k() { kubectl -n "$ns" "$@"; }
# Create or update from the files.
apply() { k create "$@" --dry-run=client -o yaml | k apply -f -; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
apply configmap bazaar-trust --from-file="$dir/keys/public"
for s in "${services[@]}"; do
	apply secret generic "bazaar-$s-key" --from-file=service.key="$dir/keys/$s/service.key"
done
apply secret generic bazaar-users \
	--from-file=signing-kek="$dir/users/signing-kek" --from-file=admin-password="$dir/users/admin-password"

[ -n "$dev" ] || exit 0
# The passwords go through files, not the command line, which other users can read.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"
exists() { k get secret "$1" >/dev/null 2>&1; }
# 24 random bytes, in hex.
random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
if ! exists bazaar-postgres; then
	random >"$tmp/password"
	k create secret generic bazaar-postgres --from-file=password="$tmp/password"
fi
for s in "${services[@]}"; do
	exists "bazaar-$s-db-app" && continue
	password=$(random)
	printf %s "bazaar_$s" >"$tmp/username"
	printf %s "$password" >"$tmp/password"
	printf %s "postgres://bazaar_$s:$password@postgres:5432/bazaar_$s?sslmode=disable" >"$tmp/uri"
	k create secret generic "bazaar-$s-db-app" \
		--from-file=username="$tmp/username" --from-file=password="$tmp/password" --from-file=uri="$tmp/uri"
done
