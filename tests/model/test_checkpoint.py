import pytest

torch = pytest.importorskip("torch")

from simvos_trt.config import SimVOSConfig, preset  # noqa: E402
from simvos_trt.errors import InputError  # noqa: E402
from simvos_trt.model import (  # noqa: E402
    SimVOS,
    load_mae_backbone,
    load_official_checkpoint,
    synthetic_state_dict,
)
from simvos_trt.model.checkpoint import load_official_state, official_layout, resize_grid  # noqa: E402

TINY = preset("T")


def test_loads_every_used_key(tiny_checkpoint):
    model = load_official_checkpoint(tiny_checkpoint, TINY)
    state = torch.load(tiny_checkpoint, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not model.training


def test_non_tr_config_accepts_the_unused_refinement_weights(tiny_checkpoint):
    model = load_official_checkpoint(tiny_checkpoint, SimVOSConfig(backbone="tiny", layer_index=0))
    assert not hasattr(model, "tlearner")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_official_checkpoint(tmp_path / "nope.pth", TINY)


def test_truncated_file(tiny_checkpoint, tmp_path):
    bad = tmp_path / "cut.pth"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:100_000])
    with pytest.raises(InputError, match="truncated"):
        load_official_checkpoint(bad, TINY)


def test_empty_file_and_an_error_without_a_message(tmp_path, monkeypatch):
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(InputError, match=r"is empty \(0 bytes\)"):
        load_official_checkpoint(empty, TINY)
    empty.write_bytes(b"PK")

    def silent(*args, **kwargs):
        raise RuntimeError()

    monkeypatch.setattr(torch, "load", silent)  # an exception whose text is empty
    with pytest.raises(InputError, match=r"cannot read checkpoint .* \(RuntimeError: \)"):
        load_official_checkpoint(empty, TINY)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(InputError, match="cannot read"):
        load_official_checkpoint(text, TINY)
    lst = tmp_path / "list.pth"
    torch.save([1, 2, 3], lst)
    with pytest.raises(InputError, match="does not hold a state_dict"):
        load_official_checkpoint(lst, TINY)


def test_wrong_backbone_says_what_the_file_holds(tiny_checkpoint):
    with pytest.raises(InputError, match=r"holds a tiny ViT \(C=192, 12 blocks\)") as exc:
        load_official_checkpoint(tiny_checkpoint, SimVOSConfig(backbone="base", layer_index=4))
    assert "wrong shape" in str(exc.value)


def _shape_only(layout):
    # Zero-memory tensors with the right shapes: only the shape check runs before loading.
    return {k: torch.zeros(1).expand(*s) if s else torch.zeros(()) for k, s in layout.items()}


def test_large_checkpoint_with_base_config():
    large = _shape_only(official_layout(SimVOSConfig(backbone="large", layer_index=4,
                                                     token_refinement=True)))
    model = SimVOS(SimVOSConfig(backbone="base", layer_index=4, token_refinement=True))
    with pytest.raises(InputError, match=r"holds a large ViT \(C=1024, 24 blocks\)") as exc:
        load_official_state(model, large)
    assert "unexpected: blocks.12." in str(exc.value)


def test_mismatched_prototype_counts(tiny_checkpoint):
    cfg = SimVOSConfig(backbone="tiny", layer_index=4, token_refinement=True, kf=8, kb=16)
    with pytest.raises(InputError, match="kf=16, kb=16") as exc:
        load_official_checkpoint(tiny_checkpoint, cfg)
    assert "tlearner.patch_to_cluster_linear.weight (16, 48) (expected (8, 48))" in str(exc.value)


def test_missing_key_is_named(tmp_path):
    state = synthetic_state_dict(TINY)
    del state["stcn_decoder.pred.bias"]
    path = tmp_path / "partial.pth"
    torch.save({"model": state}, path)  # wrapped, as training scripts often save
    with pytest.raises(InputError, match=r"missing: stcn_decoder\.pred\.bias"):
        load_official_checkpoint(path, TINY)


def test_wrong_training_grid(tiny_checkpoint):
    with pytest.raises(InputError, match="24x24 grid"):
        load_official_checkpoint(tiny_checkpoint, SimVOSConfig(backbone="tiny", train_grid=(14, 14)))


def test_mae_backbone(tmp_path):
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path / "mae.pth"
    torch.save({"model": vit.state_dict()}, path)
    model = load_mae_backbone(path, TINY, seed=3)
    vs, ms = vit.state_dict(), model.state_dict()
    for k in ("patch_embed.proj.weight", "blocks.11.mlp.fc2.bias", "norm.weight"):
        assert torch.equal(ms[k], vs[k]), k
    expected = resize_grid(vs["pos_embed"], (24, 24))
    assert torch.equal(ms["pos_embed_new"], expected)
    # Spot-check one resized value against an independent bicubic of the 14x14 grid.
    grid = vs["pos_embed"][:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(24, 24), mode="bicubic", align_corners=False)
    torch.testing.assert_close(ms["pos_embed_new"][0, 1 + 5 * 24 + 7], ref[0, :, 5, 7])


def test_synthetic_layout_is_the_official_one():
    layout = official_layout(TINY)
    assert len(layout) == 201  # as the golden checkpoint
    assert layout["pos_embed"] == (1, 197, 192) and layout["pos_embed_new"] == (1, 577, 192)
