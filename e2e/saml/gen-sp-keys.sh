#!/usr/bin/env bash
# gen-sp-keys.sh — generates a throwaway SP key pair for the SAML e2e tools: an RSA-2048 private
# key and a self-signed certificate (valid 2 days), made with openssl at test time so no private
# key is ever committed.
#
# Usage: e2e/saml/gen-sp-keys.sh DIR [NAME]      (NAME defaults to "sp")
# Writes DIR/NAME.key.pem (mode 600) and DIR/NAME.cert.pem, and prints one JSON line:
#   {"key":"DIR/NAME.key.pem","cert":"DIR/NAME.cert.pem","cert_b64":"<base64 DER, for metadata>"}
# The key itself is never printed.
set -euo pipefail
dir="${1:?usage: gen-sp-keys.sh DIR [NAME]}"
name="${2:-sp}"
case "$name" in *[!A-Za-z0-9._-]*|'') echo "gen-sp-keys.sh: NAME must be [A-Za-z0-9._-]+" >&2; exit 2 ;; esac
mkdir -p "$dir"
key="$dir/$name.key.pem"
cert="$dir/$name.cert.pem"
( umask 077
  timeout 30 openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
    -subj "/CN=latchkey-e2e-$name" -keyout "$key" -out "$cert" 2>/dev/null )
cert_b64="$(sed -e '/-----/d' "$cert" | tr -d '\n\r ')"
printf '{"key":"%s","cert":"%s","cert_b64":"%s"}\n' "$key" "$cert" "$cert_b64"
