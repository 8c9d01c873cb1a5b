"""Helpers of the framework deployer tests: querying a deployed endpoint with a batch, and training the
small PyTorch classifier the pytorch and onnx tests serve."""

import numpy as np
from e2e_support import predict

# Generous: a replica's first batch on a loaded 2-core machine must not be answered by the default.
SLO_MICROS = 20_000_000


def served_outputs(conn, app, inputs):
    """Sends `inputs` (a 2-D array) as one `input_batch` to `app`; returns the model's outputs in order
    after checking that every one is a real (non-default) answer."""
    status, body, _ = predict(conn, app, {"input_batch": np.asarray(inputs).tolist()}, timeout_s=60)
    assert status == 200, body
    answers = body["batch_predictions"]
    assert len(answers) == len(inputs)
    defaulted = [answer for answer in answers if answer["default"]]
    assert not defaulted, defaulted[:3]
    return [answer["output"] for answer in answers]


def digits_split(query_count=200):
    """sklearn's digits: (train inputs, train labels, query inputs), inputs as float32."""
    from sklearn.datasets import load_digits

    inputs, labels = load_digits(return_X_y=True)
    inputs = inputs.astype(np.float32)
    return inputs[query_count:], labels[query_count:], inputs[:query_count]


def train_classifier(module, inputs, labels, steps=60, seed=0):
    """A few full-batch Adam steps of cross-entropy; returns `module` in eval mode."""
    import torch

    torch.manual_seed(seed)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    features = torch.as_tensor(inputs, dtype=torch.float32)
    targets = torch.as_tensor(labels, dtype=torch.int64)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(features), targets)
        loss.backward()
        optimizer.step()
    return module.eval()
