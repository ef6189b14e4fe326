"""The build side: from an MLflow run to Docker images (names, fetch, the Docker engine, base image,
image builds, the build API). Host-side only: images never hold it."""
