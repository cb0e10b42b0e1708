#!/usr/bin/env bash
# Writes a settings file (deploy/.env for compose, k8s/overlays/kind/secrets/*.env for kind) from
# its committed example, replacing every value `generate` with a fresh random one: 32 random
# bytes as 64 hex digits, safe inside a URL and long enough for JWT_SECRET. An existing file is
# never touched: PostgreSQL keeps the password it was initialised with in its volume, so new
# secrets would lock the stack out.
set -euo pipefail
example=${1:-deploy/.env.example}
target=${2:-deploy/.env}

if [ -e "$target" ]; then
  exit 0
fi
random() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
tmp="$target.tmp.$$"
trap 'rm -f "$tmp"' EXIT
umask 077 # secrets: readable by you alone
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    *=generate) printf '%s=%s\n' "${line%=generate}" "$(random)" ;;
    *) printf '%s\n' "$line" ;;
  esac
done <"$example" >"$tmp"
mv "$tmp" "$target"
echo "wrote $target with fresh secrets (keep it: a database initialised with them needs the same ones)" >&2
