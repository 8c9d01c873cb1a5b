"""clipper.container's public surface: what a model image imports, and that it stays light."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_public_names_include_prediction():
    from clipper import container

    assert set(container.__all__) >= {
        "ContainerOptions",
        "Model",
        "ModelServer",
        "Prediction",
        "run",
    }
    assert container.Prediction("cat", 0.5) == ("cat", 0.5)
    assert container.Prediction("cat", 0.5).confidence == 0.5


def test_importing_the_sdk_loads_no_control_plane_module():
    code = (
        "import sys, json, clipper.container; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('clipper'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    loaded = json.loads(result.stdout)
    assert "clipper.container.model" in loaded  # the check sees what the import loads
    packages = ("clipper.container", "clipper.wire", "clipper_native")
    for module in loaded:
        allowed = module == "clipper" or any(
            module == package or module.startswith(package + ".") for package in packages
        )
        assert allowed, f"import clipper.container loaded {module}"
    assert "clipper_native._core" not in loaded  # the engine's library stays out of replicas
