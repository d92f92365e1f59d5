#!/bin/sh
# Render alertmanager.yml from the environment, then start Alertmanager (see README.md).
#
#   entrypoint.sh [alertmanager flags...]   render, then exec Alertmanager with those flags
#   entrypoint.sh --render-only             render, print the rendered file's path, exit
#
# Only a POSIX shell and awk are needed: it runs in the official prom/alertmanager image
# (busybox, no envsubst) as well as anywhere else.
set -eu

TEMPLATE=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}
RUNTIME_DIR=${ALERTMANAGER_RUNTIME_DIR:-/tmp/alertmanager}
ALERTMANAGER_BIN=${ALERTMANAGER_BIN:-alertmanager}

# The placeholders the template may use, each filled from the variable of the same name.
PLACEHOLDERS="ALERT_SLACK_CHANNEL ALERT_SLACK_WEBHOOK_URL_FILE ALERT_EMAIL_TO ALERT_EMAIL_FROM
ALERT_SMTP_SMARTHOST ALERT_SMTP_USERNAME ALERT_SMTP_PASSWORD_FILE ALERT_SMTP_REQUIRE_TLS"
NEWLINE='
'

fail() {
  echo "alertmanager entrypoint: $*" >&2
  exit 1
}

require() {  # require NAME: the variable must be set and not empty
  eval "value=\${$1:-}"
  [ -n "$value" ] || fail "$1 must be set (see alertmanager/README.md)"
}

# secret_file NAME: make NAME_FILE name a file that holds the secret. Either it already does
# (a mounted Docker secret, for instance), or the secret is in NAME itself and is written to a
# file only this user can read. The secret never enters the rendered configuration.
secret_file() {
  eval "file=\${${1}_FILE:-}"
  eval "value=\${$1:-}"
  if [ -n "$file" ]; then
    [ -f "$file" ] && [ -r "$file" ] || fail "${1}_FILE=$file is not a readable file"
  elif [ -n "$value" ]; then
    file=$RUNTIME_DIR/$(printf '%s' "$1" | tr 'A-Z' 'a-z')
    (umask 077 && printf '%s' "$value" >"$file")
    eval "${1}_FILE=\$file"
  else
    fail "$1 or ${1}_FILE must be set (see alertmanager/README.md)"
  fi
  unset "$1"  # Alertmanager reads the file; it need not inherit the secret
}

# One pass over the template: each ${NAME} of PLACEHOLDERS becomes the value of NAME, inside a
# single-quoted YAML string (so ' is doubled); inserted values are never scanned again.
render() {
  for name in $PLACEHOLDERS; do
    eval "value=\${$name:-}"
    case $value in *"$NEWLINE"*) fail "$name must be a single line" ;; esac
    export "$name"
  done
  awk -v names="$(echo $PLACEHOLDERS)" -v template="$TEMPLATE" '
    BEGIN { split(names, list, " "); for (i in list) known[list[i]] = 1; quote = "\047" }
    {
      done = ""; rest = $0
      while (match(rest, /[$][{][A-Za-z_][A-Za-z0-9_]*[}]/)) {
        name = substr(rest, RSTART + 2, RLENGTH - 3)
        if (!(name in known)) {
          printf "alertmanager entrypoint: %s uses ${%s}, which this script does not fill\n",
            template, name > "/dev/stderr"
          exit 1
        }
        value = ENVIRON[name]
        gsub(quote, quote quote, value)
        done = done substr(rest, 1, RSTART - 1) value
        rest = substr(rest, RSTART + RLENGTH)
      }
      print done rest
    }' "$TEMPLATE" >"$CONFIG.tmp" || fail "could not render $TEMPLATE"
  mv "$CONFIG.tmp" "$CONFIG"
}

[ -r "$TEMPLATE" ] || fail "no template at $TEMPLATE (set ALERTMANAGER_TEMPLATE)"
(umask 077 && mkdir -p "$RUNTIME_DIR")
CONFIG=$RUNTIME_DIR/alertmanager.yml

require ALERT_SLACK_CHANNEL
require ALERT_EMAIL_TO
require ALERT_EMAIL_FROM
require ALERT_SMTP_SMARTHOST
secret_file ALERT_SLACK_WEBHOOK_URL
# SMTP authentication is optional (a relay on a private network may need none); with a user
# name, a password is required.
ALERT_SMTP_USERNAME=${ALERT_SMTP_USERNAME:-}
if [ -n "$ALERT_SMTP_USERNAME" ]; then
  secret_file ALERT_SMTP_PASSWORD
else
  ALERT_SMTP_PASSWORD_FILE=
  unset ALERT_SMTP_PASSWORD
fi
ALERT_SMTP_REQUIRE_TLS=${ALERT_SMTP_REQUIRE_TLS:-true}
case $ALERT_SMTP_REQUIRE_TLS in
  true | false) ;;
  *) fail "ALERT_SMTP_REQUIRE_TLS must be true or false, not '$ALERT_SMTP_REQUIRE_TLS'" ;;
esac

render

if [ "${1:-}" = "--render-only" ]; then
  echo "$CONFIG"
  exit 0
fi
exec "$ALERTMANAGER_BIN" --config.file="$CONFIG" "$@"
