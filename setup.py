"""verl-tor: ToR (Token Reweighting for RLVR in multimodal LLMs, arXiv 2603.25077) as a plugin for veRL 0.9.1."""

from setuptools import find_packages, setup

setup(
    name="verl-tor",
    version="0.1.0",
    description="Token Reweighting (ToR) for multimodal RLVR, as a plugin for unmodified veRL",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["verl_tor", "verl_tor.*"]),
    package_data={"verl_tor": ["config/*.yaml"]},
    # torch is deliberately not pinned here: GPU users take veRL's pin, CPU users install it first (Makefile).
    install_requires=[
        "verl[verl-core]==0.9.1",
        "math-verify>=0.8",
        "mathruler",
        "datasets",
        "pillow",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        # The GPU install is a sequence (README, "GPU install"; make install-gpu): torch, vLLM and flash-attn first.
        # flash-attn's setup.py imports torch, so pip cannot build it in an isolated environment; pinned to veRL's
        # own pin (its fsdp extra), the version the sequence installs, so that this extra is already satisfied.
        "gpu": ["verl[vllm,fsdp]==0.9.1", "flash-attn==2.8.3"],
        "test": ["pytest", "ruff"],
    },
    entry_points={"verl.plugins": ["tor = verl_tor.plugin"]},
)
