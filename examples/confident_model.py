"""A model that reports how sure it is: each output is a `Prediction(label, confidence)`.

`NearestCentroid` labels 2-D points by the nearest of three centroids; its confidence is the softmax
share of that centroid, so points between two centroids come back unsure (near 0.5) and points on a
centroid sure (near 1). Selection policies read the confidence: under `cascade` the app asks its next
model while this one answers below the threshold.

Try it offline with `python examples/confident_model.py`. Serve it to a frontend with the container
SDK's command:
    clipper-model --model confident_model:NearestCentroid --model-dir examples \\
        --name pets --version 1 --input-type doubles --frontend tcp://127.0.0.1:7000
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipper.container import Model, Prediction


class NearestCentroid(Model):
    """Classifies a point (x, y) as "cat", "dog" or "bird", with the confidence of that choice."""

    def __init__(self) -> None:
        self.labels = ["cat", "dog", "bird"]
        self.centroids = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])

    def predict_batch(self, inputs: Any) -> list[Prediction]:
        points = np.asarray(inputs, dtype=np.float64)  # one row per input (uniform `doubles` batch)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(
                f"each input must be 2 numbers (x, y); got a batch shaped {points.shape}"
            )
        distances = np.linalg.norm(points[:, None, :] - self.centroids[None, :, :], axis=2)
        scores = np.exp(-(distances - distances.min(axis=1, keepdims=True)))  # stable softmax
        shares = scores / scores.sum(axis=1, keepdims=True)
        best = shares.argmax(axis=1)
        return [
            Prediction(self.labels[index], float(share[index]))
            for index, share in zip(best.tolist(), shares)
        ]


if __name__ == "__main__":
    model = NearestCentroid()
    # Near the cat centroid, halfway between cat and dog, near the bird centroid.
    batch = np.array([[0.1, -0.2], [2.0, 0.0], [0.3, 3.5]])
    for point, prediction in zip(batch.tolist(), model.predict_batch(batch)):
        print(f"{point} -> {prediction.output} (confidence {prediction.confidence:.2f})")
