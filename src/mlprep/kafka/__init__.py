"""Kafka front ends: the stream processor, the stdout->Kafka sink and the bridge to a model server."""
