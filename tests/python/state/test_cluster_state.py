"""The configuration's data model: names, input types and the JSON round trip."""

import pytest

from clipper.exceptions import ConfigurationError
from clipper.state import Application, ClusterState, Model, ModelVersion, canonical_input_type
from clipper.state.cluster_state import (
    StateFormatError,
    check_batch_size,
    check_labels,
    check_name,
    check_slo_micros,
)


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("doubles", "doubles"), ("d", "doubles"), ("double", "doubles"),
        ("integers", "ints"), ("int", "ints"), ("i", "ints"),
        ("floats", "floats"), ("f", "floats"),
        ("bytes", "bytes"), ("b", "bytes"),
        ("strings", "strings"), ("str", "strings"), ("S", "strings"),
    ],
)  # fmt: skip
def test_clipper_input_type_aliases_are_accepted(alias, canonical):
    assert canonical_input_type(alias) == canonical


@pytest.mark.parametrize("bad", ["tensor", "", None, 3])
def test_unknown_input_types_name_the_accepted_ones(bad):
    with pytest.raises(ConfigurationError, match="bytes, ints, floats, doubles, strings"):
        canonical_input_type(bad)


def test_names_must_be_url_and_file_safe():
    assert check_name("model name", "sum-model_1.2") == "sum-model_1.2"
    assert check_name("model version", 3) == "3"
    for bad in ["", "a/b", "a:b", "a,b", "-leading", "a b", "x" * 200]:
        with pytest.raises(ConfigurationError, match="is not valid"):
            check_name("application name", bad)
    with pytest.raises(ConfigurationError):
        check_name("model name", 3)


def test_numbers_and_labels_are_checked_with_the_field_name():
    assert check_slo_micros(100000) == 100000
    for bad in [0, -1, 2**31, 1.5, True, "100"]:
        with pytest.raises(ConfigurationError, match="slo_micros"):
            check_slo_micros(bad)
    assert check_batch_size(-1) == -1 and check_batch_size(16) == 16
    for bad in [0, -2, 1.0, None]:
        with pytest.raises(ConfigurationError, match="batch_size"):
            check_batch_size(bad)
    assert check_labels(None) == [] and check_labels(("a", "b")) == ["a", "b"]
    with pytest.raises(ConfigurationError, match="label"):
        check_labels(["a:b"])


def test_the_json_form_round_trips():
    state = ClusterState(
        revision=4,
        applications={
            "app": Application("app", "strings", "none", 5000, ["m"]),
            "lenient": Application("lenient", "strings", "none", 5000, overload="default"),
        },
        models={
            "m": Model(
                "m",
                "2",
                {
                    "1": ModelVersion("m", "1", "strings"),
                    "2": ModelVersion("m", "2", "strings", 4, ["x"], "/img", "/data"),
                },
            )
        },
    )
    assert ClusterState.from_dict(state.to_dict()) == state


def test_overload_is_stored_only_when_not_the_default_and_checked_when_read():
    assert "overload" not in Application("a", "ints", "0", 1).to_dict()
    assert Application("a", "ints", "0", 1, overload="default").to_dict()["overload"] == "default"
    stored = ClusterState(applications={"a": Application("a", "ints", "0", 1)}).to_dict()
    stored["applications"][0]["overload"] = "shed"
    with pytest.raises(StateFormatError, match="application 'a': overload 'shed' is not 'reject'"):
        ClusterState.from_dict(stored)


def test_clone_is_deep():
    state = ClusterState(applications={"a": Application("a", "ints", "0", 1)})
    copy = state.clone()
    copy.applications["a"].linked_models.append("m")
    assert state.applications["a"].linked_models == []
