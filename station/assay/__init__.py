# Pure image math that reads colloidal-gold cassettes from a photograph (no I/O).
from station.assay.pipeline import score_image
from station.assay.scores import ImageScore, LineReading, StripScore
from station.striptypes import BUILTIN_STRIP_TYPES, DEFAULT_STRIP_TYPE, StripType, strip_type_from_dict

__all__ = ["score_image", "ImageScore", "StripScore", "LineReading", "StripType", "BUILTIN_STRIP_TYPES",
           "DEFAULT_STRIP_TYPE", "strip_type_from_dict"]
