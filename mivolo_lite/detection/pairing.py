"""Face-to-body matching and person crops.

Faces are matched to bodies by an optimal (Hungarian) assignment on how much of the face lies
inside the body box, favouring faces in the body's upper part. Unmatched faces become face-only
persons, unmatched bodies body-only persons. Body crops hide other people's boxes (so the body
branch sees one person); crops that are tiny or mostly hidden are dropped as inputs.

Boxes may be tensors, arrays or lists; NaN/infinite boxes and boxes with swapped corners raise
:class:`~mivolo_lite.detection.boxes.InvalidBoxesError`, boxes outside the image give no crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .boxes import InvalidBoxesError, as_boxes


def face_in_body_scores(faces: torch.Tensor, bodies: torch.Tensor) -> torch.Tensor:
    """(F, B): share of each face box's area inside each body box, halved when the face sits low
    in the body: a face belongs near the top of its body, with its centre in the body's upper
    half or its top within one face height of the body's top (a body cut by the bottom of the
    frame, as in close-ups, may be little taller than its face)."""
    if faces.numel() == 0 or bodies.numel() == 0:
        return torch.zeros(len(faces), len(bodies))
    # float64: products of huge (but finite) float32 coordinates must not overflow to inf/NaN
    f, b = faces.double()[:, None, :], bodies.double()[None, :, :]
    iw = (torch.minimum(f[..., 2], b[..., 2]) - torch.maximum(f[..., 0], b[..., 0])).clamp_min(0)
    ih = (torch.minimum(f[..., 3], b[..., 3]) - torch.maximum(f[..., 1], b[..., 1])).clamp_min(0)
    face_area = ((f[..., 2] - f[..., 0]) * (f[..., 3] - f[..., 1])).clamp_min(1e-6)
    inside = iw * ih / face_area
    centre_y = (f[..., 1] + f[..., 3]) / 2
    upper = (centre_y <= (b[..., 1] + 0.5 * (b[..., 3] - b[..., 1]))) | (f[..., 1] - b[..., 1] <= f[..., 3] - f[..., 1])
    return torch.where(upper, inside, inside * 0.5).float()


def match_faces_to_bodies(faces: torch.Tensor, bodies: torch.Tensor, min_score: float = 0.6
                          ) -> list[tuple[int | None, int | None]]:
    """Optimal one-to-one assignment maximising :func:`face_in_body_scores`. Returns
    ``(face_index | None, body_index | None)`` pairs covering every face and every body once."""
    faces, bodies = as_boxes(faces, "face boxes"), as_boxes(bodies, "body boxes")
    scores = face_in_body_scores(faces, bodies)
    pairs: list[tuple[int | None, int | None]] = []
    used_f, used_b = set(), set()
    if scores.numel():
        from .._ultralytics import ultralytics_offline

        ultralytics_offline()
        from ultralytics.utils.ops import linear_sum_assignment

        rows, cols = linear_sum_assignment((1.0 - scores).numpy().astype(np.float64))
        for r, c in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist()):
            if scores[r, c] >= min_score:
                pairs.append((r, c))
                used_f.add(r)
                used_b.add(c)
    pairs += [(i, None) for i in range(len(faces)) if i not in used_f]
    pairs += [(None, j) for j in range(len(bodies)) if j not in used_b]
    return pairs


def add_persons_for_faces(face_boxes: torch.Tensor, face_scores: torch.Tensor, person_boxes: torch.Tensor,
                          person_scores: torch.Tensor, covered_at: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """For each face that no person box contains (:func:`face_in_body_scores` below
    ``covered_at``), a head-and-torso person box below it (a face is about 1/3 of the shoulder
    width), scored at half the face's score: a face is a person even where the body detector
    missed them (close-ups, crowds, people cut by the frame)."""
    if face_boxes.numel() == 0:
        return person_boxes, person_scores
    covered = (face_in_body_scores(face_boxes, person_boxes) >= covered_at).any(dim=1) if person_boxes.numel() else \
        torch.zeros(len(face_boxes), dtype=torch.bool)
    f = face_boxes[~covered]
    if f.numel() == 0:
        return person_boxes, person_scores
    w, h = f[:, 2] - f[:, 0], f[:, 3] - f[:, 1]
    extra = torch.stack([f[:, 0] - w, f[:, 1] - 0.5 * h, f[:, 2] + w, f[:, 3] + 3.0 * h], dim=1)
    return torch.cat([person_boxes.reshape(-1, 4), extra]), torch.cat([person_scores.reshape(-1), face_scores[~covered] * 0.5])


@dataclass
class PersonCrops:
    face_box: tuple | None
    body_box: tuple | None
    face_crop: np.ndarray | None
    body_crop: np.ndarray | None
    face_score: float | None = None
    body_score: float | None = None
    track_id: int | None = None


def _int_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (max(0, int(np.floor(x1))), max(0, int(np.floor(y1))), min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2))))


def _checked_pair(pair, n_faces: int, n_bodies: int) -> tuple[int | None, int | None]:
    fi, bi = pair
    for index, n, what in ((fi, n_faces, "face"), (bi, n_bodies, "body")):
        if index is not None and not 0 <= index < n:
            raise InvalidBoxesError(f"pair {pair}: {what} index {index} is out of range ({n} {what} box(es))")
    if fi is None and bi is None:
        raise InvalidBoxesError("pair (None, None) names neither a face nor a body")
    return fi, bi


def crop_persons(image: np.ndarray, faces: torch.Tensor, bodies: torch.Tensor, pairs, face_scores=None,
                 body_scores=None, track_ids=None, min_face: int = 8, min_body: int = 16,
                 min_visible: float = 0.4, fill=(124, 116, 104)) -> list[PersonCrops]:
    """Cut face and body crops for each pair. In a body crop, pixels of *other* people's face and
    body boxes are filled with ``fill`` (the normalisation mean, i.e. "nothing") except where the
    person's own face is; a body crop with less than ``min_visible`` of its area left is dropped."""
    h, w = image.shape[:2]
    faces, bodies = as_boxes(faces, "face boxes"), as_boxes(bodies, "body boxes")
    pairs = [_checked_pair(pair, len(faces), len(bodies)) for pair in pairs]
    persons = []
    for fi, bi in pairs:
        face_box = faces[fi].tolist() if fi is not None else None
        body_box = bodies[bi].tolist() if bi is not None else None
        face_crop = body_crop = None
        if face_box is not None:
            x1, y1, x2, y2 = _int_box(face_box, w, h)
            if min(x2 - x1, y2 - y1) >= min_face:
                face_crop = image[y1:y2, x1:x2]
        if body_box is not None:
            x1, y1, x2, y2 = _int_box(body_box, w, h)
            if min(x2 - x1, y2 - y1) >= min_body:
                body_crop = image[y1:y2, x1:x2].copy()
                hidden = np.zeros(body_crop.shape[:2], dtype=bool)
                others = [bodies[j] for j in range(len(bodies)) if j != bi] + \
                         [faces[j] for j in range(len(faces)) if j != fi]
                for other in others:
                    ox1, oy1, ox2, oy2 = _int_box(other, w, h)
                    ox1, oy1, ox2, oy2 = max(ox1, x1) - x1, max(oy1, y1) - y1, min(ox2, x2) - x1, min(oy2, y2) - y1
                    if ox2 > ox1 and oy2 > oy1:
                        hidden[oy1:oy2, ox1:ox2] = True
                if face_box is not None:  # never hide the person's own face
                    fx1, fy1, fx2, fy2 = _int_box(face_box, w, h)
                    hidden[max(fy1 - y1, 0):max(fy2 - y1, 0), max(fx1 - x1, 0):max(fx2 - x1, 0)] = False
                if hidden.mean() > 1 - min_visible:
                    body_crop = None
                elif hidden.any():
                    body_crop[hidden] = fill
        persons.append(PersonCrops(
            face_box=tuple(face_box) if face_box else None, body_box=tuple(body_box) if body_box else None,
            face_crop=face_crop, body_crop=body_crop,
            face_score=float(face_scores[fi]) if fi is not None and face_scores is not None else None,
            body_score=float(body_scores[bi]) if bi is not None and body_scores is not None else None,
            track_id=int(track_ids[bi]) if bi is not None and track_ids is not None else None))
    return persons
