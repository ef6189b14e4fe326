#!/usr/bin/env bash
# The workshop's images as one file, to hand out before the course (USB key, shared drive): nobody then
# builds or downloads anything on the day.
#   scripts/workshop_images.sh save [FILE]   build workshop-prefect and workshop-dagster, save both (default
#                                            workshop-images.tar.gz)
#   scripts/workshop_images.sh load [FILE]   load them; `docker compose up -d` then starts without building
# PowerShell (Windows) equivalents, from the repository's root:
#   docker compose --profile dagster build
#   docker save -o workshop-images.tar workshop-prefect:latest workshop-dagster:latest
#   docker load -i workshop-images.tar
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
images=(workshop-prefect:latest workshop-dagster:latest)
command="${1:-}"
file="${2:-workshop-images.tar.gz}"
case "$command" in
  save)
    (cd "$here" && docker compose --profile dagster build)
    docker save "${images[@]}" | gzip -1 > "$file"
    echo "saved ${images[*]} to $file ($(du -h "$file" | cut -f1))"
    ;;
  load)
    [ -f "$file" ] || { echo "no such file: $file (scripts/workshop_images.sh save makes it)" >&2; exit 2; }
    gunzip -c "$file" | docker load
    ;;
  *)
    echo "usage: $0 save|load [FILE]" >&2
    exit 2
    ;;
esac
