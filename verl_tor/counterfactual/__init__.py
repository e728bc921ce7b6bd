"""What the "without the image" input of a perception score is, per model family (``families``), and how each
counterfactual is built: the image's vision tokens out of the prompt (``remove``: ``remove_image``,
``mask_image_attention``) or its pixels changed (``images``: ``black_patches``, ``mask_patches``,
``gaussian_noise``); ``batch.counterfactual_batch`` is the one entry point."""

from verl_tor.counterfactual.batch import COUNTERFACTUALS, REQUIRED_FIELDS, Samples, counterfactual_batch

__all__ = ["COUNTERFACTUALS", "REQUIRED_FIELDS", "Samples", "counterfactual_batch"]
