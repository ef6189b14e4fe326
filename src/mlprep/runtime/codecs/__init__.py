"""Input codecs: JSONL, JSON documents and Avro, behind one small interface (``Codec``)."""

from mlprep.runtime.codecs.base import Codec
from mlprep.runtime.codecs.detect import FORMATS, detect_codec, open_codec

__all__ = ["FORMATS", "Codec", "detect_codec", "open_codec"]
