"""What every converter shares: loading (hub or local copy), images, prompts, veRL rows, atomic output, manifest, CLI.

A dataset module describes its schema in a ``DatasetSpec`` whose ``to_problem`` turns one source row into a
``Problem`` (or raises ``SkipRow``); ``main(spec)`` does the rest:

* load each split from the hub with ``datasets`` (or, for file-only repositories, a ``huggingface_hub`` snapshot),
  or from ``--local_dataset_path``: a ``save_to_disk`` folder (``Dataset`` or ``DatasetDict``), a parquet file, or
  a folder of parquet files (a file belongs to a split when its name or a parent folder starts with the split name);
  images named by path are read under that folder or from the zip archives in it;
* build veRL's row: ``data_source``, ``prompt`` (one user message, one ``<image>`` per image), ``images``
  (``{"bytes", "path"}``, bytes of the original file, checked to decode), ``ability``, ``reward_model``
  (``style: rule``, ``ground_truth``), ``extra_info`` (the same struct for every dataset, see ``OUTPUT_SCHEMA``);
* write ``<split>.parquet`` through a temporary file renamed into place only after every split converted, then
  ``manifest.json`` (rows read/written/skipped per split, each skipped row with its reason, file sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from mathruler.grader import extract_boxed_content
from PIL import Image
from tqdm import tqdm

from verl_tor.eval.rewards import FREE_FORM, MULTIPLE_CHOICE, YES_NO

DEFAULT_DATA_ROOT = Path("~/data/verl_tor")
MANIFEST_NAME = "manifest.json"
WRITE_BATCH_ROWS = 256

REASONING_INSTRUCTION = "First think through the problem step by step inside <think> </think> tags."
ANSWER_INSTRUCTIONS = {
    MULTIPLE_CHOICE: "Then give the letter of the correct option inside \\boxed{}, for example \\boxed{A}.",
    YES_NO: "Then answer Yes or No inside \\boxed{}.",
    FREE_FORM: "Then give only the final answer inside \\boxed{}.",
}

# Reasons a row is skipped; the manifest counts them per split and names every skipped row.
NO_IMAGE = "no_image"
IMAGE_NOT_FOUND = "image_file_not_found"
UNREADABLE_IMAGE = "unreadable_image"
MISSING_QUESTION = "missing_question"
MISSING_ANSWER = "missing_answer"
ANSWER_NOT_IN_CHOICES = "answer_not_in_choices"
PLACEHOLDER_MISMATCH = "image_placeholder_count_mismatch"

OUTPUT_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),  # row position in the source split
                    ("id", pa.string()),  # the source's own id, or the index when it has none
                    ("question", pa.string()),  # the question text as the source gives it
                    ("answer", pa.string()),  # the answer as the source gives it
                    ("answer_type", pa.string()),  # multiple_choice | yes_no | free_form
                    ("choices", pa.list_(pa.string())),  # option texts, A first; empty when unknown
                    ("subset", pa.string()),  # e.g. MathVerse problem version, HallusionBench category
                    ("details", pa.string()),  # JSON object of dataset-specific fields
                ]
            ),
        ),
    ]
)


class DataPrepError(Exception):
    """Input that cannot be converted at all (wrong schema, missing split, no usable row)."""


class SkipRow(Exception):
    """One row that cannot be converted; ``reason`` is one of the reason constants above."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Problem:
    """One source row in dataset-independent terms."""

    question: str
    images: Sequence[Any]  # image values as the source holds them (dict with bytes/path, PIL, bytes, path)
    answer: str  # ground truth: option letters "A" / "A,C", "yes" / "no", or the free-form answer
    answer_type: str
    source_answer: str  # the answer as the source gives it
    source_id: str = ""
    choices: Sequence[str] = ()
    show_choices: bool = False  # list the choices under the question (False when the question already does)
    answer_hint: str = ""  # appended to the instruction, e.g. the required precision
    subset: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's schema as far as the converter needs it."""

    name: str  # module name, output data_source and default output folder name
    hub_id: str
    splits: tuple[str, ...]
    required_columns: tuple[str, ...]
    to_problem: Callable[[Mapping[str, Any]], Problem]
    ability: str = "math"
    hub_config: str | None = None
    id_column: str | None = None
    hub_snapshot: bool = False  # the hub repository is files (parquet + zip), not a `datasets` dataset
    # Whole-split pass before rows convert, for facts one row holds about others (e.g. MathVerse's option lists,
    # written in only some versions of a problem); returns the split with any added columns.
    prepare: Callable[[datasets.Dataset], datasets.Dataset] | None = None


# ---------------------------------------------------------------------------------------------------- text helpers


def require_text(value: Any, reason: str) -> str:
    """The value as stripped text; ``SkipRow(reason)`` when it is missing or blank."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise SkipRow(reason)
    return text


_CHOICE_LINE = re.compile(r"\s*(?:\(([A-Z])\)|([A-Z])\s*[.:：．、)])\s*(.*\S)\s*")
# Letters joined by commas, semicolons or line breaks (MathVerse writes some two-letter answers as "C\nD").
_LETTERS = re.compile(r"\(?([A-Z])\)?(?:(?:\s*[,;、]\s*|[ \t]*\n\s*)\(?([A-Z])\)?)*")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")


def parse_choices(text: str, separator: str = "\n") -> list[str]:
    """Option texts of ``A. …`` / ``(A) …`` / ``A: …`` segments (split by ``separator``), A first; [] if under two."""
    choices: list[str] = []
    for segment in text.split(separator):
        match = _CHOICE_LINE.fullmatch(segment)
        if not match:
            continue
        letter = match.group(1) or match.group(2)
        if letter == "A":
            choices = [match.group(3)]
        elif choices and letter == chr(ord("A") + len(choices)):
            choices.append(match.group(3))
    return choices if len(choices) >= 2 else []


def option_letters(answer: str) -> str | None:
    """``"A"`` for ``A`` / ``(A)``, ``"A,C"`` for ``A, C``; None when the answer is not option letters."""
    text = answer.strip()
    if not _LETTERS.fullmatch(text):
        return None
    return ",".join(sorted(set(re.findall(r"[A-Z]", text))))


def comparable_option(text: str) -> str:
    """An option's text for matching an answer written as that text: degrees (``°``, ``^\\circ``, ``^{\\circ}``)
    written alike, ``$`` and all spaces dropped, case folded (``053 ^\\circ T`` = ``053° T``)."""
    return re.sub(r"\s+", "", _DEGREES.sub("°", text).replace("$", "")).casefold()


def choice_letter(answer: str, choices: Sequence[str]) -> str:
    """The letter of the correct option, given as a letter or as the option's text."""
    letters = option_letters(answer)
    if letters is not None and all(ord(letter) - ord("A") < len(choices) for letter in letters.split(",")):
        return letters
    for index, choice in enumerate(choices):
        if choice.strip() == answer.strip():
            return chr(ord("A") + index)
    # Else the one option that reads the same up to spacing and notation (never a guess between two).
    matches = [index for index, choice in enumerate(choices) if comparable_option(choice) == comparable_option(answer)]
    if len(matches) == 1:
        return chr(ord("A") + matches[0])
    raise SkipRow(ANSWER_NOT_IN_CHOICES, f"answer {answer!r} is neither a letter nor one of {list(choices)!r}")


def unbox(answer: str) -> str:
    """The content of a ``\\boxed{…}`` answer (ViRL39K writes every answer so); other answers unchanged."""
    if "\\boxed{" not in answer:
        return answer
    content = extract_boxed_content(answer)
    if content == "None" and "\\boxed{None}" not in answer:
        raise SkipRow(MISSING_ANSWER, f"unbalanced \\boxed{{}} in answer {answer[:80]!r}")
    return content


def question_and_answer(row: Mapping[str, Any], question_column: str, answer_column: str) -> tuple[str, str]:
    """The row's question and answer texts; ``SkipRow`` when either is missing."""
    return require_text(row[question_column], MISSING_QUESTION), require_text(row[answer_column], MISSING_ANSWER)


def as_images(value: Any) -> list[Any]:
    """A column holding one image, a list of images or nothing, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def listed_choice_problem(
    question: str, answer: str, choices: Sequence[str], images: Sequence[Any], **fields: Any
) -> Problem:
    """A problem whose options come apart from the question: listed in the prompt; none means free-form."""
    fields.setdefault("source_answer", answer)
    if not choices:
        return Problem(question, images, answer, FREE_FORM, **fields)
    return Problem(
        question, images, choice_letter(answer, choices), MULTIPLE_CHOICE, choices=choices, show_choices=True, **fields
    )


def inline_choice_problem(question: str, answer: str, images: Sequence[Any], **fields: Any) -> Problem:
    """A problem whose options, if any, the question lists itself: a letter answer is multiple choice."""
    fields.setdefault("source_answer", answer)
    letters = option_letters(answer)
    return Problem(
        question=question,
        images=images,
        answer=answer if letters is None else letters,
        answer_type=FREE_FORM if letters is None else MULTIPLE_CHOICE,
        choices=parse_choices(question),
        **fields,
    )


# ---------------------------------------------------------------------------------------------------------- images


class ImageStore:
    """Reads the image files that rows name by path: under a dataset folder, or inside the zip archives in it."""

    def __init__(self, root: Path | None):
        self._root = root if root is not None and root.is_dir() else None
        self._archives: list[zipfile.ZipFile] = []
        self._members: dict[str, tuple[zipfile.ZipFile, str]] | None = None

    def read(self, path: str) -> bytes:
        candidate = Path(path) if Path(path).is_absolute() else None if self._root is None else self._root / path
        if candidate is not None and candidate.is_file():
            return candidate.read_bytes()
        member = self._archive_members().get(path.removeprefix("./"))
        if member is None:
            raise SkipRow(IMAGE_NOT_FOUND, path)
        archive, name = member
        return archive.read(name)

    def _archive_members(self) -> dict[str, tuple[zipfile.ZipFile, str]]:
        """Every archive member under its full name and under each shorter trailing path (first archive wins)."""
        if self._members is None:
            self._members = {}
            if self._root is not None:
                self._archives = [zipfile.ZipFile(path) for path in sorted(self._root.rglob("*.zip"))]
            for archive in self._archives:
                for name in archive.namelist():
                    parts = name.split("/")
                    for start in range(len(parts)):
                        self._members.setdefault("/".join(parts[start:]), (archive, name))
        return self._members


def image_bytes(value: Any, store: ImageStore) -> bytes:
    """The encoded image file of an image value, checked to decode; ``SkipRow`` when absent or unreadable."""
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        data = buffer.getvalue()
    elif isinstance(value, Mapping):
        path = value.get("path")
        data = value.get("bytes") or (store.read(path) if path else None)
    elif isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str) and value.strip():
        data = store.read(value.strip())
    else:
        data = None
    if not data:
        raise SkipRow(NO_IMAGE)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as error:  # PIL raises many types for bad files
        raise SkipRow(UNREADABLE_IMAGE, f"{type(error).__name__}: {error}") from error
    return data


# --------------------------------------------------------------------------------------------------------- loading


def load_split(spec: DatasetSpec, split: str, local_path: Path | None, revision: str | None) -> datasets.Dataset:
    """One split, from the hub (``local_path`` None) or from a local copy, with image decoding turned off."""
    if local_path is None:
        dataset = datasets.load_dataset(spec.hub_id, spec.hub_config, split=split, revision=revision)
    else:
        dataset = _load_local_split(local_path, split, single_split=len(spec.splits) == 1)
    missing = [column for column in spec.required_columns if column not in dataset.column_names]
    if missing:
        raise DataPrepError(
            f"{spec.hub_id} split {split!r} lacks columns {missing}; it has {dataset.column_names}. "
            "Is this the right dataset or revision?"
        )
    return _without_image_decoding(dataset)


def _load_local_split(path: Path, split: str, single_split: bool) -> datasets.Dataset:
    if not path.exists():
        raise DataPrepError(f"local dataset path {path} does not exist")
    if (path / "dataset_dict.json").is_file():
        splits = datasets.load_from_disk(str(path))
        if split not in splits:
            raise DataPrepError(f"{path} has splits {list(splits)}, not {split!r}")
        return splits[split]
    if (path / "state.json").is_file():
        return datasets.load_from_disk(str(path))
    if path.is_file() and path.suffix != ".parquet":
        raise DataPrepError(f"{path} is neither a parquet file nor a dataset folder")
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    chosen = [file for file in files if _names_split(file, path, split)]
    if not chosen and single_split:
        chosen = files
    if not chosen:
        raise DataPrepError(f"no parquet file for split {split!r} under {path} (found {[f.name for f in files]})")
    return datasets.Dataset(pa.concat_tables([pq.read_table(file, memory_map=True) for file in chosen]))


def _names_split(file: Path, root: Path, split: str) -> bool:
    """True when the file name or a folder between ``root`` and it is ``split`` or starts with ``split-``."""
    names = [file.stem, *file.relative_to(root).parent.parts] if file != root else [file.stem]
    return any(name == split or name.startswith(f"{split}-") for name in names)


def _without_image_decoding(dataset: datasets.Dataset) -> datasets.Dataset:
    """Image columns yield ``{"bytes", "path"}`` so the original files are kept, not decoded and re-encoded."""
    for column, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
        elif isinstance(feature, datasets.List | datasets.Sequence) and isinstance(feature.feature, datasets.Image):
            dataset = dataset.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return dataset


# --------------------------------------------------------------------------------------------------------- records


def build_prompt(problem: Problem) -> str:
    """The user message: ``<image>`` placeholders (first, when the question has none), question, options when
    listed, format instruction."""
    question = problem.question.strip()
    placeholders = question.count("<image>")
    if placeholders == 0:
        # Images first, the question right after them: nothing between a vision block and the text that could
        # merge with the text's first token once the block is removed (ToR's image-removed prompt), the layout of
        # Qwen's chat template for [image, text] content and of veRL's own multimodal examples.
        question = "<image>" * len(problem.images) + question
    elif placeholders != len(problem.images):
        raise SkipRow(PLACEHOLDER_MISMATCH, f"{placeholders} <image> placeholders for {len(problem.images)} images")
    parts = [question]
    if problem.show_choices:
        options = "\n".join(f"{chr(ord('A') + i)}. {str(choice).strip()}" for i, choice in enumerate(problem.choices))
        parts.append(f"Options:\n{options}")
    instruction = f"{REASONING_INSTRUCTION} {ANSWER_INSTRUCTIONS[problem.answer_type]}"
    parts.append(f"{instruction} {problem.answer_hint}".strip())
    return "\n\n".join(parts)


def build_record(spec: DatasetSpec, split: str, index: int, problem: Problem, store: ImageStore) -> dict[str, Any]:
    """One row of veRL's RL parquet format."""
    if not problem.images:
        raise SkipRow(NO_IMAGE)
    images = [{"bytes": image_bytes(value, store), "path": None} for value in problem.images]
    return {
        "data_source": spec.name,
        "prompt": [{"role": "user", "content": build_prompt(problem)}],
        "images": images,
        "ability": spec.ability,
        "reward_model": {"style": "rule", "ground_truth": problem.answer},
        "extra_info": {
            "split": split,
            "index": index,
            "id": problem.source_id or str(index),
            "question": problem.question,
            "answer": problem.source_answer,
            "answer_type": problem.answer_type,
            "choices": [str(choice).strip() for choice in problem.choices],
            "subset": problem.subset,
            "details": json.dumps(dict(problem.details), ensure_ascii=False, sort_keys=True, default=str),
        },
    }


# ---------------------------------------------------------------------------------------------------------- output


@dataclass
class SplitReport:
    rows_read: int = 0
    rows_written: int = 0
    skipped_rows: list[dict[str, Any]] = field(default_factory=list)

    def as_manifest_entry(self, file: Path) -> dict[str, Any]:
        return {
            "file": file.name,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_skipped": len(self.skipped_rows),
            "skipped_by_reason": dict(Counter(row["reason"] for row in self.skipped_rows)),
            "skipped_rows": self.skipped_rows,
            "sha256": sha256_of(file),
            "bytes": file.stat().st_size,
        }


def convert_split(
    spec: DatasetSpec, split: str, rows: datasets.Dataset, store: ImageStore, out_file: Path
) -> SplitReport:
    """Convert every row of one split into ``out_file`` (streamed in batches); skipped rows go to the report."""
    report = SplitReport()

    def records() -> Iterator[dict[str, Any]]:
        for index, row in enumerate(tqdm(rows, desc=f"{spec.name}/{split}", unit="row", mininterval=2.0)):
            report.rows_read += 1
            try:
                yield build_record(spec, split, index, spec.to_problem(row), store)
            except SkipRow as skip:
                source_id = row.get(spec.id_column) if spec.id_column else None
                report.skipped_rows.append(
                    {"index": index, "id": None if source_id is None else str(source_id), "reason": skip.reason}
                    | ({"detail": skip.detail} if skip.detail else {})
                )

    with pq.ParquetWriter(out_file, OUTPUT_SCHEMA) as writer:
        batch: list[dict[str, Any]] = []
        for record in records():
            batch.append(record)
            if len(batch) == WRITE_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=OUTPUT_SCHEMA))
                report.rows_written += len(batch)
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=OUTPUT_SCHEMA))
            report.rows_written += len(batch)
    return report


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(handle.name, path)


def convert_dataset(
    spec: DatasetSpec,
    out_dir: Path,
    splits: Sequence[str],
    local_path: Path | None = None,
    revision: str | None = None,
) -> dict[str, Any]:
    """Convert ``splits`` into ``out_dir``; returns the manifest it wrote. Outputs appear only if all splits succeed."""
    source = local_path
    if source is None and spec.hub_snapshot:
        from huggingface_hub import snapshot_download

        source = Path(snapshot_download(spec.hub_id, repo_type="dataset", revision=revision))
    if local_path is not None and len(splits) > 1 and (local_path.is_file() or (local_path / "state.json").is_file()):
        raise DataPrepError(f"{local_path} holds a single split; choose the one it is with --splits")
    store = ImageStore(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging_files: list[Path] = []
    try:
        reports = {}
        for split in splits:
            rows = load_split(spec, split, source, revision)
            if spec.prepare is not None:
                rows = spec.prepare(rows)
            handle, name = tempfile.mkstemp(dir=out_dir, prefix=f".{split}.", suffix=".parquet.partial")
            os.close(handle)
            staging_files.append(Path(name))
            reports[split] = convert_split(spec, split, rows, store, staging_files[-1])
            if reports[split].rows_written == 0:
                reasons = Counter(row["reason"] for row in reports[split].skipped_rows).most_common(3)
                raise DataPrepError(f"split {split!r}: no row could be converted (skipped: {reasons})")
        split_entries = {}
        for (split, report), staging in zip(reports.items(), staging_files, strict=True):
            final = out_dir / f"{split}.parquet"
            os.replace(staging, final)
            split_entries[split] = report.as_manifest_entry(final)
    finally:
        for staging in staging_files:
            staging.unlink(missing_ok=True)
    manifest = {
        "dataset": spec.hub_id,
        "config": spec.hub_config,
        "data_source": spec.name,
        "converter": f"verl_tor.data_prep.{spec.name}",
        "source": str(local_path.resolve()) if local_path is not None else "huggingface hub",
        "revision": revision,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "splits": split_entries,
    }
    write_json_atomically(out_dir / MANIFEST_NAME, manifest)
    return manifest


def main(spec: DatasetSpec, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line of every converter: ``python -m verl_tor.data_prep.<name> --local_save_dir DIR [...]``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m verl_tor.data_prep.{spec.name}",
        description=f"Convert {spec.hub_id} to veRL's RL parquet format (one <split>.parquet per split + manifest).",
    )
    parser.add_argument(
        "--local_save_dir",
        type=Path,
        default=DEFAULT_DATA_ROOT / spec.name,
        help=f"output folder (default: {DEFAULT_DATA_ROOT / spec.name})",
    )
    parser.add_argument(
        "--local_dataset_path",
        type=Path,
        default=None,
        help="read a local copy instead of the hub: a save_to_disk folder, a parquet file or a folder of parquet files",
    )
    parser.add_argument("--splits", nargs="+", choices=spec.splits, default=list(spec.splits), help="splits to convert")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) to load")
    args = parser.parse_args(argv)
    local_path = args.local_dataset_path.expanduser() if args.local_dataset_path else None
    out_dir = args.local_save_dir.expanduser()
    try:
        manifest = convert_dataset(spec, out_dir, args.splits, local_path, args.revision)
    except DataPrepError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    for split, entry in manifest["splits"].items():
        skipped = f", skipped {entry['skipped_by_reason']}" if entry["rows_skipped"] else ""
        print(f"{spec.name}/{split}: {entry['rows_written']} of {entry['rows_read']} rows{skipped} -> {out_dir}")
    print(f"manifest: {out_dir / MANIFEST_NAME}", file=sys.stderr)
    return manifest
