"""Shared by the evaluation tests: benchmark parquet files, evaluation folders as ``recipes/eval.sh`` leaves them,
and a judge on the loopback that answers as an OpenAI-compatible endpoint would, failures included."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from verl_tor.eval.rewards import compute_score


def write_benchmark(path: Path, rows: Sequence[tuple[str, str, str, str]], split: str = "testmini") -> Path:
    """A parquet file in ``verl_tor.data_prep``'s layout; ``rows``: ``(data_source, question, ground truth,
    answer type)``, indexed in order per data source."""
    index: Counter = Counter()
    records = []
    for source, question, truth, kind in rows:
        records.append(
            {
                "data_source": source,
                "prompt": [{"role": "user", "content": f"<image>\n{question}"}],
                "reward_model": {"style": "rule", "ground_truth": truth},
                "extra_info": {"split": split, "index": index[source], "answer_type": kind, "choices": []},
            }
        )
        index[source] += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(path)
    return path


def write_evaluation(
    folder: Path, data: Path, responses: dict[str, list[str]], protocol: str = "tor", **info: str
) -> Path:
    """An evaluation folder: ``run.json`` and veRL's validation dump, one line per response, scored by
    ``verl_tor.eval.rewards`` as veRL's reward loop does (``responses``: row id -> its samples' responses)."""
    frame = pd.read_parquet(data)
    rows = {}
    for record in frame.to_dict("records"):
        extra_info = dict(record["extra_info"])
        rows[f"{record['data_source']}:{extra_info['split']}:{extra_info['index']}"] = record
    lines = []
    for row, outputs in responses.items():
        record = rows[row]
        question = record["prompt"][0]["content"].replace("<image>", "")
        for output in outputs:
            truth = record["reward_model"]["ground_truth"]
            scores = compute_score(record["data_source"], output, truth, dict(record["extra_info"]))
            dumped = {"input": f"system\nYou are a helpful assistant.\nuser\n{question}\nassistant\n", "output": output}
            lines.append(json.dumps({**dumped, "gts": truth, "score": scores["score"], "step": 0, **scores}))
    (folder / "generations").mkdir(parents=True, exist_ok=True)
    (folder / "generations" / "0.jsonl").write_text("\n".join(lines) + "\n")
    run_info = {"kind": "eval", "experiment": folder.name, "protocol": protocol, "val_files": str(data)} | info
    (folder / "run.json").write_text(json.dumps(run_info))
    return folder


class FakeJudgeHandler(http.server.BaseHTTPRequestHandler):
    """Reads responses written as ``... ANSWER=<x>``: extraction replies ``x`` (``NONE`` without one); a judgement
    replies 1 when the candidate equals the reference. A response containing ``FAIL`` gets HTTP 500 every time,
    ``FLAKY`` HTTP 503 on its first two requests, ``GARBLE`` a judgement that is neither 1 nor 0."""

    requests: Counter = Counter()
    models: set = set()
    extraction: str | None = None  # when set, the reply to every extraction prompt

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        type(self).requests[prompt] += 1
        type(self).models.add(body["model"])
        assert self.path == "/v1/chat/completions" and body["temperature"] == 0
        if "FAIL" in prompt or ("FLAKY" in prompt and self.requests[prompt] <= 2):
            self.send_error(500 if "FAIL" in prompt else 503)
            return
        judgement = re.search(r"Reference answer:\n(.*)\n\nCandidate answer:\n(.*)\n\n", prompt)
        if judgement:
            reference, candidate = judgement.groups()
            answer = "maybe" if "GARBLE" in candidate else str(int(reference.strip() == candidate.strip()))
        elif self.extraction is not None:
            answer = self.extraction
        else:
            found = re.search(r"ANSWER=(\S+)", prompt)
            answer = found.group(1) if found else "NONE"
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": f" {answer}\n"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@contextmanager
def fake_judge(extraction: str | None = None) -> Iterator[tuple[str, type[FakeJudgeHandler]]]:
    """``(url, handler class)`` of a judge served on 127.0.0.1 in a thread; the class counts requests per prompt.
    ``extraction``: a fixed reply to every extraction prompt."""
    attributes = {"requests": Counter(), "models": set(), "extraction": extraction}
    handler = type("Handler", (FakeJudgeHandler,), attributes)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    finally:
        server.shutdown()
        server.server_close()
