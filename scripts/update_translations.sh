#!/usr/bin/env bash
# Re-extract superapp's own messages into locale/<lang>/LC_MESSAGES/django.po, compile the .mo
# files (committed, so that a clone needs no gettext), and report what is left to translate.
#
#   scripts/update_translations.sh           extract + compile + report
#   scripts/update_translations.sh --check   the same, then exit 1 if anything is untranslated
#                                            or fuzzy (tests/core/test_i18n.py checks the same)
#
# Needs GNU gettext (xgettext, msgmerge, msgfmt). After it runs: translate every empty or
# "#, fuzzy" entry in the .po files (drop the fuzzy flag once checked), then run it again to
# compile. DRF, Django and simplejwt ship their own catalogs; only our messages are here.
set -euo pipefail

cd "$(dirname "$0")/.."
LANGS=(zh_Hans ru)
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for tool in xgettext msgmerge msgfmt; do
  command -v "$tool" >/dev/null || { echo "$tool not found: install GNU gettext" >&2; exit 2; }
done

# Extraction needs no database: run with the embedded default settings.
run_django() { env -u DATABASE_URL -u REDIS_URL DJANGO_SETTINGS_MODULE=superapp.settings "$PYTHON" manage.py "$@"; }

# makemessages rewrites POT-Creation-Date on every run; keep a file untouched when nothing else
# changed, so that running the script does not dirty the tree.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for lang in "${LANGS[@]}"; do
  po="locale/$lang/LC_MESSAGES/django.po"
  mkdir -p "$(dirname "$po")"
  [ -f "$po" ] && cp "$po" "$tmp/$lang.po"
done

lang_args=()
for lang in "${LANGS[@]}"; do lang_args+=(-l "$lang"); done
# --add-location=file: no line numbers, so that unrelated edits do not churn every .po file.
# EXTRA_IGNORE: more space-separated patterns to leave out (work in progress elsewhere).
extra=()
for pattern in ${EXTRA_IGNORE:-}; do extra+=(--ignore="$pattern"); done
run_django makemessages "${lang_args[@]}" --add-location=file \
  --ignore=.venv --ignore=var --ignore=tests --ignore=bench --ignore=build --ignore=dist "${extra[@]}"

for lang in "${LANGS[@]}"; do
  po="locale/$lang/LC_MESSAGES/django.po"
  if [ -f "$tmp/$lang.po" ] && diff -q <(grep -v '^"POT-Creation-Date:' "$tmp/$lang.po") \
                                         <(grep -v '^"POT-Creation-Date:' "$po") >/dev/null; then
    cp "$tmp/$lang.po" "$po"
  fi
done

run_django compilemessages --ignore=.venv --ignore=var "${lang_args[@]}"

status=0
echo
echo "Translation status:"
for lang in "${LANGS[@]}"; do
  po="locale/$lang/LC_MESSAGES/django.po"
  stats=$(LC_ALL=C msgfmt --statistics -o /dev/null "$po" 2>&1)
  untranslated=$(grep -oE '[0-9]+ untranslated' <<<"$stats" | grep -oE '[0-9]+' || true)
  fuzzy=$(grep -oE '[0-9]+ fuzzy' <<<"$stats" | grep -oE '[0-9]+' || true)
  printf '  %-8s %s\n' "$lang" "$stats"
  if [ "${untranslated:-0}" -gt 0 ] || [ "${fuzzy:-0}" -gt 0 ]; then
    status=1
    echo "           list them: msgattrib --untranslated $po; msgattrib --only-fuzzy $po"
  fi
done

if [ "$check" -eq 1 ] && [ "$status" -ne 0 ]; then
  echo "Some messages are untranslated or fuzzy." >&2
  exit 1
fi
