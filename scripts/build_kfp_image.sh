#!/usr/bin/env bash
# scripts/build_kfp_image.sh [TAG]: build the KFP components' image (docker/Dockerfile.kfp) from this checkout.
# BASE_IMAGE (default python:3.11-slim; mlprep-base:3.11-bookworm without a registry) is its base.
# Then: docker tag/push it to your cluster's registry and compile with KFP_IMAGE=<that name>.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-churn-kfp:latest}"
exec docker build --network host --build-arg "BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}" \
  -f "$here/docker/Dockerfile.kfp" -t "$tag" "$here"
