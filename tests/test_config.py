import pytest

from simvos_trt.config import PRESETS, SimVOSConfig, preset


def test_presets_are_the_papers_variants():
    b = PRESETS["B"]
    assert (b.backbone, b.layer_index, b.token_refinement) == ("base", 0, False)
    assert (PRESETS["L"].embed_dim, PRESETS["L"].depth, PRESETS["L"].num_heads) == (1024, 24, 16)
    bs = PRESETS["BS"]
    assert (bs.layer_index, bs.token_refinement, bs.kf, bs.kb) == (4, True, 384, 384)
    assert (PRESETS["T"].embed_dim, PRESETS["T"].num_heads, PRESETS["T"].depth) == (192, 3, 12)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"backbone": "huge"}, "backbone"),
        ({"layer_index": 13}, "layer_index"),
        ({"layer_index": -1}, "layer_index"),
        ({"backbone": "large", "layer_index": 25}, "layer_index"),
        ({"layer_index": 0, "token_refinement": True}, "token_refinement"),
        ({"kf": 0}, "kf"),
        ({"kb": 5000}, "kb"),
        ({"kf": 2.5}, "kf"),
        ({"train_grid": (24,)}, "train_grid"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        SimVOSConfig(**kwargs)


def test_large_allows_deeper_layer_index():
    assert SimVOSConfig(backbone="large", layer_index=24).layer_index == 24


def test_round_trip_and_memory_tokens():
    cfg = preset("BS")
    assert SimVOSConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.memory_tokens((30, 54)) == 768
    assert preset("B").memory_tokens((30, 54)) == 30 * 54
    with pytest.raises(ValueError, match="unknown configuration fields"):
        SimVOSConfig.from_dict({"backbone": "base", "depth": 3})
    with pytest.raises(ValueError, match="^variant"):
        preset("XL")


def test_frozen():
    with pytest.raises(AttributeError):
        preset("B").layer_index = 2  # type: ignore[misc]
