"""What the "without the image" input of a perception score is, per model family (``families``), and how it is
built (``remove``: the image's vision tokens deleted from the prompt)."""
