"""Token inspector: which response tokens a token-credit method (``tor.method``) weighted, recorded during training and shown as one HTML page.

Recording (``verl_tor.inspect.record``, called by the ToR trainer when ``tor.inspect.samples_per_step > 0``)
appends to ``<tor.inspect.dir>/tor_inspect.jsonl`` (default dir: ``trainer.default_local_dir``); the page
(``python -m verl_tor.inspect RUN_DIR [--out page.html]``, ``verl_tor.inspect.page``) reads that file.

File format (JSON lines, append-only; a reader must accept a truncated last line while the run writes):

``{"kind": "run", "version": 2, "experiment": str, "started": ISO time, "tor": {TokenCreditConfig fields, "method"
first among them}, "weight_target": "advantages" | "loss" (where w enters veRL's loss), "labels": {"method", "reasoning",
"perception", "use": str} (the scores, sets and use in words), "inspect": {"samples_per_step": int, "every_n_steps":
int, "thumbnail_px": int}}``
    written when a trainer starts (again after a resume; the last one before a step applies to it).

``{"kind": "step", "step": int, "n_valid_tokens": int, "n_samples": int,
"thresholds": {"reasoning": float, "perception": float},        # smallest selected score, 0 if none
"fractions": {"reasoning": float, "perception": float, "overlap": float},
"histograms": {"entropy": {"edges": [float], "counts": [int]},  # over every valid token of the batch
               "sensitivity": {"edges": [float], "counts": [int]}},
"top_tokens": {"reasoning": [[text, count], ...], "perception": [[text, count], ...]},   # whole batch, <= 20 each
"samples": [sample, ...]}``

where each ``sample`` is
``{"index": int (row in the step's batch), "uid": str, "data_source": str, "extra_info": dict (the dataset row's,
e.g. its index), "prompt": str (decoded, each vision-pad run shown once as ``<|image_pad|>×N``), "reward": float, "acc": float | null, "has_image": bool, "images": ["data:image/png;base64,..."],
"tokens": {"id": [int], "text": [str], "H": [float], "S": [float], "set": [str], "w": [float],
"adv": [float], "adv_loss": [float], "rho": [float] (only with veRL's rollout correction), "valid": [bool]}}``

``set`` is one of ``reasoning`` (in T_r, also when in T_p: it gets γ_r), ``perception`` (T_p \\ T_r), ``both``
(in T_r ∩ T_p) is reported separately from ``reasoning`` so that the overlap is visible, ``none``. Precisely:
``both`` = T_r ∩ T_p, ``reasoning`` = T_r \\ T_p, ``perception`` = T_p \\ T_r, ``none`` = the rest (also invalid
tokens, e.g. tool output with response_mask 0, whose ``valid`` is false). ``w`` is the method's weight of the token,
``adv`` veRL's advantage, ``adv_loss`` the advantage the policy loss reads (``adv * w`` when the weights go through
the advantage, ``adv`` when they go through ``rollout_is_weights``, ``weight_target`` "loss") and ``rho`` veRL's
rollout-correction weight (the loss multiplies ``rho``, times ``w`` for target "loss"). ``H`` / ``S`` are zeros where
the method has no reasoning / perception score (see ``labels``). Version 1 files have ``adv_w`` = adv·w instead.
"""

INSPECT_FILE = "tor_inspect.jsonl"
TOKEN_SETS = ("reasoning", "perception", "both", "none")
