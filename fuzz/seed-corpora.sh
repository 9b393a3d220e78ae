#!/bin/sh
# Seeds every fuzz target's corpus from the golden fixtures (and the saved vCard crash inputs).
# Run from anywhere; copies into fuzz/corpus/<target>/, which cargo fuzz reads and grows (the
# corpus directories are not committed). Existing corpus entries are kept.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
corpus="$root/fuzz/corpus"
seed() { # seed <target> <files...>
  target=$1; shift
  mkdir -p "$corpus/$target"
  for f in "$@"; do
    [ -f "$f" ] || continue
    # prefix with the fixture's directory so that same-named fixtures do not collide
    cp "$f" "$corpus/$target/$(basename "$(dirname "$f")")_$(basename "$f")"
  done
  echo "$target: $(ls "$corpus/$target" | wc -l) inputs"
}
cd "$root"
seed vcard_read_normalize fixtures/vcard/*.vcf fixtures/vcard/fuzz/*
seed dav_request_parse fixtures/dav/requests/*.xml
seed dav_multistatus_parse $(find fixtures/dav/responses -name '*.xml')
# Graph: contacts, delta pages, folder listings, error bodies and our own write bodies.
seed graph_contact_mapping fixtures/graph/*.json
# EWS: SOAP answers of every operation, faults, and both Autodiscover flavours.
seed ews_response_parse fixtures/ews/*.xml
