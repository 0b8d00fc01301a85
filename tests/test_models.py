import logging

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from mosaic.errors import HubError, UsageError
from mosaic.models import load_captioner, load_encoder, resolve
from mosaic.models.lite import _remap_checkpoint

pytestmark = pytest.mark.slow  # the packaged models are loaded


@pytest.fixture(scope="module")
def photos():
    return [Image.fromarray(data.chelsea()), Image.fromarray(data.rocket()), Image.fromarray(data.coffee())]


def test_packaged_classifier_recognises_real_photos(photos):
    captions = load_captioner("labels").caption(photos)
    assert "cat" in captions[0]  # Egyptian cat / tabby / tiger cat
    assert "missile" in captions[1] or "rocket" in captions[1]
    assert "espresso" in captions[2] or "cup" in captions[2]


def test_lite_matches_texts_to_the_right_images(photos):
    enc = load_encoder("lite")
    img = enc.encode_images(photos)
    txt = enc.encode_texts(["a cat", "a rocket on a launch pad", "a cup of coffee"])
    assert img.shape == (3, enc.dim) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert (np.argmax(txt @ img.T, axis=1) == [0, 1, 2]).all()


def test_checkpoint_remap_refuses_a_mismatched_checkpoint():
    target = {"conv.weight": torch.zeros(4, 3), "bn.bias": torch.zeros(4)}
    assert list(_remap_checkpoint({"_a.weight": torch.ones(4, 3), "_b.bias": torch.ones(4)}, target)) == list(target)
    with pytest.raises(ValueError, match="does not fit"):
        _remap_checkpoint({"_a.weight": torch.ones(4, 2), "_b.bias": torch.ones(4)}, target)


def test_auto_falls_back_to_offline_models_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="mosaic"):
        assert resolve("auto", "open_clip:ViT-B-32/openai", "lite") == "lite"
    assert "HF_HUB_OFFLINE" in caplog.text


def test_online_models_offline_fail_with_a_clear_message():
    with pytest.raises(HubError, match="--model lite"):
        load_encoder("open_clip:ViT-B-32/openai")
    with pytest.raises(HubError, match="Salesforce/blip"):
        load_captioner("blip:Salesforce/blip-image-captioning-base")


def test_unknown_specs_are_rejected():
    with pytest.raises(UsageError, match="Unknown model spec 'clip-please'.*lite, open_clip, hf"):
        load_encoder("clip-please")
    with pytest.raises(UsageError, match="Unknown captioner spec"):
        load_captioner("gpt:caption")
