"""Input codecs: JSONL, JSON documents and Avro, behind one small interface (``Codec``)."""

from mlprep.codecs.base import Codec, open_codec
from mlprep.codecs.detect import FORMATS, detect_codec

__all__ = ["FORMATS", "Codec", "detect_codec", "open_codec"]
